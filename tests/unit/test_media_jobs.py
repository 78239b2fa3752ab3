"""Video jobs over the state store (SQLite) and the ``dir`` backend: states, progress,
failures before and after acceptance, privacy, two replicas on one database, a lost
runner, shutdown, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from proxy.errors import InvalidRequest, NotFound, UpstreamTimeout
from proxy.media.backends.dir import DirBackend
from proxy.media.jobs import JobReporter, RunningJob, VideoJobs
from proxy.media.outputs import VideoOutput
from proxy.media.store import MediaStore
from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig
from proxy.state.records import JobProgress, VideoJobRecord


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = await open_state(StateConfig(), data_dir=str(tmp_path))
    try:
        yield store
    finally:
        await store.aclose()


class CountingJobs:
    """The repository, counting the runner's progress writes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.progress_writes: list[JobProgress] = []

    async def progress(self, *args: Any) -> bool:
        self.progress_writes.append(args[-1])
        return bool(await self.inner.progress(*args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _replica(state: StateStore, tmp_path: Path, **options: Any) -> VideoJobs:
    """One replica's video jobs: its own runner id, the shared database and directory."""
    store = MediaStore(DirBackend(tmp_path / "media"), state.media, retention_s=60)
    settings = {"heartbeat_s": 5.0, "stale_after_s": 15.0, "progress_write_s": 1.0, **options}
    return VideoJobs(store, CountingJobs(state.video_jobs), **settings)  # type: ignore[arg-type]


@pytest.fixture
def jobs(state: StateStore, tmp_path: Path) -> VideoJobs:
    return _replica(state, tmp_path)


def _job(jobs: VideoJobs, owner: str = "north") -> VideoJobRecord:
    return VideoJobRecord(
        id=jobs.new_id(),
        model="m",
        prompt="p",
        seconds="4",
        size="auto",
        owner=owner,
        created_at=time.time(),
        runner_id="",
        heartbeat_at=0.0,
    )


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + 10
    while not await check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def _status(jobs: VideoJobs, job: VideoJobRecord, *wanted: str) -> VideoJobRecord:
    found: list[VideoJobRecord] = []

    async def check() -> bool:
        found[:] = [await jobs.get(job.id, job.owner)]
        return found[0].status in wanted

    await _until(check)
    return found[0]


def _video(jobs: VideoJobs, gate: asyncio.Event) -> Callable[[JobReporter], Awaitable[VideoOutput]]:
    async def run(reporter: JobReporter) -> VideoOutput:
        reporter.accept()
        await gate.wait()
        for percent in range(1, 51):
            reporter.report(percent)
        reporter.report(20)  # never backwards
        gate.clear()
        await gate.wait()
        media = await jobs.store.save(b"\0\0\0\x18ftypmp42", "video/mp4", owner=reporter.owner)
        return VideoOutput(media, "64x48", "4")

    return run


async def test_lifecycle_is_written_to_the_store_and_read_by_another_replica(
    state: StateStore, tmp_path: Path
) -> None:
    a = _replica(state, tmp_path, progress_write_s=30)
    b = _replica(state, tmp_path)
    assert a.runner_id != b.runner_id
    gate = asyncio.Event()
    job = await a.start(_job(a), _video(a, gate))
    assert job.status == "queued" and job.progress == 0 and job.runner_id == a.runner_id
    assert (await b.get(job.id, "north")).status == "queued"
    gate.set()
    running = await _status(b, job, "in_progress")
    assert running.progress == 50
    gate.set()
    done = await _status(b, job, "completed")
    wire = b.wire(done)
    assert wire.status == "completed" and wire.progress == 100 and wire.size == "64x48"
    assert wire.completed_at is not None and wire.expires_at is not None
    assert wire.expires_at >= wire.completed_at
    assert done.media_id is not None
    media = await b.store.find("north", done.media_id)
    assert media is not None and await b.store.read(media) == b"\0\0\0\x18ftypmp42"
    # 51 reports, throttled: the status change was written at once, the rest never
    # before the 30 s progress interval (the outcome is written by ``finish``).
    writes = a.jobs.progress_writes  # type: ignore[attr-defined]
    assert [(w.status, w.progress) for w in writes] == [("in_progress", 50)]


async def test_progress_never_reaches_100_before_completion(jobs: VideoJobs) -> None:
    local = RunningJob(_job(jobs))
    local.report(250)
    assert local.status == "in_progress" and local.progress == 99


async def test_failure_before_acceptance_is_raised(jobs: VideoJobs) -> None:
    async def run(reporter: JobReporter) -> VideoOutput:
        raise InvalidRequest("no input image", param="input_reference")

    with pytest.raises(InvalidRequest, match="no input image"):
        await jobs.start(_job(jobs), run)
    assert await jobs.list("north") == []


async def test_failure_after_acceptance_fails_the_job(jobs: VideoJobs) -> None:
    async def run(reporter: JobReporter) -> VideoOutput:
        reporter.accept()
        await asyncio.sleep(0)
        raise UpstreamTimeout("took too long")

    job = await jobs.start(_job(jobs), run)
    wire = jobs.wire(await _status(jobs, job, "failed"))
    assert wire.error is not None
    assert wire.error.code == "upstream_timeout" and wire.error.message == "took too long"


async def test_jobs_are_private_to_their_team(jobs: VideoJobs) -> None:
    job = await jobs.start(_job(jobs, "north"), _never)
    assert (await jobs.get(job.id, "north")).id == job.id
    with pytest.raises(NotFound):
        await jobs.get(job.id, "south")
    with pytest.raises(NotFound):
        await jobs.delete(job.id, "south")
    assert await jobs.list("south") == []
    await jobs.aclose()


async def test_shutdown_fails_the_jobs_it_runs(state: StateStore, tmp_path: Path) -> None:
    a, b = _replica(state, tmp_path), _replica(state, tmp_path)
    job = await a.start(_job(a), _never)
    await a.aclose()
    ended = await b.get(job.id, "north")
    assert ended.status == "failed" and ended.error_code == "shutdown"
    assert ended.completed_at is not None


async def test_a_job_deleted_on_another_replica_stops_its_runner(
    state: StateStore, tmp_path: Path
) -> None:
    a = _replica(state, tmp_path, heartbeat_s=0.05, stale_after_s=5)
    b = _replica(state, tmp_path)
    stopped = asyncio.Event()

    async def run(reporter: JobReporter) -> VideoOutput:
        reporter.accept()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        raise AssertionError

    job = await a.start(_job(a), run)
    await b.delete(job.id, "north")
    await asyncio.wait_for(stopped.wait(), 10)  # a's next heartbeat finds the row gone
    with pytest.raises(NotFound):
        await a.get(job.id, "north")


async def test_a_job_whose_runner_died_is_failed_by_whoever_reads_it(
    state: StateStore, tmp_path: Path
) -> None:
    reader = _replica(state, tmp_path, heartbeat_s=1, stale_after_s=3)
    now = time.time()
    stale = replace(
        _job(reader), runner_id="runner_dead", heartbeat_at=now - 10, status="in_progress"
    )
    stale = replace(stale, progress=40)
    alive = replace(_job(reader), runner_id="runner_alive", heartbeat_at=now)
    await state.video_jobs.create(stale)
    await state.video_jobs.create(alive)
    lost = await reader.get(stale.id, "north")
    assert (lost.status, lost.error_code, lost.progress) == ("failed", "runner_lost", 40)
    assert lost.error_message is not None and "3 s" in lost.error_message
    assert (await reader.get(alive.id, "north")).status == "queued"
    # The listing does it too, and the sweep for jobs nobody reads.
    second = replace(stale, id=reader.new_id())
    await state.video_jobs.create(second)
    listed = {j.id: j for j in await reader.list("north")}
    assert listed[second.id].error_code == "runner_lost"
    third = replace(stale, id=reader.new_id(), owner="south")
    await state.video_jobs.create(third)
    await reader.sweep()
    assert (await state.video_jobs.get("south", third.id)).error_code == "runner_lost"  # type: ignore[union-attr]


async def test_a_running_job_keeps_its_heartbeat_fresh(state: StateStore, tmp_path: Path) -> None:
    a = _replica(state, tmp_path, heartbeat_s=0.1, stale_after_s=1.5)
    b = _replica(state, tmp_path, heartbeat_s=0.1, stale_after_s=1.5)
    job = await a.start(_job(a), _never)
    first = (await b.get(job.id, "north")).heartbeat_at
    await _until(lambda: _heartbeat_after(b, job, first + 2))  # beyond stale_after
    assert (await b.get(job.id, "north")).status == "queued"
    await a.aclose()


async def _heartbeat_after(jobs: VideoJobs, job: VideoJobRecord, at: float) -> bool:
    return (await jobs.get(job.id, job.owner)).heartbeat_at > at


async def test_finished_jobs_are_forgotten_after_retention(jobs: VideoJobs) -> None:
    job = await jobs.start(_job(jobs), _fails)
    await _status(jobs, job, "failed")
    assert await jobs.sweep() == 0
    assert await jobs.sweep(now=time.time() + 61) == 1
    assert await jobs.list("north") == []


async def _never(reporter: JobReporter) -> VideoOutput:
    reporter.accept()
    await asyncio.Event().wait()
    raise AssertionError


async def _fails(reporter: JobReporter) -> VideoOutput:
    reporter.accept()
    raise UpstreamTimeout("x")
