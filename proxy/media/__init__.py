"""Media produced by adapters: the on-disk store, its URLs, uploads, and video jobs.

``MediaServices`` is what the app lifespan creates once and closes at shutdown; the
store is also lent to adapters through ``Resources.extra`` (``media_store``), so an
adapter that produces a large file (a video) can stream it straight to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.media.jobs import VideoJobs
from proxy.media.outputs import GeneratedImages, MediaBlob, VideoOutput
from proxy.media.store import MediaStore, StoredMedia

if TYPE_CHECKING:
    from adapters.base import Resources
    from proxy.settings import Settings

__all__ = [
    "GeneratedImages",
    "MediaBlob",
    "MediaServices",
    "MediaStore",
    "StoredMedia",
    "VideoJobs",
    "VideoOutput",
    "media_store",
]

MEDIA_KEY = "media_store"
log = logging.getLogger("switchyard.media")


def media_store(resources: Resources) -> MediaStore:
    """The app's media store, as lent to adapters."""
    store = resources.extra.get(MEDIA_KEY)
    if not isinstance(store, MediaStore):
        raise RuntimeError("the media store is created by the app lifespan")
    return store


@dataclass(slots=True)
class MediaServices:
    store: MediaStore
    videos: VideoJobs
    sweep_interval_s: float
    _sweeper: asyncio.Task[None] | None = field(default=None)

    @classmethod
    def create(cls, settings: Settings, resources: Resources) -> MediaServices:
        """The services for ``settings``, with the store lent to adapters via ``resources``."""
        server = settings.server
        store = MediaStore(Path(server.data_dir) / "media", retention_s=server.media_retention_s)
        resources.extra[MEDIA_KEY] = store
        return cls(store, VideoJobs(store), server.media_sweep_interval_s)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="media-sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                self.videos.sweep()
                await asyncio.to_thread(self.store.sweep)
            except Exception:
                log.exception("media sweep failed")
            await asyncio.sleep(self.sweep_interval_s)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.videos.aclose()
