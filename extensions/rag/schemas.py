"""Wire types of the RAG service: what the management API reads and writes, and ``Hit``.

Metadata values are the scalars Chroma stores (string, integer, float, boolean). The
keys in ``RESERVED_METADATA`` are the service's own bookkeeping on every chunk; user
metadata may not use them (a request that does gets 400 naming the key).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from proxy.errors import InvalidRequest

MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]

#: Keys the service writes on every chunk (see ``store.py``); never user metadata.
RESERVED_METADATA = frozenset(
    {
        "source_id",
        "source",
        "origin",
        "doc_type",
        "language",
        "content_hash",
        "chunk",
        "char_start",
        "char_end",
        "page",
    }
)


class Position(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where a chunk sits in its source: its index and character offsets in the
    extracted text (for a PDF, the pages' texts joined by blank lines), and its page."""

    chunk: int
    start: int
    end: int
    page: int | None = None


class Hit(msgspec.Struct, kw_only=True):
    """One retrieved chunk. ``score`` is 1 - cosine distance: higher is better."""

    id: str
    text: str
    score: float
    collection: str
    source_id: str
    source: str | None
    position: Position
    metadata: Metadata = {}


class HitList(msgspec.Struct, kw_only=True):
    data: list[Hit]
    object: Literal["list"] = "list"


class CollectionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str | None = None
    metadata: Metadata = {}


class CollectionInfo(msgspec.Struct, kw_only=True):
    name: str
    chunks: int
    embedding_model: str | None = None
    description: str | None = None
    metadata: Metadata = {}
    owner: str | None = None
    """The caller's own id when the caller owns the collection; never another's."""
    shared: bool = False
    """Readable by everyone and changed by nobody through the API: listed in
    ``rag.shared_collections``, or created before collections had owners."""
    object: Literal["rag.collection"] = "rag.collection"


class CollectionList(msgspec.Struct, kw_only=True):
    data: list[CollectionInfo]
    object: Literal["list"] = "list"


class Deleted(msgspec.Struct, kw_only=True):
    id: str
    object: str
    deleted: bool = True


class DocumentIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A document sent as JSON. ``id`` names it for later replacement or deletion (one is
    generated when absent); ``source`` is what search results cite (a URL, a title)."""

    text: str
    metadata: Metadata = {}
    id: str | None = None
    source: str | None = None


class DocumentsAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    documents: list[DocumentIn]


class DocumentResult(msgspec.Struct, kw_only=True):
    """One stored document: ``status`` is ``added``, ``replaced`` or ``unchanged``."""

    id: str
    source: str | None
    chunks: int
    status: str


class DocumentsAdded(msgspec.Struct, kw_only=True):
    collection: str
    documents: list[DocumentResult]
    chunks: int
    object: Literal["rag.documents"] = "rag.documents"


class DocumentsDelete(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Delete documents by their ids and/or by source (path, filename or URL)."""

    ids: list[str] = []
    sources: list[str] = []


class DocumentsDeleted(msgspec.Struct, kw_only=True):
    collection: str
    documents: int
    chunks: int
    object: Literal["rag.documents.deleted"] = "rag.documents.deleted"


#: Hidden files and folders (``.git``, ``.venv``) and dependency caches.
DEFAULT_EXCLUDE = (".*", "node_modules", "__pycache__")


class IndexRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Index a server-side directory (absolute path below ``rag.allowed_dirs``).

    Patterns are gitignore patterns on the path relative to ``path``: ``*`` and ``?``
    stay within one folder, ``**`` spans folders, a pattern without ``/`` matches the
    file or folder name at any depth, a trailing ``/`` matches a folder and everything
    in it, and ``!`` re-includes what an earlier pattern of the same list matched. An
    excluded folder is not entered. Sending ``exclude`` replaces the default (hidden
    entries, node_modules, __pycache__). Files of unsupported types are skipped,
    whatever the patterns say. Each list holds at most ``rag.max_index_patterns``
    patterns of at most ``rag.max_index_pattern_chars`` characters.
    """

    path: str
    include: list[str] = msgspec.field(default_factory=lambda: ["*"])
    exclude: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCLUDE))


class IndexFailure(msgspec.Struct, kw_only=True):
    path: str
    error: str


class SkippedEntry(msgspec.Struct, kw_only=True):
    """An entry of the indexed tree that was passed over, and why (a symbolic link
    loop, a link leading outside, an unsupported type, an unreadable folder...)."""

    path: str
    reason: str


class IndexReport(msgspec.Struct, kw_only=True):
    """Counts of one directory-index run.

    ``added``: new files; ``updated``: files whose content hash changed (their old chunks
    replaced); ``unchanged``: skipped by hash; ``removed``: files indexed before that are
    gone from disk; ``skipped``: entries passed over (files of an unsupported type or
    empty, symlinks that lead outside the allowed directories or loop, symlinked
    folders, unreadable folders), each listed with its reason in ``skipped_entries``
    (the first ``MAX_REPORTED_SKIPS`` of them); ``failed``: files that could not be read
    or parsed (the run goes on without them).
    """

    collection: str
    path: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    chunks: int = 0
    failed: list[IndexFailure] = []
    skipped_entries: list[SkippedEntry] = []
    object: Literal["rag.index"] = "rag.index"

    def skip(self, entry: SkippedEntry) -> None:
        self.skipped += 1
        if len(self.skipped_entries) < MAX_REPORTED_SKIPS:
            self.skipped_entries.append(entry)


#: Skipped entries listed one by one in an ``IndexReport`` (all are counted).
MAX_REPORTED_SKIPS = 1000

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class IndexProgress(msgspec.Struct, kw_only=True):
    """How far a directory-index job is: files finished (indexed, unchanged, skipped or
    failed) of those matched, and chunks embedded and stored so far."""

    files_done: int = 0
    files_total: int = 0
    chunks: int = 0


class IndexJob(
    msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="object", tag="rag.index_job"
):
    """A directory index run in the background (``202`` from ``/index`` once more files
    match than ``rag.index_job_threshold_files``). ``result`` is the ``IndexReport`` once
    it ``succeeded``; ``error`` the error object once it ``failed``."""

    id: str
    collection: str
    status: JobStatus
    progress: IndexProgress
    created_at: int
    result: IndexReport | None = None
    error: dict[str, Any] | None = None


class SearchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: str
    k: int | None = None
    where: dict[str, Any] | None = None


class MultiSearchRequest(SearchRequest, kw_only=True, forbid_unknown_fields=True):
    collections: list[str]


def check_metadata(metadata: Metadata, param: str) -> None:
    """Reject reserved keys (400 naming the key)."""
    for key in metadata:
        if key in RESERVED_METADATA:
            raise InvalidRequest(
                f"Metadata key '{key}' is reserved by the RAG service "
                f"(reserved: {', '.join(sorted(RESERVED_METADATA))}).",
                param=f"{param}.{key}",
            )
