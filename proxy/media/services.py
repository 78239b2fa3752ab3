"""``MediaServices``: the media store, its backend and the video jobs, as the app lifespan
creates them once and closes them at shutdown; and the retention sweep.

The sweep runs on every replica every ``sweep_interval_s``, but does its work only on the
one that holds the ``media-sweep`` lease in the state store (taken, or extended by its
holder, with one atomic upsert; see ``LeaseRepository``). So retention is enforced once,
not by every replica at once; when the holder goes away its lease runs out and another
replica takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.media.backends import MediaBackend, open_backend
from proxy.media.jobs import VideoJobs
from proxy.media.legacy import import_legacy_media
from proxy.media.store import MediaStore

if TYPE_CHECKING:
    from adapters.base import Resources
    from proxy.settings import Settings
    from proxy.state.repositories import LeaseRepository
    from proxy.state.store import StateStore

MEDIA_KEY = "media_store"
SWEEP_LEASE = "media-sweep"
log = logging.getLogger("switchyard.media")


@dataclass(slots=True)
class SweepResult:
    swept: bool
    """Whether this replica held the lease (and so did the work)."""
    files: int = 0
    jobs: int = 0


@dataclass(slots=True)
class MediaServices:
    store: MediaStore
    videos: VideoJobs
    leases: LeaseRepository
    sweep_interval_s: float
    legacy_dir: str | None = None
    """The pre-state-store media directory (``{data_dir}/media``), imported once at start."""
    holder: str = field(default_factory=lambda: "sweeper_" + secrets.token_hex(8))
    _sweeper: asyncio.Task[None] | None = field(default=None)

    @classmethod
    def create(cls, settings: Settings, resources: Resources, state: StateStore) -> MediaServices:
        """The services for ``settings``, with the store lent to adapters via ``resources``."""
        server, config = settings.server, settings.media
        name, section = config.store.chosen()
        backend: MediaBackend = open_backend(
            name, section, data_dir=server.data_dir, base_dir=settings.base_dir
        )
        retention = config.retention_s or server.media_retention_s
        store = MediaStore(backend, state.media, retention_s=retention)
        resources.extra[MEDIA_KEY] = store
        videos = VideoJobs(
            store,
            state.video_jobs,
            heartbeat_s=config.job_heartbeat_s,
            stale_after_s=config.stale_after_s,
            progress_write_s=config.job_progress_write_s,
        )
        interval = config.sweep_interval_s or server.media_sweep_interval_s
        legacy = str(Path(server.data_dir) / "media")
        return cls(store, videos, state.leases, interval, legacy_dir=legacy)

    async def start(self) -> None:
        """Import the old media directory (once), then sweep every ``sweep_interval_s``."""
        if self.legacy_dir is not None:
            try:
                await import_legacy_media(self.store, self.legacy_dir)
            except Exception:
                log.exception("importing the media directory %s failed", self.legacy_dir)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="media-sweeper")

    def lease_s(self) -> float:
        """How long a sweep's lease lasts: beyond the next tick, so its holder keeps it."""
        return max(3 * self.sweep_interval_s, 30.0)

    async def sweep_once(self, now: float | None = None) -> SweepResult:
        """Sweep if this replica holds (or can take) the lease."""
        now = time.time() if now is None else now
        if not await self.leases.acquire(SWEEP_LEASE, self.holder, self.lease_s(), time.time()):
            return SweepResult(swept=False)
        jobs = await self.videos.sweep(now)
        files = await self.store.sweep(now)
        return SweepResult(swept=True, files=files, jobs=jobs)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("media sweep failed")
            await asyncio.sleep(self.sweep_interval_s)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.videos.aclose()
        with contextlib.suppress(Exception):
            await self.leases.release(SWEEP_LEASE, self.holder)
        await self.store.backend.aclose()
