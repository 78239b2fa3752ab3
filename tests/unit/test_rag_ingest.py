"""Ingestion that bad input cannot pin: the chunk bound, batch-sized write locking,
cancellation that leaves the collection as it was (directory-index jobs: ``test_rag_jobs``).

The store is the real embedded Chroma; embeddings come from ``bow_embed`` behind a
``GatedEmbedder`` that can hold the embedding of marked texts, so a test can look at the
collection while a write is in the middle of embedding.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extensions.rag import ingest
from extensions.rag.config import RagConfig
from extensions.rag.schemas import DocumentIn, IndexRequest
from extensions.rag.store import RagStore
from proxy.errors import InvalidRequest, PayloadTooLarge
from tests.support.rag_fakes import bow_embed

MARK = "heldword"
#: Thirty short paragraphs: thirty chunks at chunk_tokens=16.
LONG = "\n\n".join(f"Paragraph {i} about {MARK} lighthouses and harbour {i}." for i in range(30))

OWNER = "key-a"
"""The caller every store call is made for (collections are owned)."""


class GatedEmbedder:
    """``bow_embed``; once ``pass_marked`` is set, a batch with a marked text waits for
    ``release`` after the first ``pass_marked`` such batches (``holding`` is set then)."""

    def __init__(self, pass_marked: int | None = None) -> None:
        self.pass_marked = pass_marked
        self.marked_batches = 0
        self.texts = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        if any(MARK in t for t in texts):
            self.marked_batches += 1
            if self.pass_marked is not None and self.marked_batches > self.pass_marked:
                self.holding.set()
                await self.release.wait()
        self.texts += len(texts)
        return await bow_embed(texts)


def make_store(tmp_path: Path, embed: GatedEmbedder, **config: object) -> RagStore:
    settings = RagConfig(
        chunk_tokens=16,
        chunk_overlap=0,
        embed_batch_size=4,
        allowed_dirs=[str(tmp_path / "allowed")],
        **config,  # type: ignore[arg-type]
    )
    return RagStore(settings, tmp_path / "data", embed)


@pytest.fixture
async def gate() -> GatedEmbedder:
    return GatedEmbedder()


@pytest.fixture
async def store(tmp_path: Path, gate: GatedEmbedder) -> AsyncIterator[RagStore]:
    store = make_store(tmp_path, gate, max_chunks_per_request=40)
    await store.create_collection(OWNER, "notes")
    yield store
    gate.release.set()
    await store.aclose()


async def chunks(store: RagStore) -> int:
    return (await store.collection_info(OWNER, "notes")).chunks


# -- rag.max_chunks_per_request -----------------------------------------------------------


async def test_documents_past_the_chunk_bound_are_413_before_any_embedding(
    store: RagStore, gate: GatedEmbedder
) -> None:
    docs = [DocumentIn(id="one", text=LONG), DocumentIn(id="two", text=LONG)]  # 60 chunks
    with pytest.raises(PayloadTooLarge) as caught:
        await ingest.add_documents(store, OWNER, "notes", docs)
    assert caught.value.http_status == 413 and caught.value.param == "documents"
    assert "more than 40 chunks" in caught.value.message
    assert "rag.max_chunks_per_request" in caught.value.message
    assert gate.texts == 0 and await chunks(store) == 0
    added = await ingest.add_documents(store, OWNER, "notes", docs[:1])  # 30 chunks fit
    assert added.chunks == 30 and await chunks(store) == 30


async def test_an_upload_past_the_chunk_bound_is_413_naming_the_file(
    store: RagStore, gate: GatedEmbedder
) -> None:
    data = (LONG + "\n\n" + LONG).encode()
    with pytest.raises(PayloadTooLarge) as caught:
        await ingest.add_files(store, OWNER, "notes", [("big.md", data)], {})
    assert caught.value.param == "file" and "File 'big.md'" in caught.value.message
    assert gate.texts == 0 and await chunks(store) == 0


async def test_a_directory_past_the_chunk_bound_is_413_before_any_embedding(
    store: RagStore, gate: GatedEmbedder, tmp_path: Path
) -> None:
    docs = tmp_path / "allowed" / "docs"
    docs.mkdir(parents=True)
    for name in ("a.md", "b.md"):
        (docs / name).write_text(LONG)
    with pytest.raises(PayloadTooLarge) as caught:
        await ingest.index_directory(store, OWNER, "notes", IndexRequest(path=str(docs)))
    assert caught.value.param == "path" and "rag.max_chunks_per_request" in caught.value.message
    assert gate.texts == 0 and await chunks(store) == 0


# -- the write lock is held for one batch, and a cancelled write leaves nothing --------


async def test_another_write_goes_through_while_a_long_one_is_embedding(
    store: RagStore, gate: GatedEmbedder
) -> None:
    gate.pass_marked = 2  # two batches of the long document are stored, then it waits
    long_write = asyncio.create_task(
        ingest.add_documents(store, OWNER, "notes", [DocumentIn(id="long", text=LONG)])
    )
    await gate.holding.wait()
    assert await chunks(store) == 8  # stored batch by batch, not all at the end
    other = await asyncio.wait_for(
        ingest.add_documents(
            store, OWNER, "notes", [DocumentIn(id="short", text="Gulls on cliffs.")]
        ),
        timeout=60,  # a guard against a hang: the old store held the lock here
    )
    assert other.chunks == 1 and await chunks(store) == 9
    gate.release.set()
    result = await long_write
    assert result.documents[0].status == "added" and await chunks(store) == 31


async def test_a_cancelled_write_removes_its_partial_chunks_and_keeps_the_old_version(
    store: RagStore, gate: GatedEmbedder
) -> None:
    old = DocumentIn(id="tides", text="Tides follow the moon.")
    await ingest.add_documents(store, OWNER, "notes", [old])
    gate.pass_marked = 3
    write = asyncio.create_task(
        ingest.add_documents(store, OWNER, "notes", [DocumentIn(id="tides", text=LONG)])
    )
    await gate.holding.wait()
    assert await chunks(store) == 1 + 12  # the old version and three new batches
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    await asyncio.gather(*store.writers.cleanups)
    assert await chunks(store) == 1
    [hit] = await store.search(OWNER, ["notes"], "moon", k=5)
    assert hit.text == old.text
    again = await ingest.add_documents(
        store, OWNER, "notes", [DocumentIn(id="x", text="Boats float.")]
    )
    assert again.chunks == 1  # nothing is left locked


async def test_a_failed_request_leaves_every_source_as_it_was(tmp_path: Path) -> None:
    calls = {"n": 0}

    async def failing_late(texts: list[str]) -> list[list[float]]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise InvalidRequest("the embedding model refused a batch")
        return await bow_embed(texts)

    store = RagStore(RagConfig(chunk_tokens=16, chunk_overlap=0, embed_batch_size=4),
                     tmp_path / "data", failing_late)  # fmt: skip
    await store.create_collection(OWNER, "notes")
    docs = [DocumentIn(id="a", text=LONG[:300]), DocumentIn(id="b", text=LONG)]
    with pytest.raises(InvalidRequest):
        await ingest.add_documents(store, OWNER, "notes", docs)  # "a" was stored whole before
    assert await chunks(store) == 0
    await store.aclose()
