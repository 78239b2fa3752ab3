"""ExtensionJobRepository on both engines: reads take the owner (and the kind), runner
writes name the runner and stop once the job ended, stale jobs fail, old ones go."""

from __future__ import annotations

import time

import msgspec

from proxy.state import StateStore
from proxy.state.records import ExtensionJobChange, ExtensionJobRecord

KIND = "test.index"


def _job(
    job_id: str, owner: str = "key-a", runner: str = "runner_a", **extra: object
) -> ExtensionJobRecord:
    now = time.time()
    fields: dict[str, object] = {
        "kind": KIND,
        "id": job_id,
        "owner": owner,
        "document": msgspec.json.encode({"id": job_id, "files": 0}),
        "runner_id": runner,
        "heartbeat_at": now,
        "created_at": now,
        "updated_at": now,
        **extra,
    }
    return ExtensionJobRecord(**fields)  # type: ignore[arg-type]


async def test_a_job_is_read_only_by_its_owner_and_kind(state_store: StateStore) -> None:
    jobs = state_store.extension_jobs
    first = _job("job_1", created_at=100.0)
    await jobs.create(first)
    await jobs.create(_job("job_2", created_at=200.0))
    await jobs.create(_job("job_3", owner="key-b"))
    await jobs.create(_job("job_1", runner="other", kind="other"))

    got = await jobs.get(KIND, "key-a", "job_1")
    assert got == first and msgspec.json.decode(got.document) == {"id": "job_1", "files": 0}
    assert await jobs.get(KIND, "key-b", "job_1") is None
    assert await jobs.get("another.kind", "key-a", "job_1") is None
    assert [j.id for j in await jobs.list(KIND, "key-a")] == ["job_2", "job_1"]
    assert [j.id for j in await jobs.list(KIND, "key-b")] == ["job_3"]
    assert [(j.kind, j.runner_id) for j in await jobs.list("other", "key-a")] == [
        ("other", "other")
    ]


async def test_only_the_runner_updates_a_job_and_only_while_it_is_active(
    state_store: StateStore,
) -> None:
    jobs = state_store.extension_jobs
    await jobs.create(_job("job_1", heartbeat_at=10.0))
    running = ExtensionJobChange(now=50.0, status="running", document=b'{"files":1}')
    assert not await jobs.update(KIND, "key-a", "job_1", "runner_b", running)
    assert not await jobs.update(KIND, "key-b", "job_1", "runner_a", running)
    assert not await jobs.update("other", "key-a", "job_1", "runner_a", running)
    assert (await jobs.get(KIND, "key-a", "job_1")).status == "queued"  # type: ignore[union-attr]

    assert await jobs.update(KIND, "key-a", "job_1", "runner_a", running)
    got = await jobs.get(KIND, "key-a", "job_1")
    assert got is not None
    assert (got.status, got.document, got.heartbeat_at, got.updated_at) == (
        "running",
        b'{"files":1}',
        50.0,
        50.0,
    )
    assert await jobs.update(KIND, "key-a", "job_1", "runner_a", ExtensionJobChange(now=60.0))
    got = await jobs.get(KIND, "key-a", "job_1")
    assert got is not None and (got.status, got.document, got.heartbeat_at) == (
        "running",
        b'{"files":1}',
        60.0,
    )

    done = ExtensionJobChange(now=70.0, status="succeeded", document=b'{"files":2}')
    assert await jobs.update(KIND, "key-a", "job_1", "runner_a", done)
    late = ExtensionJobChange(now=80.0, status="running", document=b"{}")
    assert not await jobs.update(KIND, "key-a", "job_1", "runner_a", late)
    got = await jobs.get(KIND, "key-a", "job_1")
    assert got is not None and (got.status, got.document, got.updated_at) == (
        "succeeded",
        b'{"files":2}',
        70.0,
    )


async def test_stale_jobs_of_the_kind_fail_with_the_reason_and_their_runner_is_stopped(
    state_store: StateStore,
) -> None:
    jobs = state_store.extension_jobs
    await jobs.create(_job("old_queued", heartbeat_at=10.0))
    await jobs.create(_job("old_running", owner="key-b", heartbeat_at=10.0, status="running"))
    await jobs.create(_job("fresh", heartbeat_at=100.0, status="running"))
    await jobs.create(_job("old_done", heartbeat_at=10.0, status="succeeded"))
    await jobs.create(_job("old_job", heartbeat_at=10.0, kind="other"))

    assert await jobs.fail_stale(KIND, 50.0, "its replica stopped", 60.0) == 2
    for owner, job_id in [("key-a", "old_queued"), ("key-b", "old_running")]:
        got = await jobs.get(KIND, owner, job_id)
        assert got is not None
        assert (got.status, got.error, got.updated_at) == ("failed", "its replica stopped", 60.0)
    assert (await jobs.get(KIND, "key-a", "fresh")).status == "running"  # type: ignore[union-attr]
    done = await jobs.get(KIND, "key-a", "old_done")
    assert done is not None and (done.status, done.error) == ("succeeded", None)
    other = await jobs.get("other", "key-a", "old_job")
    assert other is not None and other.status == "queued"
    # The runner comes back too late: it may no longer write.
    change = ExtensionJobChange(now=70.0, status="succeeded")
    assert not await jobs.update(KIND, "key-b", "old_running", "runner_a", change)


async def test_finished_jobs_of_the_kind_are_forgotten_after_the_cutoff(
    state_store: StateStore,
) -> None:
    jobs = state_store.extension_jobs
    await jobs.create(_job("done_old", status="succeeded", updated_at=10.0))
    await jobs.create(_job("failed_old", owner="key-b", status="failed", updated_at=10.0))
    await jobs.create(_job("done_new", status="cancelled", updated_at=100.0))
    await jobs.create(_job("running_old", status="running", updated_at=10.0))
    await jobs.create(_job("other_old", status="succeeded", updated_at=10.0, kind="other"))

    assert await jobs.forget_finished(KIND, 50.0) == 2
    assert await jobs.get(KIND, "key-a", "done_old") is None
    assert await jobs.get(KIND, "key-b", "failed_old") is None
    assert {j.id for j in await jobs.list(KIND, "key-a")} == {"done_new", "running_old"}
    assert [j.id for j in await jobs.list("other", "key-a")] == ["other_old"]
