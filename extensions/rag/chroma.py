"""Opening a Chroma client, and Chroma's exceptions as the gateway's typed errors.

Both import chromadb lazily: importing it costs most of a second, which a gateway that
never touches RAG should not pay.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from extensions.rag.owners import unknown_collection
from proxy.errors import (
    InvalidRequest,
    ServiceUnavailable,
    SwitchyardError,
    UpstreamError,
)

if TYPE_CHECKING:
    from extensions.rag.config import RagConfig

log = logging.getLogger("switchyard.rag")


def open_client(config: RagConfig, data_dir: Path) -> Any:
    """An ``HttpClient`` for ``config.chroma_url``, else a ``PersistentClient`` under
    ``data_dir/chroma``. Telemetry is off. Blocking: call it in a worker thread."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if config.chroma_url:
        url = urlsplit(config.chroma_url)
        ssl = url.scheme == "https"
        return chromadb.HttpClient(
            host=url.hostname or "localhost",
            port=url.port or (443 if ssl else 8000),
            ssl=ssl,
            settings=settings,
        )
    path = data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def mapped_error(exc: Exception, collection: str | None, location: str) -> SwitchyardError:
    """``exc`` (raised by a Chroma call) as a typed error: an unknown collection is 404,
    a rejected argument 400, an unreachable server 503, anything else 502."""
    import httpx
    from chromadb import errors

    if isinstance(exc, SwitchyardError):
        return exc
    if isinstance(exc, errors.NotFoundError) and collection is not None:
        return unknown_collection(collection)
    if isinstance(exc, errors.InvalidArgumentError | ValueError | TypeError):
        return InvalidRequest(f"Rejected by the vector store: {exc}")
    if isinstance(exc, httpx.HTTPError | ConnectionError | OSError):
        return ServiceUnavailable(f"The vector store at {location} is unreachable: {exc}")
    if not isinstance(exc, errors.ChromaError):
        log.error("unexpected vector store error", exc_info=exc)
    return UpstreamError(f"The vector store failed: {exc}", code="vector_store_error")
