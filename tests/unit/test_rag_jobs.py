"""Directory-index jobs in the shared state store, on both engines: two ``IndexJobs`` on
one database play two replicas (a job started on one is polled on the other), a runner
that stops heartbeating is reported failed by the other, a shutdown ends its own jobs,
and a restarted process still answers for finished ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from extensions.rag import ingest
from extensions.rag.config import RagConfig
from extensions.rag.jobs import KIND, IndexJobs
from extensions.rag.schemas import IndexJob, IndexProgress, IndexReport, IndexRequest
from extensions.rag.store import RagStore
from proxy.errors import NotFound, PayloadTooLarge
from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig
from tests.unit.state import conftest as state_fixtures
from tests.unit.test_rag_ingest import LONG, OWNER, GatedEmbedder

# The state tests' fixtures: an empty database of each engine, and a store over it.
database_url = state_fixtures.database_url
state_store = state_fixtures.state_store


def replica(store: StateStore, runner_id: str) -> IndexJobs:
    """The index jobs of one replica over ``store``, heartbeating and writing often."""
    return IndexJobs(
        store.extension_jobs,
        runner_id=runner_id,
        heartbeat_s=0.05,
        progress_write_s=0.05,
        stale_after_s=5.0,
    )


@pytest.fixture
async def replicas(state_store: StateStore) -> AsyncIterator[tuple[IndexJobs, IndexJobs]]:
    a, b = replica(state_store, "runner_a"), replica(state_store, "runner_b")
    yield a, b
    await a.aclose()
    await b.aclose()


async def until(
    read: Callable[[], Awaitable[IndexJob]], done: Callable[[IndexJob], bool]
) -> IndexJob:
    """Poll ``read`` until ``done`` holds (or give up after 20 s and return what was read)."""
    deadline = time.monotonic() + 20
    while True:
        job = await read()
        if done(job) or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.02)


async def test_a_job_started_on_one_replica_is_polled_to_completion_on_the_other(
    replicas: tuple[IndexJobs, IndexJobs],
    database_url: str,
    tmp_path: Path,
) -> None:
    a, b = replicas
    step = asyncio.Event()

    async def work(progress: IndexProgress) -> IndexReport:
        progress.files_done, progress.chunks = 1, 5
        await step.wait()
        progress.files_done = 2
        return IndexReport(collection="notes", path="/docs", added=2, chunks=9)

    job = await a.start("key-a", "notes", 2, work)
    assert (job.status, job.progress.files_total) == ("queued", 2)
    assert msgspec.json.decode(msgspec.json.encode(job))["object"] == "rag.index_job"

    def read() -> Awaitable[IndexJob]:
        return b.get("key-a", "notes", job.id)

    running = await until(read, lambda j: j.progress.files_done == 1)
    assert running.status == "running" and running.progress.chunks == 5  # written by A
    for owner, collection in [("key-b", "notes"), ("key-a", "other")]:
        with pytest.raises(NotFound):
            await b.get(owner, collection, job.id)
    assert [j.id for j in await b.list("key-a", "notes")] == [job.id]
    assert await b.list("key-b", "notes") == [] and await b.list("key-a", "other") == []

    step.set()
    done = await until(read, lambda j: j.status == "succeeded")
    assert done.status == "succeeded" and done.result is not None and done.result.added == 2
    assert done.progress.files_done == 2 and done.error is None
    assert await a.get("key-a", "notes", job.id) == done

    # A restarted process (a new store on the same database) still answers for it.
    reopened = await open_state(StateConfig(database=database_url), data_dir=str(tmp_path))
    try:
        assert await IndexJobs(reopened.extension_jobs).get("key-a", "notes", job.id) == done
    finally:
        await reopened.aclose()


async def test_a_heartbeating_job_outlives_the_stale_limit(state_store: StateStore) -> None:
    a = IndexJobs(state_store.extension_jobs, heartbeat_s=0.05, stale_after_s=5.0)
    b = IndexJobs(state_store.extension_jobs, stale_after_s=1.0)
    release = asyncio.Event()

    async def work(progress: IndexProgress) -> IndexReport:
        await release.wait()  # no progress: only heartbeats keep it alive
        return IndexReport(collection="notes", path="/docs")

    job = await a.start("key-a", "notes", 1, work)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until it has run for well past b's stale limit
        record = await state_store.extension_jobs.get(KIND, "key-a", job.id)
        assert record is not None
        if record.heartbeat_at - record.created_at > 2.5:
            break
        await asyncio.sleep(0.05)
    assert record.heartbeat_at - record.created_at > 2.5
    assert (await b.get("key-a", "notes", job.id)).status == "running"
    release.set()
    assert (
        await until(lambda: b.get("key-a", "notes", job.id), lambda j: j.status != "running")
    ).status == "succeeded"
    await a.aclose()


async def test_a_job_whose_runner_stopped_is_failed_by_the_other_and_its_runner_stops(
    state_store: StateStore,
) -> None:
    # A's heartbeats stop coming (its process hangs or is cut off): it writes only when
    # its job's progress moves.
    a = IndexJobs(state_store.extension_jobs, heartbeat_s=3600, progress_write_s=0.05)
    b = IndexJobs(state_store.extension_jobs, stale_after_s=0.3)
    moved, stopped = asyncio.Event(), asyncio.Event()

    async def work(progress: IndexProgress) -> IndexReport:
        try:
            await moved.wait()
            progress.files_done = 1
            await asyncio.Event().wait()
        finally:
            stopped.set()
        raise AssertionError("unreachable")

    job = await a.start("key-a", "notes", 3, work)
    lost = await until(lambda: b.get("key-a", "notes", job.id), lambda j: j.status == "failed")
    assert lost.status == "failed" and lost.error is not None
    assert lost.error["code"] == "runner_lost" and lost.error["type"] == "server_error"
    assert "replica running this index job stopped" in lost.error["message"]
    assert [j.status for j in await b.list("key-a", "notes")] == ["failed"]

    moved.set()  # A's next write finds its job ended elsewhere: A stops the work
    await asyncio.wait_for(stopped.wait(), 20)
    await a.aclose()
    again = await b.get("key-a", "notes", job.id)
    assert again.status == "failed" and again.error == lost.error
    assert (await a.get("key-a", "notes", job.id)).status == "failed"


async def test_failures_queueing_and_shutdown_are_seen_by_the_other_replica(
    replicas: tuple[IndexJobs, IndexJobs],
) -> None:
    a, b = replicas
    forever = asyncio.Event()

    async def failing(progress: IndexProgress) -> IndexReport:
        raise PayloadTooLarge("too many chunks (rag.max_chunks_per_request)", param="path")

    async def stuck(progress: IndexProgress) -> IndexReport:
        await forever.wait()
        raise AssertionError("unreachable")

    failed = await a.start("k", "notes", 1, failing)
    first = await a.start("k", "notes", 1, stuck)
    queued = await a.start("k", "notes", 1, stuck)  # waits for A's one running slot

    def read(job_id: str) -> Callable[[], Awaitable[IndexJob]]:
        return lambda: b.get("k", "notes", job_id)

    assert (await until(read(failed.id), lambda j: j.status == "failed")).error == {
        "message": "too many chunks (rag.max_chunks_per_request)",
        "type": "invalid_request_error",
        "param": "path",
        "code": "payload_too_large",
    }
    assert (await until(read(first.id), lambda j: j.status == "running")).status == "running"
    assert (await b.get("k", "notes", queued.id)).status == "queued"
    # B's own slot is free: its job runs while A's second one still waits.
    mine = await b.start("k", "notes", 1, stuck)
    assert (await until(read(mine.id), lambda j: j.status == "running")).status == "running"
    assert (await b.get("k", "notes", queued.id)).status == "queued"

    await a.aclose()
    for job_id in (first.id, queued.id):
        ended = await b.get("k", "notes", job_id)
        assert ended.status == "cancelled" and ended.error is not None
        assert ended.error["code"] == "shutdown"
    assert (await b.get("k", "notes", mine.id)).status == "running"  # not A's to end


async def test_closing_the_store_cancels_an_index_job_mid_embedding(
    tmp_path: Path,
    state_store: StateStore,
) -> None:
    gate = GatedEmbedder(pass_marked=0)
    config = RagConfig(chunk_tokens=16, chunk_overlap=0, embed_batch_size=4,
                       allowed_dirs=[str(tmp_path / "allowed")])  # fmt: skip
    jobs = IndexJobs(state_store.extension_jobs)
    store = RagStore(config, tmp_path / "data", gate, jobs=jobs)
    await store.create_collection(OWNER, "notes")
    docs = tmp_path / "allowed" / "docs"
    docs.mkdir(parents=True)
    (docs / "a.md").write_text(LONG)
    plan = await ingest.plan_index(store, OWNER, "notes", IndexRequest(path=str(docs)))

    def work(progress: IndexProgress) -> Awaitable[IndexReport]:
        return ingest.run_index(store, OWNER, "notes", plan, progress)

    job = await store.jobs.start(OWNER, "notes", len(plan.files), work)
    await gate.holding.wait()
    await store.aclose()
    other = IndexJobs(state_store.extension_jobs)
    assert (await other.get(OWNER, "notes", job.id)).status == "cancelled"


def test_the_stale_limit_must_exceed_the_heartbeat() -> None:
    assert (
        RagConfig(index_job_heartbeat_s=1, index_job_stale_after_s=3).index_job_stale_after_s == 3
    )
    with pytest.raises(ValueError, match="index_job_stale_after_s must be more than"):
        RagConfig(index_job_heartbeat_s=5, index_job_stale_after_s=5)


class _Gated:
    """The store's jobs, with the outcome's write held until ``write`` is set and a read
    held after it read (before it returns) until ``read`` is set: the overlap of a poll
    with the end of a job, made to happen every time."""

    def __init__(self, jobs: object) -> None:
        self._jobs = jobs
        self.write, self.read = asyncio.Event(), asyncio.Event()
        self.written, self.hold_reads = asyncio.Event(), False
        self.reading, self.ending = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._jobs, name)

    async def update(self, kind: str, owner: str, job_id: str, runner: str, change: object) -> bool:
        if getattr(change, "status", None) == "succeeded":
            self.ending.set()
            await self.write.wait()
            alive = await self._jobs.update(kind, owner, job_id, runner, change)  # type: ignore[attr-defined]
            self.written.set()
            return bool(alive)
        return bool(await self._jobs.update(kind, owner, job_id, runner, change))  # type: ignore[attr-defined]

    async def get(self, kind: str, owner: str, job_id: str) -> object:
        record = await self._jobs.get(kind, owner, job_id)  # type: ignore[attr-defined]
        if self.hold_reads:
            self.reading.set()
            await self.read.wait()
        return record


async def test_a_poll_overlapping_the_end_of_a_job_never_goes_back_to_running(
    state_store: StateStore,
) -> None:
    gated = _Gated(state_store.extension_jobs)
    jobs = IndexJobs(gated, heartbeat_s=5.0, progress_write_s=5.0)  # type: ignore[arg-type]

    async def work(progress: IndexProgress) -> IndexReport:
        progress.files_done = 1
        return IndexReport(collection="notes", path="/docs", added=1, chunks=2)

    job = await jobs.start(OWNER, "notes", 1, work)
    runner = jobs._running[job.id].task
    assert runner is not None
    # The work is done and its outcome is being written: the poll shows it ended.
    await gated.ending.wait()
    assert (await jobs.get(OWNER, "notes", job.id)).status == "succeeded"
    # A poll reads the record (still running in the store), then the outcome is written
    # and the job leaves this process before the poll has made its answer.
    gated.hold_reads = True
    poll = asyncio.create_task(jobs.get(OWNER, "notes", job.id))
    await gated.reading.wait()
    gated.write.set()
    await gated.written.wait()
    await runner  # the job has left this process
    assert job.id not in jobs._running
    gated.read.set()
    answered = await poll
    assert (answered.status, answered.progress.files_done) == ("succeeded", 1)
    gated.hold_reads = False
    stored = await jobs.get(OWNER, "notes", job.id)
    assert (stored.status, stored.result is not None) == ("succeeded", True)
    await jobs.aclose()
