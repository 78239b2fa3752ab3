"""Retention is enforced once: two replicas' sweepers on one database (both engines), one
media directory; only the holder of the sweep lease deletes anything."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from proxy.media.backends.dir import DirBackend
from proxy.media.jobs import VideoJobs
from proxy.media.services import MediaServices
from proxy.media.store import MediaStore
from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig


class CountingBackend(DirBackend):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.deletes: list[str] = []

    async def delete(self, key: str) -> None:
        self.deletes.append(key)
        await super().delete(key)


def _replica(state: StateStore, root: Path) -> tuple[MediaServices, CountingBackend]:
    backend = CountingBackend(root)
    store = MediaStore(backend, state.media, retention_s=0.2)
    return MediaServices(store, VideoJobs(store, state.video_jobs), state.leases, 60.0), backend


async def test_two_sweepers_on_one_database_delete_once(
    state_store: StateStore, database_url: str, tmp_path: Path
) -> None:
    other = await open_state(StateConfig(database=database_url), data_dir=str(tmp_path))
    root = tmp_path / "shared-media"
    try:
        a, a_backend = _replica(state_store, root)
        b, b_backend = _replica(other, root)
        saved = [await a.store.save(b"x%d" % i, "image/png", owner="north") for i in range(6)]
        saved += [await b.store.save(b"y%d" % i, "image/png", owner="south") for i in range(6)]
        await asyncio.sleep(0.3)  # all past their 0.2 s retention
        results = await asyncio.gather(a.sweep_once(), b.sweep_once())
        assert sorted(r.swept for r in results) == [False, True]
        winner = next(r for r in results if r.swept)
        assert winner.files == 12
        deletes: list[Any] = a_backend.deletes + b_backend.deletes
        assert sorted(deletes) == sorted(m.storage_key for m in saved)  # each once
        assert not (a_backend.deletes and b_backend.deletes)
        assert [p.name for p in root.iterdir()] == []
        # The holder keeps its lease on its next tick; the other is still refused.
        holder, waiting = (a, b) if results[0].swept else (b, a)
        assert (await holder.sweep_once()).swept
        assert not (await waiting.sweep_once()).swept
        # A holder that stops gives the lease back, and the other takes over.
        await holder.aclose()
        assert (await waiting.sweep_once()).swept
        await waiting.aclose()
    finally:
        await other.aclose()


async def test_a_lease_left_by_a_dead_holder_runs_out(
    state_store: StateStore, tmp_path: Path
) -> None:
    services, _ = _replica(state_store, tmp_path / "media")
    now = time.time()
    assert await state_store.leases.acquire("media-sweep", "sweeper_dead", 0.2, now)
    assert not (await services.sweep_once()).swept
    await asyncio.sleep(0.3)
    assert (await services.sweep_once()).swept
