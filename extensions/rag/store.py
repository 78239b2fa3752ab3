"""``RagStore``: collections of embedded chunks in ChromaDB, and search over them.

Chroma's Python client is synchronous (the embedded one runs SQLite and an HNSW index
in-process), so every Chroma call runs in a worker thread through ``_call``, which also
maps Chroma's exceptions to the gateway's typed errors. Embeddings are always computed
by the ``embed`` callable (Switchyard's own embeddings route) and passed explicitly;
collections are created without an embedding function, so Chroma never downloads its
default model. The client is opened on first use: a gateway that never touches RAG
does not pay for importing Chroma, and a Chroma server that is down does not stop the
gateway from starting.

Every chunk carries the bookkeeping in ``RESERVED_METADATA``. A source (one document,
file or indexed path) is identified by ``source_id``; its chunks' ids embed the source's
content hash, so replacing a source writes the new chunks first and only then deletes
the old ones: a failure halfway never loses what was stored.

Every method that reads or writes a collection takes its caller's ``owner`` first
(see ``owners.py``): a collection the owner may not see is reported exactly like one
that does not exist, and a shared one cannot be changed. Search queries longer than the
embedding model's context are embedded by their beginning and end (see ``query.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from extensions.rag import writer
from extensions.rag.chroma import mapped_error, open_client
from extensions.rag.chunking import TokenCounter
from extensions.rag.jobs import IndexJobs
from extensions.rag.owners import (
    OWNER_KEY,
    Access,
    access_of,
    read_only,
    stored_owner,
    unknown_collection,
)
from extensions.rag.query import QueryWindow, combined_vector, query_pieces
from extensions.rag.records import (
    COLLECTION_NAME,
    PreparedSource,
    check_collection_name,
    hits_from_result,
)
from extensions.rag.schemas import (
    CollectionInfo,
    DocumentResult,
    Hit,
    Metadata,
)
from proxy.errors import (
    InvalidRequest,
    ModelNotFound,
    NotFound,
    ServiceUnavailable,
    UpstreamError,
)

if TYPE_CHECKING:
    from extensions.rag.config import RagConfig

log = logging.getLogger("switchyard.rag")

Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]
Reranker = Callable[[str, list[str]], Awaitable[list[float]]]
"""Relevance scores of texts for a query, in the texts' order (``rag.rerank_model``)."""
T = TypeVar("T")

_COLLECTION_KEYS = frozenset({"embedding_model", "description", "created_by", OWNER_KEY})
#: Collection metadata keys with this prefix are the store's own.
_RESERVED_PREFIXES = ("hnsw:", "switchyard:")
_WRITE_BATCH = 1000
MAX_K = 100


def _batches(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RagStore:
    """Collections of chunks in Chroma (embedded or a server), searched by embedding."""

    def __init__(
        self,
        config: RagConfig,
        data_dir: Path,
        embed: Embedder,
        count_tokens: TokenCounter | None = None,
        query_window: QueryWindow | None = None,
        jobs: IndexJobs | None = None,
        rerank: Reranker | None = None,
    ) -> None:
        self.config = config
        self.rerank_texts = rerank if config.rerank_model is not None else None
        self.query_window = query_window
        self.shared = frozenset(config.shared_collections)
        self.data_dir = Path(data_dir)
        self.embed_texts = embed
        self.count_tokens = count_tokens
        self._client: Any = None
        self._opening = asyncio.Lock()
        self._write_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.writers = writer.Writers()
        self._jobs = jobs
        self._dimensions: dict[str, int] = {}

    def busy(self) -> bool:
        """Whether a directory index of this process is still running."""
        return self._jobs is not None and self._jobs.running() > 0

    @property
    def jobs(self) -> IndexJobs:
        """The directory-index jobs (kept in the state store, which the extension lends)."""
        if self._jobs is None:
            raise ServiceUnavailable("Directory index jobs need the state store.")
        return self._jobs

    @property
    def location(self) -> str:
        return self.config.chroma_url or str(self.data_dir / "chroma")

    async def start(self) -> None:
        """Nothing to do eagerly: the client opens on first use (see the module doc)."""

    async def aclose(self) -> None:
        if self._jobs is not None:
            await self._jobs.aclose()
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.to_thread(client.close)
            except Exception:
                log.exception("closing the Chroma client failed")

    async def client(self) -> Any:
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    try:
                        self._client = await asyncio.to_thread(
                            open_client, self.config, self.data_dir
                        )
                    except Exception as exc:
                        raise ServiceUnavailable(
                            f"The vector store at {self.location} cannot be opened: {exc}"
                        ) from exc
        return self._client

    async def _call(self, fn: Callable[..., T], *args: Any, collection: str | None = None) -> T:
        """Run ``fn(client, *args)`` in a worker thread, mapping its errors."""
        client = await self.client()
        try:
            return await asyncio.to_thread(fn, client, *args)
        except Exception as exc:
            raise mapped_error(exc, collection, self.location) from exc

    @staticmethod
    def _collection(client: Any, name: str) -> Any:
        return client.get_collection(name, embedding_function=None)

    def _open(self, client: Any, owner: str, name: str, need: Access = Access.READ) -> Any:
        """Collection ``name`` when ``owner`` has ``need`` access to it: 404 when it is
        unknown or another owner's, 403 when it is shared and ``need`` is write."""
        col = self._collection(client, name)
        access = access_of(name, col.metadata, owner, self.shared)
        if access is Access.NONE:
            raise unknown_collection(name)
        if need is Access.WRITE and access is not Access.WRITE:
            raise read_only(name)
        return col

    def _check_dimension(self, col: Any, size: int) -> None:
        """Refuse vectors of another size than those stored (another embedding model).

        The stored size is read once per collection id (a re-created collection has a
        new id) from one stored vector; an empty collection accepts any size.
        """
        stored = self._dimensions.get(str(col.id))
        if stored is None:
            sample = col.get(limit=1, include=["embeddings"])["embeddings"]
            if sample is None or len(sample) == 0:
                return
            stored = self._dimensions[str(col.id)] = len(sample[0])
        if stored != size:
            raise InvalidRequest(
                f"Collection '{col.name}' holds {stored}-dimensional embeddings but "
                f"the embedding model gives {size}: it was filled with another embedding "
                "model. Re-create and re-index it, or set rag.embedding_model back.",
                param="collection",
            )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` in batches through the configured embedding model."""
        out: list[list[float]] = []
        for batch in _batches(texts, self.config.embed_batch_size):
            try:
                vectors = await self.embed_texts(batch)
            except ModelNotFound as exc:
                raise ServiceUnavailable(
                    f"The RAG embedding model '{self.config.embedding_model}' is not "
                    f"available: {exc.message}"
                ) from None
            if len(vectors) != len(batch) or any(not isinstance(v, list) for v in vectors):
                raise UpstreamError(
                    f"The embedding model returned {len(vectors)} vectors for {len(batch)} texts."
                )
            out.extend(vectors)
        return out

    # -- collections -------------------------------------------------------------------

    async def has_collection(self, owner: str, name: str) -> bool:
        """Whether ``owner`` can read a collection called ``name``."""
        if not COLLECTION_NAME.match(name):
            return False
        try:
            await self._call(self._open, owner, name, collection=name)
        except NotFound:
            return False
        return True

    def _info(self, collection: Any, owner: str) -> CollectionInfo:
        meta = dict(collection.metadata or {})
        description = meta.pop("description", None)
        model = meta.pop("embedding_model", None)
        meta.pop("created_by", None)
        recorded = stored_owner(meta)
        access = access_of(collection.name, meta, owner, self.shared)
        return CollectionInfo(
            name=collection.name,
            chunks=collection.count(),
            embedding_model=model if isinstance(model, str) else None,
            description=description if isinstance(description, str) else None,
            metadata={k: v for k, v in meta.items() if not k.startswith(_RESERVED_PREFIXES)},
            owner=recorded if recorded == owner else None,
            shared=access is Access.READ,
        )

    async def create_collection(
        self,
        owner: str,
        name: str,
        description: str | None = None,
        metadata: Metadata | None = None,
    ) -> CollectionInfo:
        check_collection_name(name)
        if name in self.shared:
            raise read_only(name)
        for key in metadata or {}:
            if key in _COLLECTION_KEYS or key.startswith(_RESERVED_PREFIXES):
                raise InvalidRequest(f"Metadata key '{key}' is reserved.", param=f"metadata.{key}")
        meta: dict[str, Any] = {
            **(metadata or {}),
            "embedding_model": self.config.embedding_model,
            "created_by": "switchyard",
            OWNER_KEY: owner,
        }
        if description:
            meta["description"] = description

        def create(client: Any) -> CollectionInfo:
            existing = {c.name for c in client.list_collections()}
            if name in existing:
                raise InvalidRequest(
                    f"RAG collection '{name}' already exists.", status=409, param="name"
                )
            created = client.create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=meta,
            )
            return self._info(created, owner)

        async with self._write_locks[name]:
            return await self._call(create)

    async def list_collections(self, owner: str) -> list[CollectionInfo]:
        """The collections ``owner`` can read: its own and the shared ones."""

        def listing(client: Any) -> list[CollectionInfo]:
            visible = (
                self._info(c, owner)
                for c in client.list_collections()
                if access_of(c.name, c.metadata, owner, self.shared) is not Access.NONE
            )
            return sorted(visible, key=lambda i: i.name)

        return await self._call(listing)

    async def collection_info(self, owner: str, name: str) -> CollectionInfo:
        check_collection_name(name, "collection")
        return await self._call(
            lambda client: self._info(self._open(client, owner, name), owner), collection=name
        )

    async def writable_collection(self, owner: str, name: str) -> CollectionInfo:
        """``collection_info``, or 403 when ``owner`` may read but not change it."""
        check_collection_name(name, "collection")
        return await self._call(
            lambda client: self._info(self._open(client, owner, name, Access.WRITE), owner),
            collection=name,
        )

    async def delete_collection(self, owner: str, name: str) -> None:
        check_collection_name(name, "collection")

        def delete(client: Any) -> None:
            self._open(client, owner, name, Access.WRITE)
            client.delete_collection(name)

        async with self._write_locks[name]:
            await self._call(delete, collection=name)

    # -- writing -----------------------------------------------------------------------

    async def stored_hashes(
        self, owner: str, name: str, where: dict[str, Any]
    ) -> dict[str, tuple[str | None, str]]:
        """``source_id -> (source, content_hash)`` of the sources matching ``where``, in a
        collection ``owner`` may write (it is read to decide what to write)."""

        def read(client: Any) -> dict[str, tuple[str | None, str]]:
            col = self._open(client, owner, name, Access.WRITE)
            out: dict[str, tuple[str | None, str]] = {}
            offset = 0
            while True:
                page = col.get(
                    where={"$and": [where, {"chunk": 0}]},
                    include=["metadatas"],
                    limit=_WRITE_BATCH,
                    offset=offset,
                )
                for meta in page["metadatas"] or []:
                    source = meta.get("source")
                    out[str(meta["source_id"])] = (
                        source if isinstance(source, str) else None,
                        str(meta["content_hash"]),
                    )
                if len(page["ids"]) < _WRITE_BATCH:
                    return out
                offset += _WRITE_BATCH

        return await self._call(read, collection=name)

    async def write_sources(
        self,
        owner: str,
        name: str,
        sources: list[PreparedSource],
        *,
        on_stored: Callable[[int], None] | None = None,
    ) -> list[DocumentResult]:
        """Store ``sources``, replacing earlier versions; unchanged ones are skipped.

        Embedded and stored one batch at a time, never holding the collection locked
        for longer than one batch; a failure or cancellation leaves the collection as it
        was (see ``extensions.rag.writer``). ``on_stored(n)``: ``n`` more chunks stored.
        """
        return await writer.write_sources(self, owner, name, sources, on_stored)

    async def store_batch(
        self,
        owner: str,
        name: str,
        ids: list[str],
        vectors: list[list[float]],
        documents: list[str],
        metadatas: list[Metadata],
    ) -> None:
        """Upsert one batch of embedded chunks, holding the write lock for it alone."""

        def upsert(client: Any) -> None:
            col = self._open(client, owner, name, Access.WRITE)
            if vectors:
                self._check_dimension(col, len(vectors[0]))
            col.upsert(ids=ids, embeddings=vectors, documents=documents, metadatas=metadatas)

        async with self._write_locks[name]:
            await self._call(upsert, collection=name)

    async def delete_chunks(self, owner: str, name: str, ids: list[str]) -> None:
        """Delete chunks by id (absent ones are ignored), locking one batch at a time."""

        def delete(client: Any, batch: list[str]) -> None:
            self._open(client, owner, name, Access.WRITE).delete(ids=batch)

        for batch in _batches(ids, _WRITE_BATCH):
            async with self._write_locks[name]:
                await self._call(delete, batch, collection=name)

    async def delete_old_versions(
        self, owner: str, name: str, sources: list[PreparedSource]
    ) -> None:
        """Delete every chunk of ``sources`` whose content hash is not the current one."""

        def delete(client: Any) -> None:
            col = self._open(client, owner, name, Access.WRITE)
            for source in sources:
                col.delete(
                    where={
                        "$and": [
                            {"source_id": source.source_id},
                            {"content_hash": {"$ne": source.content_hash}},
                        ]
                    }
                )

        async with self._write_locks[name]:
            await self._call(delete, collection=name)

    async def delete_sources(
        self,
        owner: str,
        name: str,
        *,
        ids: Sequence[str] = (),
        sources: Sequence[str] = (),
        locked: bool = False,
    ) -> tuple[int, int]:
        """Delete by source id and/or source; returns (sources, chunks) deleted."""
        clauses: list[dict[str, Any]] = []
        if ids:
            clauses.append({"source_id": {"$in": list(ids)}})
        if sources:
            clauses.append({"source": {"$in": list(sources)}})
        if not clauses:
            return 0, 0
        where = clauses[0] if len(clauses) == 1 else {"$or": clauses}

        def delete(client: Any) -> tuple[int, int]:
            col = self._open(client, owner, name, Access.WRITE)
            found = col.get(where=where, include=["metadatas"])
            chunk_ids = found["ids"]
            if chunk_ids:
                for batch in _batches(chunk_ids, _WRITE_BATCH):
                    col.delete(ids=batch)
            documents = {m["source_id"] for m in found["metadatas"] or []}
            return len(documents), len(chunk_ids)

        if locked:
            return await self._call(delete, collection=name)
        async with self._write_locks[name]:
            return await self._call(delete, collection=name)

    async def query_vector(self, query: str) -> list[float]:
        """The embedding of ``query``, by pieces that fit the embedding model's
        context when it is longer (see ``query.py``): never refused for its length."""
        pieces = await query_pieces(query, self.query_window)
        vectors = await self.embed([text for text, _ in pieces])
        return combined_vector(vectors, [tokens for _, tokens in pieces])

    # -- search ------------------------------------------------------------------------

    async def search(
        self, owner: str, collections: list[str], query: str, k: int, where: dict | None = None
    ) -> list[Hit]:
        """The ``k`` chunks nearest to ``query`` across ``collections``, best first.

        Unknown collection (or one ``owner`` cannot read): ``NotFound`` naming it. A
        query of any length is accepted (see ``query_vector``). ``where`` is a Chroma
        metadata filter (``{"lang": "en"}``, ``{"$and": [...]}``), applied in every
        collection.
        """
        if not query.strip():
            raise InvalidRequest("The search query is empty.", param="query")
        if not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k must be between 1 and {MAX_K}.", param="k")
        if where is not None and not isinstance(where, dict):
            raise InvalidRequest("where must be an object.", param="where")
        names = list(dict.fromkeys(collections))
        for name in names:
            check_collection_name(name, "collections")
        if not names:
            return []

        found = [await self._call(self._open, owner, name, collection=name) for name in names]
        vector = await self.query_vector(query)
        wanted = k
        if self.rerank_texts is not None:
            k = max(k, self.config.rerank_candidates)

        def query_all(client: Any) -> list[Hit]:
            hits: list[Hit] = []
            for name, col in zip(names, found, strict=True):
                self._check_dimension(col, len(vector))
                result = col.query(
                    query_embeddings=[vector],
                    n_results=k,
                    where=where or None,
                    include=["documents", "metadatas", "distances"],
                )
                hits.extend(hits_from_result(name, result))
            hits.sort(key=lambda h: h.score, reverse=True)
            return hits[:k]

        try:
            hits = await self._call(query_all)
        except InvalidRequest as exc:
            if exc.param is None and where:
                exc.param = "where"
            raise
        if self.rerank_texts is not None:
            hits = await self.reranked(query, hits)
        return hits[:wanted]

    async def reranked(self, query: str, hits: list[Hit]) -> list[Hit]:
        """``hits`` reordered by ``rag.rerank_model``, best first (ties keep the
        embedding order), each scored with the reranker's relevance score."""
        if not hits:
            return hits
        assert self.rerank_texts is not None
        try:
            scores = await self.rerank_texts(query, [hit.text or " " for hit in hits])
        except ModelNotFound as exc:
            raise ServiceUnavailable(
                f"The RAG rerank model '{self.config.rerank_model}' is not available: {exc.message}"
            ) from None
        order = sorted(range(len(hits)), key=lambda i: -scores[i])
        return [msgspec.structs.replace(hits[i], score=round(scores[i], 6)) for i in order]
