"""Turning documents, uploaded files and server-side directories into stored chunks.

Every source gets a content hash over its bytes, its metadata and the settings that
shape its chunks (chunk size, overlap, embedding model): storing a source whose hash is
already stored is a no-op, and changing those settings makes the next re-index redo
everything, as it must.

A request is validated, parsed and chunked completely before anything is embedded, so
a bad file or document in it leaves the collection untouched, and a request that would
make more than ``rag.max_chunks_per_request`` chunks is refused (413) before any
embedding. Directory indexing is the exception by design: one unreadable file is
reported and the rest are indexed. Parsing and chunking run in worker threads under a
``WorkBudget``, so a request whose task is cancelled (its client left, its job was
cancelled) stops them too.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec

from extensions.rag.budget import TooManyChunks, WorkBudget
from extensions.rag.chunking import Chunk, chunk_text
from extensions.rag.loaders import Extracted, doc_type_of, extract
from extensions.rag.paths import allowed_roots, compile_patterns, resolve_index_root, walk
from extensions.rag.records import PreparedSource
from extensions.rag.schemas import (
    DocumentIn,
    DocumentsAdded,
    IndexFailure,
    IndexProgress,
    IndexReport,
    IndexRequest,
    Metadata,
    SkippedEntry,
    check_metadata,
)
from proxy.errors import InvalidRequest, PayloadTooLarge, SwitchyardError

if TYPE_CHECKING:
    from extensions.rag.store import RagStore

T = TypeVar("T")
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


def work_budget(store: RagStore) -> WorkBudget:
    return WorkBudget(store.config.max_chunks_per_request)


def too_many_chunks(exc: TooManyChunks, what: str, param: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} would make more than {exc.limit} chunks to embed "
        "(rag.max_chunks_per_request); send less at once.",
        param=param,
    )


async def _prepared(
    budget: WorkBudget, what: str, param: str, fn: Callable[..., T], *args: object
) -> T:
    """``fn(*args)`` in a worker thread under ``budget``; too many chunks is a 413."""
    try:
        return await budget.run(fn, *args)
    except TooManyChunks as exc:
        raise too_many_chunks(exc, what, param) from None


def chunk_extracted(store: RagStore, extracted: Extracted, budget: WorkBudget) -> list[Chunk]:
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
            budget=budget,
        )

    if not extracted.pages:
        return cut(extracted.text)
    chunks: list[Chunk] = []
    for page, start, end in extracted.pages:
        chunks.extend(cut(extracted.text[start:end], start, len(chunks), page))
    return chunks


# -- JSON documents ------------------------------------------------------------------


def prepare_documents(
    store: RagStore, documents: list[DocumentIn], budget: WorkBudget
) -> list[PreparedSource]:
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
            budget=budget,
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
    budget = work_budget(store)
    prepared = await _prepared(
        budget, "These documents", "documents", prepare_documents, store, documents, budget
    )
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
    budget: WorkBudget,
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
        chunks=chunk_extracted(store, extracted, budget),
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
    budget = work_budget(store)

    def prepare() -> list[PreparedSource]:
        return [
            prepare_file(store, filename, data, metadata, source_id, "file", budget)
            for filename, data in files
        ]

    what = f"File '{names[0]}'" if len(names) == 1 else "These files"
    prepared = await _prepared(budget, what, "file", prepare)
    results = await store.write_sources(owner, name, prepared)
    return DocumentsAdded(collection=name, documents=results, chunks=sum(r.chunks for r in results))


# -- server-side directories ---------------------------------------------------------


def _read_and_prepare(
    store: RagStore, source: str, target: Path, stored_hash: str | None, budget: WorkBudget
) -> PreparedSource | str:
    """A prepared source, ``"unchanged"``, ``"empty file"``, or raises on failure."""
    budget.check()
    size = target.stat().st_size
    if size > store.config.max_upload_mb * _MIB:
        raise PayloadTooLarge(f"larger than {store.config.max_upload_mb:g} MiB")
    data = target.read_bytes()
    digest = content_hash(store, data)
    if digest == stored_hash:
        return "unchanged"
    if not data.strip():
        return "empty file"
    extracted = extract(source, data, "path")
    return PreparedSource(
        source_id=f"file:{source}",
        source=source,
        origin="directory",
        doc_type=extracted.doc_type,
        language=extracted.language,
        content_hash=digest,
        chunks=chunk_extracted(store, extracted, budget),
    )


@dataclass
class IndexPlan:
    """A checked index request: the resolved root, the files that matched, and the
    entries of the tree that were passed over (with the reason)."""

    root: Path
    files: list[tuple[str, Path]]
    skipped: list[SkippedEntry]


async def plan_index(store: RagStore, owner: str, name: str, request: IndexRequest) -> IndexPlan:
    """Check ``request`` (path, patterns, collection) and walk the tree: every bad
    input is a 4xx here, before anything is read or written."""
    config = store.config
    limits = {"max_count": config.max_index_patterns, "max_chars": config.max_index_pattern_chars}
    include = compile_patterns(request.include, "include", **limits)
    exclude = compile_patterns(request.exclude, "exclude", **limits)
    root = await asyncio.to_thread(resolve_index_root, request.path, config.allowed_dirs)
    await store.writable_collection(owner, name)
    roots = allowed_roots(config.allowed_dirs)
    budget = WorkBudget()
    walked = await budget.run(walk, root, include, exclude, roots, config.max_index_files, budget)
    return IndexPlan(root=root, files=walked.files, skipped=walked.skipped)


async def run_index(
    store: RagStore, owner: str, name: str, plan: IndexPlan, progress: IndexProgress | None = None
) -> IndexReport:
    """Index the planned files incrementally (see ``IndexReport``), updating ``progress``.

    Every changed file is read and chunked first, within ``rag.max_chunks_per_request``
    (413 otherwise, before anything is embedded); then they are embedded and stored a
    few files at a time, without holding the collection locked between batches.
    """
    progress = progress if progress is not None else IndexProgress()
    progress.files_total = len(plan.files)
    report = IndexReport(collection=name, path=str(plan.root), failed=[])
    for entry in plan.skipped:
        report.skip(entry)
    budget = work_budget(store)
    stored = await store.stored_hashes(owner, name, {"origin": "directory"})
    seen: set[str] = set()
    pending: list[PreparedSource] = []
    for relative, target in plan.files:
        source = str(plan.root / relative)
        source_id = f"file:{source}"
        seen.add(source_id)
        outcome: PreparedSource | str
        if doc_type_of(relative) is None:
            outcome = "unsupported file type"
        else:
            previous = stored.get(source_id)
            try:
                outcome = await budget.run(
                    _read_and_prepare,
                    store,
                    source,
                    target,
                    previous[1] if previous else None,
                    budget,
                )
            except TooManyChunks as exc:
                raise too_many_chunks(exc, f"Indexing '{plan.root}'", "path") from None
            except (SwitchyardError, OSError) as exc:
                message = exc.message if isinstance(exc, SwitchyardError) else str(exc)
                report.failed.append(IndexFailure(path=relative, error=message))
                outcome = "failed"
        if isinstance(outcome, PreparedSource):
            pending.append(outcome)
            continue
        if outcome == "unchanged":
            report.unchanged += 1
        elif outcome != "failed":
            report.skip(SkippedEntry(path=relative, reason=outcome))
        progress.files_done += 1
    for start in range(0, len(pending), _INDEX_BATCH_FILES):
        await _flush(
            store, owner, name, pending[start : start + _INDEX_BATCH_FILES], report, progress
        )
    gone = await budget.run(_gone, stored, seen, plan.root)
    if gone:
        removed, _ = await store.delete_sources(owner, name, ids=gone)
        report.removed = removed
    return report


async def index_directory(
    store: RagStore, owner: str, name: str, request: IndexRequest
) -> IndexReport:
    """Plan and run an index in one go (the request waits for the report)."""
    return await run_index(store, owner, name, await plan_index(store, owner, name, request))


def _gone(stored: dict[str, tuple[str | None, str]], seen: set[str], root: Path) -> list[str]:
    """Sources indexed from below ``root`` before whose files no longer exist."""
    return [
        source_id
        for source_id, (source, _) in stored.items()
        if source_id not in seen
        and source is not None
        and Path(source).is_relative_to(root)
        and not Path(source).is_file()
    ]


async def _flush(
    store: RagStore,
    owner: str,
    name: str,
    batch: list[PreparedSource],
    report: IndexReport,
    progress: IndexProgress,
) -> None:
    def stored(chunks: int) -> None:
        progress.chunks += chunks

    results = await store.write_sources(owner, name, batch, on_stored=stored)
    for result in results:
        if result.status == "unchanged":  # stored meanwhile by another run
            report.unchanged += 1
            continue
        if result.status == "replaced":
            report.updated += 1
        else:
            report.added += 1
        report.chunks += result.chunks
    progress.files_done += len(batch)
