"""Turning documents, uploaded files and server-side directories into stored chunks.

Every source gets a content hash over its bytes, its metadata and the settings that
shape its chunks (chunk size, overlap, embedding model): storing a source whose hash is
already stored is a no-op, and changing those settings makes the next re-index redo
everything, as it must.

A request is validated and parsed completely before anything is written, so a bad
file or document in it leaves the collection untouched. Directory indexing is the
exception by design: one unreadable file is reported and the rest are indexed.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from extensions.rag.chunking import Chunk, chunk_text
from extensions.rag.loaders import Extracted, doc_type_of, extract
from extensions.rag.paths import allowed_roots, resolve_index_root, walk
from extensions.rag.records import PreparedSource
from extensions.rag.schemas import (
    DocumentIn,
    DocumentsAdded,
    IndexFailure,
    IndexReport,
    IndexRequest,
    Metadata,
    check_metadata,
)
from proxy.errors import InvalidRequest, PayloadTooLarge, SwitchyardError

if TYPE_CHECKING:
    from extensions.rag.store import RagStore

_MIB = 1024 * 1024
#: Files embedded and written together while indexing a directory.
_INDEX_BATCH_FILES = 16


def content_hash(store: RagStore, data: bytes, *parts: object) -> str:
    config = store.config
    digest = hashlib.sha256()
    shape = f"v1|{config.chunk_tokens}|{config.chunk_overlap}|{config.embedding_model}|"
    digest.update(shape.encode())
    digest.update(msgspec.json.encode(parts, order="sorted"))
    digest.update(data)
    return digest.hexdigest()


def chunk_extracted(store: RagStore, extracted: Extracted) -> list[Chunk]:
    """Chunks of a file's text; a PDF is chunked page by page so each chunk has a page."""
    config = store.config

    def cut(text: str, base: int = 0, first_index: int = 0, page: int | None = None) -> list[Chunk]:
        return chunk_text(
            text,
            max_tokens=config.chunk_tokens,
            overlap=config.chunk_overlap,
            count_tokens=store.count_tokens,
            base=base,
            first_index=first_index,
            page=page,
        )

    if not extracted.pages:
        return cut(extracted.text)
    chunks: list[Chunk] = []
    for page, start, end in extracted.pages:
        chunks.extend(cut(extracted.text[start:end], start, len(chunks), page))
    return chunks


# -- JSON documents ------------------------------------------------------------------


def prepare_documents(store: RagStore, documents: list[DocumentIn]) -> list[PreparedSource]:
    if not documents:
        raise InvalidRequest("No documents given.", param="documents")
    seen: set[str] = set()
    prepared: list[PreparedSource] = []
    for index, doc in enumerate(documents):
        where = f"documents[{index}]"
        if not doc.text.strip():
            raise InvalidRequest(f"Document {index} has no text.", param=f"{where}.text")
        check_metadata(doc.metadata, f"{where}.metadata")
        source_id = doc.id if doc.id is not None else uuid.uuid4().hex
        if not source_id.strip():
            raise InvalidRequest("A document id must not be empty.", param=f"{where}.id")
        if source_id in seen:
            raise InvalidRequest(f"Document id '{source_id}' is repeated.", param=f"{where}.id")
        seen.add(source_id)
        chunks = chunk_text(
            doc.text,
            max_tokens=store.config.chunk_tokens,
            overlap=store.config.chunk_overlap,
            count_tokens=store.count_tokens,
        )
        prepared.append(
            PreparedSource(
                source_id=source_id,
                source=doc.source,
                origin="json",
                doc_type="text",
                content_hash=content_hash(store, doc.text.encode(), doc.metadata, doc.source),
                chunks=chunks,
                metadata=doc.metadata,
            )
        )
    return prepared


async def add_documents(
    store: RagStore, owner: str, name: str, documents: list[DocumentIn]
) -> DocumentsAdded:
    await store.writable_collection(owner, name)  # 404 (403 when shared) before any work
    prepared = await asyncio.to_thread(prepare_documents, store, documents)
    results = await store.write_sources(owner, name, prepared)
    return DocumentsAdded(collection=name, documents=results, chunks=sum(r.chunks for r in results))


# -- uploaded files ------------------------------------------------------------------


def prepare_file(
    store: RagStore,
    filename: str,
    data: bytes,
    metadata: Metadata,
    source_id: str | None,
    param: str,
) -> PreparedSource:
    limit = store.config.max_upload_mb * _MIB
    if len(data) > limit:
        raise PayloadTooLarge(
            f"File '{filename}' is larger than {store.config.max_upload_mb:g} MiB "
            "(rag.max_upload_mb).",
            param=param,
        )
    extracted = extract(filename, data, param)
    return PreparedSource(
        source_id=source_id or f"upload:{filename}",
        source=filename,
        origin="upload",
        doc_type=extracted.doc_type,
        language=extracted.language,
        content_hash=content_hash(store, data, metadata),
        chunks=chunk_extracted(store, extracted),
        metadata=metadata,
    )


async def add_files(
    store: RagStore,
    owner: str,
    name: str,
    files: list[tuple[str, bytes]],
    metadata: Metadata,
    source_id: str | None = None,
) -> DocumentsAdded:
    """Store uploaded ``(filename, bytes)``; one bad file fails the request unwritten."""
    if not files:
        raise InvalidRequest("No file was uploaded (send it in a 'file' form field).", param="file")
    if source_id is not None and len(files) > 1:
        raise InvalidRequest("'id' names one file; it was sent with several.", param="id")
    check_metadata(metadata, "metadata")
    names = [filename for filename, _ in files]
    if len(set(names)) != len(names):
        raise InvalidRequest("The same file name was uploaded twice.", param="file")
    await store.writable_collection(owner, name)

    def prepare() -> list[PreparedSource]:
        return [
            prepare_file(store, filename, data, metadata, source_id, "file")
            for filename, data in files
        ]

    prepared = await asyncio.to_thread(prepare)
    results = await store.write_sources(owner, name, prepared)
    return DocumentsAdded(collection=name, documents=results, chunks=sum(r.chunks for r in results))


# -- server-side directories ---------------------------------------------------------


def _read_and_prepare(
    store: RagStore, source: str, target: Path, stored_hash: str | None
) -> PreparedSource | str | None:
    """A prepared source, ``"unchanged"``, ``"skipped"`` (empty), or raises on failure."""
    size = target.stat().st_size
    if size > store.config.max_upload_mb * _MIB:
        raise PayloadTooLarge(f"larger than {store.config.max_upload_mb:g} MiB")
    data = target.read_bytes()
    digest = content_hash(store, data)
    if digest == stored_hash:
        return "unchanged"
    if not data.strip():
        return "skipped"
    extracted = extract(source, data, "path")
    return PreparedSource(
        source_id=f"file:{source}",
        source=source,
        origin="directory",
        doc_type=extracted.doc_type,
        language=extracted.language,
        content_hash=digest,
        chunks=chunk_extracted(store, extracted),
    )


async def index_directory(
    store: RagStore, owner: str, name: str, request: IndexRequest
) -> IndexReport:
    """Index the files below ``request.path`` incrementally (see ``IndexReport``)."""
    config = store.config
    root = await asyncio.to_thread(resolve_index_root, request.path, config.allowed_dirs)
    await store.writable_collection(owner, name)
    roots = allowed_roots(config.allowed_dirs)
    walked = await asyncio.to_thread(
        walk, root, request.include, request.exclude, roots, config.max_index_files
    )
    report = IndexReport(collection=name, path=str(root), skipped=walked.outside, failed=[])
    async with store.write_lock(name):
        stored = await store.stored_hashes(owner, name, {"origin": "directory"})
        seen: set[str] = set()
        pending: list[PreparedSource] = []
        for relative, target in walked.files:
            source = str(root / relative)
            source_id = f"file:{source}"
            seen.add(source_id)
            if doc_type_of(relative) is None:
                report.skipped += 1
                continue
            previous = stored.get(source_id)
            try:
                outcome = await asyncio.to_thread(
                    _read_and_prepare, store, source, target, previous[1] if previous else None
                )
            except (SwitchyardError, OSError) as exc:
                message = exc.message if isinstance(exc, SwitchyardError) else str(exc)
                report.failed.append(IndexFailure(path=relative, error=message))
                continue
            if outcome == "unchanged":
                report.unchanged += 1
            elif outcome == "skipped" or outcome is None:
                report.skipped += 1
            elif isinstance(outcome, PreparedSource):
                pending.append(outcome)
                if len(pending) >= _INDEX_BATCH_FILES:
                    await _flush(store, owner, name, pending, stored, report)
        await _flush(store, owner, name, pending, stored, report)
        gone = [
            source_id
            for source_id, (source, _) in stored.items()
            if source_id not in seen
            and source is not None
            and Path(source).is_relative_to(root)
            and not await asyncio.to_thread(Path(source).is_file)
        ]
        if gone:
            removed, _ = await store.delete_sources(owner, name, ids=gone, locked=True)
            report.removed = removed
    return report


async def _flush(
    store: RagStore,
    owner: str,
    name: str,
    pending: list[PreparedSource],
    stored: dict[str, tuple[str | None, str]],
    report: IndexReport,
) -> None:
    if not pending:
        return
    await store.write_sources(owner, name, pending, locked=True)
    for source in pending:
        if source.source_id in stored:
            report.updated += 1
        else:
            report.added += 1
        report.chunks += len(source.chunks)
    pending.clear()
