"""``RagStore`` on the embedded Chroma client: collections, writes, search, indexing.

Embeddings come from ``bow_embed`` (a hashed bag of words written for these tests), so
relevance is deterministic. The real-model path (``smollm2-135m-embed`` through the
gateway's own embeddings route) is tested end to end with the extension tests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from extensions.rag import ingest
from extensions.rag.config import RagConfig
from extensions.rag.schemas import DocumentIn, IndexRequest
from extensions.rag.store import RagStore
from proxy.errors import InvalidRequest, NotFound, PermissionDenied, UpstreamError
from tests.support.rag_fakes import bow_embed, make_pdf

OWNER = "key-a"

CORPUS = [
    DocumentIn(
        id="tides",
        text="Tides are caused by the gravity of the moon pulling on the oceans.",
        metadata={"topic": "sea", "year": 2020},
        source="https://example.org/tides",
    ),
    DocumentIn(
        id="bread",
        text="Sourdough bread rises because wild yeast ferments the flour and water.",
        metadata={"topic": "kitchen", "year": 2021},
    ),
    DocumentIn(
        id="volcano",
        text="A volcano erupts when magma pressure breaks through the crust of the earth.",
        metadata={"topic": "geology", "year": 2022},
    ),
]


def make_store(tmp_path: Path, **config: object) -> RagStore:
    settings = RagConfig(chunk_tokens=64, chunk_overlap=8, **config)  # type: ignore[arg-type]
    return RagStore(settings, tmp_path / "data", bow_embed)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RagStore]:
    store = make_store(tmp_path, allowed_dirs=[str(tmp_path / "allowed")])
    await store.start()
    await store.create_collection(OWNER, "notes", description="test notes")
    yield store
    await store.aclose()


async def test_collections_lifecycle(store: RagStore) -> None:
    info = await store.collection_info(OWNER, "notes")
    assert (info.name, info.chunks, info.description) == ("notes", 0, "test notes")
    assert info.embedding_model == "smollm2-135m-embed"
    await store.create_collection(OWNER, "other", metadata={"team": "a"})
    listed = await store.list_collections(OWNER)
    assert [c.name for c in listed] == ["notes", "other"]
    assert listed[1].metadata == {"team": "a"}
    assert await store.has_collection(OWNER, "other")
    assert not await store.has_collection(OWNER, "missing")
    assert not await store.has_collection(OWNER, "x")  # not even a valid name
    with pytest.raises(InvalidRequest) as conflict:
        await store.create_collection(OWNER, "other")
    assert conflict.value.http_status == 409
    await store.delete_collection(OWNER, "other")
    assert not await store.has_collection(OWNER, "other")
    with pytest.raises(NotFound) as missing:
        await store.delete_collection(OWNER, "other")
    assert "'other'" in missing.value.message
    with pytest.raises(InvalidRequest):
        await store.create_collection(OWNER, "a")  # Chroma needs 3+ characters


async def test_search_finds_the_relevant_document(store: RagStore) -> None:
    added = await ingest.add_documents(store, OWNER, "notes", CORPUS)
    assert [d.status for d in added.documents] == ["added"] * 3
    hits = await store.search(OWNER, ["notes"], "why does the moon cause tides in the ocean", k=3)
    assert hits[0].source_id == "tides"
    assert hits[0].source == "https://example.org/tides"
    assert hits[0].metadata == {"topic": "sea", "year": 2020}
    assert hits[0].collection == "notes"
    assert hits[0].position.chunk == 0 and hits[0].position.start == 0
    assert hits[0].score > hits[1].score >= hits[2].score
    assert 0 < hits[0].score <= 1
    top = await store.search(OWNER, ["notes"], "how does yeast make bread rise", k=1)
    assert [h.source_id for h in top] == ["bread"]


async def test_where_filters_on_metadata(store: RagStore) -> None:
    await ingest.add_documents(store, OWNER, "notes", CORPUS)
    hits = await store.search(OWNER, ["notes"], "moon tides", k=3, where={"topic": "geology"})
    assert [h.source_id for h in hits] == ["volcano"]
    hits = await store.search(OWNER, ["notes"], "anything", k=3, where={"year": {"$gte": 2021}})
    assert {h.source_id for h in hits} == {"bread", "volcano"}
    with pytest.raises(InvalidRequest) as bad:
        await store.search(OWNER, ["notes"], "moon", k=3, where={"$bogus": 1})
    assert bad.value.param == "where"


async def test_search_across_collections_and_unknown_names(store: RagStore) -> None:
    await store.create_collection(OWNER, "more")
    await ingest.add_documents(store, OWNER, "notes", CORPUS[:1])
    await ingest.add_documents(store, OWNER, "more", CORPUS[2:])
    hits = await store.search(OWNER, ["notes", "more"], "magma volcano crust", k=2)
    assert [(h.collection, h.source_id) for h in hits] == [("more", "volcano"), ("notes", "tides")]
    with pytest.raises(NotFound) as missing:
        await store.search(OWNER, ["notes", "ghosts"], "x", k=2)
    assert "'ghosts'" in missing.value.message
    with pytest.raises(InvalidRequest):
        await store.search(OWNER, ["notes"], "   ", k=2)
    with pytest.raises(InvalidRequest):
        await store.search(OWNER, ["notes"], "x", k=0)


async def test_replacing_and_unchanged_documents(store: RagStore) -> None:
    await ingest.add_documents(store, OWNER, "notes", CORPUS)
    again = await ingest.add_documents(store, OWNER, "notes", CORPUS[:1])
    assert again.documents[0].status == "unchanged"
    changed = DocumentIn(id="tides", text="Tides now talk about harbours and boats.")
    result = await ingest.add_documents(store, OWNER, "notes", [changed])
    assert result.documents[0].status == "replaced"
    hits = await store.search(OWNER, ["notes"], "tides", k=10, where={"source_id": "tides"})
    assert [h.text for h in hits] == [changed.text]  # the old version is gone


async def test_long_documents_are_chunked_with_positions(store: RagStore) -> None:
    text = " ".join(f"Paragraph {i} mentions lighthouse number {i}." for i in range(80))
    result = await ingest.add_documents(store, OWNER, "notes", [DocumentIn(id="long", text=text)])
    assert result.documents[0].chunks > 3
    hits = await store.search(OWNER, ["notes"], "lighthouse number 79", k=20)
    assert len(hits) == result.documents[0].chunks
    for hit in hits:
        assert text[hit.position.start : hit.position.end] == hit.text


async def test_delete_by_id_and_by_source(store: RagStore) -> None:
    await ingest.add_documents(store, OWNER, "notes", CORPUS)
    assert await store.delete_sources(OWNER, "notes", ids=["bread"]) == (1, 1)
    assert await store.delete_sources(OWNER, "notes", sources=["https://example.org/tides"]) == (
        1,
        1,
    )
    assert await store.delete_sources(OWNER, "notes", ids=["bread"]) == (0, 0)
    hits = await store.search(OWNER, ["notes"], "anything at all", k=5)
    assert [h.source_id for h in hits] == ["volcano"]


async def test_bad_requests_store_nothing(store: RagStore) -> None:
    await ingest.add_documents(store, OWNER, "notes", CORPUS)
    before = (await store.collection_info(OWNER, "notes")).chunks
    bad_batches = [
        [DocumentIn(id="ok", text="fine"), DocumentIn(text="   ")],
        [DocumentIn(id="dup", text="one"), DocumentIn(id="dup", text="two")],
        [DocumentIn(text="x", metadata={"source_id": "forged"})],
    ]
    for batch in bad_batches:
        with pytest.raises(InvalidRequest):
            await ingest.add_documents(store, OWNER, "notes", batch)
    with pytest.raises(InvalidRequest):
        await ingest.add_files(store, OWNER, "notes", [("a.md", b"# ok"), ("b.exe", b"MZ")], {})
    assert (await store.collection_info(OWNER, "notes")).chunks == before
    with pytest.raises(NotFound):
        await ingest.add_documents(store, OWNER, "ghosts", CORPUS)


async def test_an_embedding_failure_keeps_the_old_version(tmp_path: Path) -> None:
    calls = {"n": 0}

    async def flaky(texts: list[str]) -> list[list[float]]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise UpstreamError("embedding model is down")
        return await bow_embed(texts)

    store = RagStore(RagConfig(), tmp_path / "data", flaky)
    await store.create_collection(OWNER, "notes")
    await ingest.add_documents(store, OWNER, "notes", CORPUS[:1])
    with pytest.raises(UpstreamError):
        await ingest.add_documents(store, OWNER, "notes", [DocumentIn(id="tides", text="new text")])
    store.embed_texts = bow_embed
    hits = await store.search(OWNER, ["notes"], "moon", k=5)
    assert [h.text for h in hits] == [CORPUS[0].text]
    await store.aclose()


async def test_another_embedding_dimension_is_a_clear_bad_request(store: RagStore) -> None:
    await ingest.add_documents(store, OWNER, "notes", CORPUS[:1])

    async def short(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0, 0.0] for _ in texts]

    store.embed_texts = short
    with pytest.raises(InvalidRequest) as caught:
        await ingest.add_documents(store, OWNER, "notes", [DocumentIn(text="other model")])
    assert "embedding model" in caught.value.message and caught.value.param == "collection"
    with pytest.raises(InvalidRequest):
        await store.search(OWNER, ["notes"], "moon", k=2)


async def test_uploaded_files_keep_pages_and_types(store: RagStore) -> None:
    pdf = make_pdf(["Page one is about anchors.", "Page two is about compasses."])
    result = await ingest.add_files(
        store,
        OWNER,
        "notes",
        [("manual.pdf", pdf), ("tool.py", b"def compass():\n    return 'north'\n")],
        {"team": "nav"},
    )
    assert [(d.id, d.status) for d in result.documents] == [
        ("upload:manual.pdf", "added"),
        ("upload:tool.py", "added"),
    ]
    [hit] = await store.search(OWNER, ["notes"], "compasses", k=1, where={"doc_type": "pdf"})
    assert hit.source == "manual.pdf" and hit.position.page == 2
    assert hit.metadata == {"team": "nav"}
    [code] = await store.search(OWNER, ["notes"], "compass north", k=1, where={"doc_type": "code"})
    assert code.source_id == "upload:tool.py"


async def test_the_embedded_store_persists_across_restart(tmp_path: Path) -> None:
    first = make_store(tmp_path)
    await first.create_collection(OWNER, "keep")
    await ingest.add_documents(first, OWNER, "keep", CORPUS)
    await first.aclose()
    second = make_store(tmp_path)
    assert [c.name for c in await second.list_collections(OWNER)] == ["keep"]
    hits = await second.search(OWNER, ["keep"], "volcano magma", k=1)
    assert hits[0].source_id == "volcano"
    assert (tmp_path / "data" / "chroma").is_dir()
    await second.aclose()


async def test_directory_indexing_is_incremental(store: RagStore, tmp_path: Path) -> None:
    docs = tmp_path / "allowed" / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "intro.md").write_text("# Intro\n\nThe harbour master keeps the tide tables.")
    (docs / "sub" / "page.html").write_text("<p>Gulls nest on the cliffs in spring.</p>")
    (docs / "sub" / "code.py").write_text("def anchor():\n    return 'heavy anchor'\n")
    (docs / "empty.txt").write_text("")
    (docs / "photo.png").write_bytes(b"\x89PNG")
    (docs / ".git").mkdir()
    (docs / ".git" / "config").write_text("[core]")
    (tmp_path / "secret.txt").write_text("the vault code is 1234")
    (docs / "link.txt").symlink_to(tmp_path / "secret.txt")

    request = IndexRequest(path=str(docs))
    first = await ingest.index_directory(store, OWNER, "notes", request)
    assert (first.added, first.updated, first.unchanged, first.removed) == (3, 0, 0, 0)
    assert first.skipped == 3  # empty.txt, photo.png, link.txt (outside); .git not entered
    assert first.failed == [] and first.chunks >= 3
    [hit] = await store.search(OWNER, ["notes"], "gulls cliffs", k=1)
    assert hit.source == str(docs.resolve() / "sub" / "page.html")
    assert hit.source_id == f"file:{hit.source}"
    assert not await store.search(OWNER, ["notes"], "vault code", k=5, where={"doc_type": "text"})

    second = await ingest.index_directory(store, OWNER, "notes", request)
    assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 3, 0)

    (docs / "intro.md").write_text("# Intro\n\nThe lighthouse keeper now owns the tide tables.")
    (docs / "sub" / "code.py").unlink()
    (docs / "new.txt").write_text("Seals sleep on the rocks.")
    third = await ingest.index_directory(store, OWNER, "notes", request)
    assert (third.added, third.updated, third.unchanged, third.removed) == (1, 1, 1, 1)
    hits = await store.search(OWNER, ["notes"], "tide tables", k=10, where={"doc_type": "markdown"})
    assert len(hits) == 1 and "lighthouse keeper" in hits[0].text
    assert not await store.search(OWNER, ["notes"], "anchor", k=5, where={"doc_type": "code"})


async def test_directory_indexing_reports_failures_and_refuses_escapes(
    store: RagStore, tmp_path: Path
) -> None:
    docs = tmp_path / "allowed" / "docs"
    docs.mkdir(parents=True)
    (docs / "good.md").write_text("Good text about boats.")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    report = await ingest.index_directory(store, OWNER, "notes", IndexRequest(path=str(docs)))
    assert report.added == 1
    assert [f.path for f in report.failed] == ["bad.pdf"]
    with pytest.raises(PermissionDenied):
        await ingest.index_directory(store, OWNER, "notes", IndexRequest(path=f"{docs}/../../"))
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, docs / "jump")
    with pytest.raises(PermissionDenied):
        await ingest.index_directory(store, OWNER, "notes", IndexRequest(path=str(docs / "jump")))
    with pytest.raises(NotFound):
        await ingest.index_directory(store, OWNER, "ghosts", IndexRequest(path=str(docs)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_chroma_is_never_asked_to_embed(store: RagStore) -> None:
    """Collections have no embedding function: Chroma cannot download its default model."""
    client = await store.client()
    collection = client.get_collection("notes", embedding_function=None)
    assert collection.configuration.get("embedding_function") is None
    assert collection.configuration["hnsw"]["space"] == "cosine"


# ----------------------------------------------------------------- reranking


async def test_a_reranker_reorders_the_candidates_before_the_cut(tmp_path: Path) -> None:
    """``rag.rerank_candidates`` nearest chunks go to the reranker, in embedding order;
    its scores decide which ``k`` are kept, and become the hits' scores."""
    seen: list[tuple[str, list[str]]] = []

    async def by_length(query: str, texts: list[str]) -> list[float]:
        seen.append((query, texts))
        return [float(len(t)) for t in texts]  # the longest text is the most relevant

    settings = RagConfig(
        chunk_tokens=64, chunk_overlap=8, top_k=1, rerank_model="r", rerank_candidates=3
    )
    store = RagStore(settings, tmp_path / "data", bow_embed, rerank=by_length)
    await store.start()
    try:
        await store.create_collection(OWNER, "notes")
        await ingest.add_documents(store, OWNER, "notes", CORPUS)
        query = "how does yeast make bread rise"
        hits = await store.search(OWNER, ["notes"], query, k=1)
    finally:
        await store.aclose()
    ((sent_query, candidates),) = seen
    assert sent_query == query
    assert len(candidates) == 3 and candidates[0] == CORPUS[1].text  # the embedding's best first
    longest = max(CORPUS, key=lambda d: len(d.text))
    assert [(h.source_id, h.score) for h in hits] == [(longest.id, float(len(longest.text)))]


async def test_a_missing_rerank_model_is_a_503_naming_it(tmp_path: Path) -> None:
    from proxy.errors import ModelNotFound, ServiceUnavailable

    async def absent(query: str, texts: list[str]) -> list[float]:
        raise ModelNotFound("The model 'gone' does not exist.", param="model")

    settings = RagConfig(chunk_tokens=64, chunk_overlap=8, rerank_model="gone")
    store = RagStore(settings, tmp_path / "data", bow_embed, rerank=absent)
    await store.start()
    try:
        await store.create_collection(OWNER, "notes")
        await ingest.add_documents(store, OWNER, "notes", CORPUS)
        with pytest.raises(ServiceUnavailable) as caught:
            await store.search(OWNER, ["notes"], "bread", k=1)
    finally:
        await store.aclose()
    assert caught.value.message == (
        "The RAG rerank model 'gone' is not available: The model 'gone' does not exist."
    )


def test_rerank_candidates_must_cover_top_k() -> None:
    with pytest.raises(ValueError, match="rerank_candidates must be at least top_k"):
        RagConfig(rerank_model="r", rerank_candidates=2, top_k=4)
    assert RagConfig(rerank_candidates=2, top_k=4).rerank_candidates == 2  # unused without a model
