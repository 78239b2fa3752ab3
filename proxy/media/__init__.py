"""Media produced by adapters: the store (metadata in the state store, bytes in a
backend), its URLs, uploads, and video jobs.

``MediaServices`` is what the app lifespan creates once and closes at shutdown; the
store is also lent to adapters through ``Resources.extra`` (``media_store``), so an
adapter that produces a large file (a video) can stream it straight to the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.media.jobs import VideoJobs
from proxy.media.outputs import GeneratedImages, MediaBlob, VideoOutput
from proxy.media.services import MEDIA_KEY, MediaServices
from proxy.media.store import MediaStore, StoredMedia

if TYPE_CHECKING:
    from adapters.base import Resources

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


def media_store(resources: Resources) -> MediaStore:
    """The app's media store, as lent to adapters."""
    store = resources.extra.get(MEDIA_KEY)
    if not isinstance(store, MediaStore):
        raise RuntimeError("the media store is created by the app lifespan")
    return store
