"""Embedding and storing prepared sources a batch at a time.

A write of a thousand chunks embeds for minutes on a local model. Holding the
collection's write lock all that time would block every other writer, so the lock is
taken per batch (``rag.embed_batch_size`` chunks): embed the batch, then lock, upsert
it, unlock. The new version of a source is written beside the old one (chunk ids embed
the content hash); only when every source of the call is stored are the old versions
deleted. If anything fails first, or the call is cancelled because its client left, the
new chunks stored so far are deleted again: the collection keeps what it had.

Two writers of the same source would delete each other's new chunks, so writes of one
source id are serialised by ``Writers.holding`` (other sources go on in parallel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from extensions.rag.records import PreparedSource
from extensions.rag.schemas import DocumentResult

if TYPE_CHECKING:
    from extensions.rag.store import RagStore

log = logging.getLogger("switchyard.rag")


class Writers:
    """What the writers of one store share: a lock per ``(collection, source id)``, kept
    only while someone holds it, and the clean-ups of cancelled writes still running."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.cleanups: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def holding(self, collection: str, source_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``source_ids``, taken in sorted order (no deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for source_id in sorted(set(source_ids)):
                key = (collection, source_id)
                lock = self._locks.get(key)
                if lock is None:
                    lock = self._locks[key] = asyncio.Lock()
                await stack.enter_async_context(lock)
            yield


async def write_sources(
    store: RagStore,
    owner: str,
    name: str,
    sources: list[PreparedSource],
    on_stored: Callable[[int], None] | None = None,
) -> list[DocumentResult]:
    """Store ``sources`` (see the module doc); unchanged ones (same hash) are skipped."""
    ids = [s.source_id for s in sources]
    async with store.writers.holding(name, ids):
        stored = await store.stored_hashes(owner, name, {"source_id": {"$in": ids}}) if ids else {}
        todo = [s for s in sources if stored.get(s.source_id, (None, ""))[1] != s.content_hash]
        try:
            for source in todo:
                await _store_source(store, owner, name, source, on_stored)
        except BaseException:
            await _discard(store, owner, name, todo)
            raise
        if todo:
            await store.delete_old_versions(owner, name, todo)
    results = []
    for s in sources:
        if s.source_id not in stored:
            status = "added"
        elif stored[s.source_id][1] == s.content_hash:
            status = "unchanged"
        else:
            status = "replaced"
        results.append(
            DocumentResult(id=s.source_id, source=s.source, chunks=len(s.chunks), status=status)
        )
    return results


async def _store_source(
    store: RagStore,
    owner: str,
    name: str,
    source: PreparedSource,
    on_stored: Callable[[int], None] | None,
) -> None:
    ids = source.chunk_ids()
    metadatas = source.chunk_metadatas()
    documents = [c.text for c in source.chunks]
    size = store.config.embed_batch_size
    for start in range(0, len(ids), size):
        end = start + size
        vectors = await store.embed(documents[start:end])
        await store.store_batch(
            owner, name, ids[start:end], vectors, documents[start:end], metadatas[start:end]
        )
        if on_stored is not None:
            on_stored(len(vectors))


async def _discard(store: RagStore, owner: str, name: str, sources: list[PreparedSource]) -> None:
    """Delete the new chunks of an unfinished write.

    Runs even when the write is being cancelled: the deletion is shielded, and if the
    caller is cancelled again while waiting, it finishes in the background.
    """
    ids = [chunk_id for s in sources for chunk_id in s.chunk_ids()]
    if not ids:
        return
    task = asyncio.ensure_future(store.delete_chunks(owner, name, ids))
    store.writers.cleanups.add(task)
    task.add_done_callback(store.writers.cleanups.discard)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        pass  # the caller re-raises its own error (or cancellation) right after
    except Exception:
        log.warning("could not delete the partial chunks of an unfinished write to %r", name)
