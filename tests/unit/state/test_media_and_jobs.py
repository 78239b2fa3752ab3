"""MediaRepository, VideoJobRepository and LeaseRepository on both engines: every read
and write takes the owner, runner writes name the runner, leases have one holder."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig
from proxy.state.records import JobOutcome, JobProgress, MediaRecord, VideoJobRecord


def _media(media_id: str, owner: str = "north", *, expires: float | None = None) -> MediaRecord:
    now = time.time()
    return MediaRecord(
        id=media_id,
        owner=owner,
        content_type="image/png",
        size=7,
        created=now,
        expires=now + 60 if expires is None else expires,
        storage_key=f"{media_id}.png",
    )


def _job(
    job_id: str, owner: str = "north", runner: str = "runner_a", **extra: object
) -> VideoJobRecord:
    now = time.time()
    fields: dict[str, object] = {
        "id": job_id,
        "owner": owner,
        "model": "wan",
        "prompt": "tide",
        "seconds": "4",
        "size": "16x16",
        "created_at": now,
        "runner_id": runner,
        "heartbeat_at": now,
        **extra,
    }
    return VideoJobRecord(**fields)  # type: ignore[arg-type]


M1, M2 = "a" * 32, "b" * 32


async def test_media_rows_belong_to_their_team(state_store: StateStore) -> None:
    rows = state_store.media
    added = _media(M1)
    await rows.add(added)
    now = time.time()
    found = await rows.get("north", M1, now)
    assert found == added
    assert await rows.get("south", M1, now) is None
    assert await rows.by_capability(M1, now) == found
    assert await rows.delete("south", M1) is None
    assert await rows.get("north", M1, now) is not None
    await rows.set_size("south", M1, 99)  # another team's write changes nothing
    assert (await rows.get("north", M1, now)).size == 7  # type: ignore[union-attr]
    await rows.set_size("north", M1, 4000)
    assert (await rows.get("north", M1, now)).size == 4000  # type: ignore[union-attr]
    deleted = await rows.delete("north", M1)
    assert deleted is not None and deleted.id == M1
    assert await rows.by_capability(M1, now) is None


async def test_expired_media_is_never_found_and_is_listed_for_the_sweep(
    state_store: StateStore,
) -> None:
    rows = state_store.media
    now = time.time()
    await rows.add(_media(M1, expires=now - 1))
    await rows.add(_media(M2, "south", expires=now - 2))
    await rows.add(_media("c" * 32, expires=now + 60))
    assert await rows.get("north", M1, now) is None
    assert await rows.by_capability(M1, now) is None
    expired = await rows.expired(now, 10)
    assert [r.id for r in expired] == [M2, M1]  # oldest first, every owner
    assert [r.id for r in await rows.expired(now, 1)] == [M2]
    assert await rows.forget(expired) == 2
    assert await rows.expired(now, 10) == []
    assert await rows.by_capability("c" * 32, now) is not None


async def test_legacy_import_happens_once(state_store: StateStore) -> None:
    rows = state_store.media
    await rows.add(_media(M1))
    assert not await rows.imported("media-dir:/old")
    assert await rows.import_once("media-dir:/old", [_media(M1, "south"), _media(M2)]) == 1
    assert await rows.imported("media-dir:/old")
    assert (await rows.by_capability(M1, time.time())).owner == "north"  # type: ignore[union-attr]
    assert await rows.import_once("media-dir:/old", [_media("c" * 32)]) == 0
    assert await rows.by_capability("c" * 32, time.time()) is None


async def test_jobs_belong_to_their_team_newest_first(state_store: StateStore) -> None:
    jobs = state_store.video_jobs
    await jobs.create(_job("video_1", created_at=100.0))
    await jobs.create(_job("video_2", created_at=200.0))
    await jobs.create(_job("video_3", "south"))
    assert [j.id for j in await jobs.list("north")] == ["video_2", "video_1"]
    assert [j.id for j in await jobs.list("south")] == ["video_3"]
    assert await jobs.get("south", "video_1") is None
    got = await jobs.get("north", "video_1")
    assert got is not None and got.status == "queued" and got.media_expires is None
    assert await jobs.delete("south", "video_1") is None
    assert (await jobs.delete("north", "video_1")).id == "video_1"  # type: ignore[union-attr]
    assert await jobs.get("north", "video_1") is None


async def test_only_the_runner_writes_and_only_while_active(state_store: StateStore) -> None:
    jobs = state_store.video_jobs
    await jobs.create(_job("video_1"))
    update = JobProgress(status="in_progress", progress=40, heartbeat_at=time.time())
    assert not await jobs.progress("north", "video_1", "runner_b", update)
    assert not await jobs.progress("south", "video_1", "runner_a", update)
    assert await jobs.progress("north", "video_1", "runner_a", update)
    got = await jobs.get("north", "video_1")
    assert got is not None and (got.status, got.progress) == ("in_progress", 40)
    now = time.time()
    await state_store.media.add(_media(M1, expires=now + 60))
    done = JobOutcome(
        status="completed", completed_at=now, progress=100, media_id=M1, size="32x32", seconds="2"
    )
    assert not await jobs.finish("north", "video_1", "runner_b", done)
    assert await jobs.finish("north", "video_1", "runner_a", done)
    got = await jobs.get("north", "video_1")
    assert got is not None
    assert (got.status, got.progress, got.media_id, got.size, got.seconds) == (
        "completed",
        100,
        M1,
        "32x32",
        "2",
    )
    assert got.media_expires == pytest.approx(now + 60)
    # Finished: neither a late progress write nor a second outcome changes it.
    assert not await jobs.progress("north", "video_1", "runner_a", update)
    failed = JobOutcome(status="failed", completed_at=now, error_code="x", error_message="y")
    assert not await jobs.finish("north", "video_1", "runner_a", failed)
    assert (await jobs.get("north", "video_1")).status == "completed"  # type: ignore[union-attr]


async def test_stale_jobs_fail_per_team_or_all(state_store: StateStore) -> None:
    jobs = state_store.video_jobs
    now = time.time()
    await jobs.create(_job("video_old", heartbeat_at=now - 100))
    await jobs.create(_job("video_fresh", heartbeat_at=now))
    await jobs.create(_job("video_south", "south", heartbeat_at=now - 100))
    await jobs.create(
        _job("video_done", status="completed", heartbeat_at=now - 100, completed_at=now)
    )
    assert await jobs.fail_stale("north", now - 15, now, "runner_lost", "gone") == 1
    old = await jobs.get("north", "video_old")
    assert old is not None and (old.status, old.error_code, old.error_message) == (
        "failed",
        "runner_lost",
        "gone",
    )
    assert old.completed_at == now
    assert (await jobs.get("north", "video_fresh")).status == "queued"  # type: ignore[union-attr]
    assert (await jobs.get("south", "video_south")).status == "queued"  # type: ignore[union-attr]
    assert (await jobs.get("north", "video_done")).status == "completed"  # type: ignore[union-attr]
    assert await jobs.fail_stale(None, now - 15, now, "runner_lost", "gone") == 1
    assert (await jobs.get("south", "video_south")).status == "failed"  # type: ignore[union-attr]
    # The runner of a job declared lost cannot bring it back.
    update = JobProgress(status="in_progress", progress=50, heartbeat_at=now)
    assert not await jobs.progress("north", "video_old", "runner_a", update)


async def test_finished_jobs_are_forgotten_after_retention(state_store: StateStore) -> None:
    jobs = state_store.video_jobs
    now = time.time()
    await jobs.create(_job("video_old", status="failed", completed_at=now - 100))
    await jobs.create(_job("video_new", status="completed", completed_at=now))
    await jobs.create(_job("video_running", heartbeat_at=now - 1000))
    assert await jobs.forget_finished(now - 50) == 1
    assert {j.id for j in await jobs.list("north")} == {"video_new", "video_running"}


async def test_a_lease_has_one_holder_until_it_runs_out(state_store: StateStore) -> None:
    leases = state_store.leases
    now = time.time()
    assert await leases.acquire("sweep", "a", 10, now)
    assert not await leases.acquire("sweep", "b", 10, now + 5)
    assert await leases.acquire("sweep", "a", 10, now + 5)  # its holder extends it
    assert not await leases.acquire("sweep", "b", 10, now + 14)
    assert await leases.acquire("sweep", "b", 10, now + 16)  # a's ran out at now + 15
    assert not await leases.acquire("sweep", "a", 10, now + 17)
    await leases.release("sweep", "a")  # not a's to release
    assert not await leases.acquire("sweep", "a", 10, now + 17)
    await leases.release("sweep", "b")
    assert await leases.acquire("sweep", "a", 10, now + 17)
    assert await leases.acquire("other", "b", 10, now + 17)  # leases are independent


async def test_two_stores_race_for_a_lease_and_one_wins(
    state_store: StateStore, database_url: str, tmp_path: Path
) -> None:
    other = await open_state(StateConfig(database=database_url), data_dir=str(tmp_path))
    try:
        now = time.time()
        for round_ in range(5):
            name = f"race-{round_}"
            results = await asyncio.gather(
                *(
                    (state_store if i % 2 else other).leases.acquire(name, f"h{i}", 30, now)
                    for i in range(8)
                )
            )
            assert sum(results) == 1, results
    finally:
        await other.aclose()
