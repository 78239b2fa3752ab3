"""The ``rag:`` config section: the vector store, chunking and the request-time budget."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import msgspec

if TYPE_CHECKING:
    from proxy.replicas import ReplicaPlan


class RagConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Retrieval over ChromaDB: the vector store, chunking and the request-time budget."""

    chroma_url: str | None = None
    """A Chroma server (``http://host:8000``, ``https://...``) for shared deployments.
    Unset: an embedded store under ``<server.data_dir>/chroma``."""
    embedding_model: str = "smollm2-135m-embed"
    """Configured model (any adapter with embeddings) that embeds chunks and queries.
    Changing it needs a re-index: vectors of different models do not compare."""
    allowed_dirs: list[str] = []
    """Server-side directories that may be indexed through the API (symlinks and ``..``
    are resolved first). Empty: directory indexing is refused."""
    chunk_tokens: Annotated[int, msgspec.Meta(ge=16)] = 256
    """Largest chunk, in tokens of the embedding model (approximated when unknown)."""
    chunk_overlap: Annotated[int, msgspec.Meta(ge=0)] = 32
    """Tokens repeated at the start of the next chunk, so a fact cut by a chunk boundary
    still appears whole in one of them. Must be less than half of ``chunk_tokens``."""
    context_tokens: Annotated[int, msgspec.Meta(gt=0)] = 1024
    """Budget for the retrieved context inserted into a chat request."""
    top_k: Annotated[int, msgspec.Meta(gt=0)] = 4
    """Chunks retrieved per request (before the token budget is applied)."""
    rerank_model: str | None = None
    """A configured model that reorders the chunks nearest to a query by relevance
    before the best ones are kept: a reranker (``/v1/rerank``), or any embedding model,
    which reranks by cosine similarity (useful when it is a better model than
    ``embedding_model``). Applies to chat retrieval, ``rag_search`` and the search API;
    a hit's ``score`` is then the reranker's relevance score. Unset: embedding order."""
    rerank_candidates: Annotated[int, msgspec.Meta(gt=0, le=100)] = 20
    """With ``rerank_model``: how many nearest chunks are taken from Chroma and
    reranked before the best ``top_k`` (or a search's ``k``, when larger) are kept.
    Must be at least ``top_k``."""
    max_upload_mb: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Largest file accepted by upload or directory indexing, in MiB (larger gets 413)."""
    max_index_files: Annotated[int, msgspec.Meta(gt=0)] = 10_000
    """Most files one directory-index request may match; more is refused before any
    work, so a mistyped path cannot start indexing a whole disk."""
    embed_batch_size: Annotated[int, msgspec.Meta(gt=0)] = 32
    """Chunks sent to the embedding model per request, and stored per write: a
    collection's write lock is held for one such batch at a time."""
    max_chunks_per_request: Annotated[int, msgspec.Meta(gt=0)] = 10_000
    """Most chunks one upload, documents or index request may embed; more is refused
    (413) after chunking and before any embedding."""
    max_index_patterns: Annotated[int, msgspec.Meta(gt=0)] = 64
    """Most ``include`` (and most ``exclude``) patterns one directory-index request may
    give; more is a 400."""
    max_index_pattern_chars: Annotated[int, msgspec.Meta(gt=0)] = 256
    """Longest ``include``/``exclude`` pattern, in characters; longer is a 400."""
    index_job_threshold_files: Annotated[int, msgspec.Meta(ge=0)] = 200
    """A directory index matching more files than this runs as a background job: the
    request answers 202 with the job, polled at ``.../collections/{name}/jobs/{id}``."""
    index_job_heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """How often the replica running an index job records that it is alive (and its
    progress, at most once a second), in the shared state store."""
    index_job_stale_after_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    """An index job whose replica has not recorded itself alive for this long is
    reported ``failed`` (``runner_lost``) by any replica: its replica stopped. Must be
    more than ``index_job_heartbeat_s``."""
    shared_collections: list[str] = []
    """Collections every API key may read (list, get, search, chat, ``rag_search``) and
    none may change through the API (403). Other collections are visible only to the
    key that created them; collections created before owners existed are shared too."""

    def __post_init__(self) -> None:
        if self.chunk_overlap * 2 > self.chunk_tokens:
            raise ValueError("chunk_overlap must be at most half of chunk_tokens")
        if self.rerank_model is not None and self.rerank_candidates < self.top_k:
            raise ValueError("rerank_candidates must be at least top_k")
        if self.index_job_stale_after_s <= self.index_job_heartbeat_s:
            raise ValueError("index_job_stale_after_s must be more than index_job_heartbeat_s")
        if self.chroma_url is not None and not re.match(r"^https?://[^/]+", self.chroma_url):
            raise ValueError("chroma_url must be an http:// or https:// URL")

    def replica_problems(self, plan: ReplicaPlan) -> list[str]:
        """Embedded Chroma is a directory one process may open: several processes on it
        fail (``Error creating hnsw segment reader``), and replicas on other hosts each
        see only their own collections."""
        if self.chroma_url is not None or not plan.replicated:
            return []
        return [
            f"{plan.reason}: RAG uses the embedded Chroma store (no `rag.chroma_url`), "
            "which one process alone may open and other replicas cannot see. Run a Chroma "
            "server (`chroma run --path /data/chroma --port 8000`) and set "
            "`rag: {chroma_url: http://chroma:8000}`."
        ]
