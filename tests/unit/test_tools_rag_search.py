"""rag_search against a small fake store with RagStore's ``search`` signature.

The real store (ChromaDB, embeddings) is tested by the RAG suite; here only the tool's
choice of collections, its argument handling and its formatting are under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from extensions.tools.base import ToolContext
from extensions.tools.config import ToolsConfig
from extensions.tools.rag_search import RagSearchTool
from proxy.errors import UpstreamUnavailable


@dataclass
class FakeHit:
    text: str
    score: float
    source_id: str
    source: str | None
    collection: str


class FakeStore:
    def __init__(self, *existing: str) -> None:
        self.existing = set(existing)
        self.calls: list[tuple[list[str], str, int]] = []
        self.owners: list[str] = []
        self.fail: Exception | None = None

    async def has_collection(self, owner: str, name: str) -> bool:
        self.owners.append(owner)
        return name in self.existing

    async def search(
        self, owner: str, collections: list[str], query: str, k: int, where: dict | None = None
    ) -> list[FakeHit]:
        self.owners.append(owner)
        self.calls.append((collections, query, k))
        if self.fail is not None:
            raise self.fail
        hits = [
            FakeHit("  Trains leave at nine.\n", 0.91234, "timetable.md#0", "docs/timetable.md", c)
            for c in collections
        ]
        hits.append(FakeHit("Platform 4.", 0.5, "note-7", None, collections[0]))
        return hits[:k]


async def search(
    arguments: Any, store: Any, active: list[str] | None = None, team_id: str = "team-a"
) -> str:
    async with httpx.AsyncClient() as http:
        context = ToolContext(
            http=http,
            config=ToolsConfig(),
            rag=store,
            rag_collections=active or [],
            team_id=team_id,
        )
        return await RagSearchTool().run(arguments, context)


async def test_active_collections_by_default_with_numbered_sources() -> None:
    store = FakeStore("docs", "notes")
    text = await search({"query": "when do trains leave?"}, store, ["docs", "notes"])
    assert store.calls == [(["docs", "notes"], "when do trains leave?", 5)]
    assert text == (
        "[1] source_id=timetable.md#0 source=docs/timetable.md collection=docs score=0.912\n"
        "Trains leave at nine.\n\n"
        "[2] source_id=timetable.md#0 source=docs/timetable.md collection=notes score=0.912\n"
        "Trains leave at nine.\n\n"
        "[3] source_id=note-7 collection=docs score=0.500\nPlatform 4."
    )


async def test_named_collection_must_be_active_or_exist() -> None:
    store = FakeStore("docs", "archive")
    assert (await search({"query": "q", "collection": "docs", "k": 1}, store, ["docs"])).startswith(
        "[1] "
    )
    assert store.calls[-1] == (["docs"], "q", 1)
    await search({"query": "q", "collection": "archive"}, store, ["docs"])
    assert store.calls[-1][0] == ["archive"]
    text = await search({"query": "q", "collection": "secret"}, store, ["docs"])
    assert text == "error: unknown collection 'secret' (active for this request: docs)"
    assert len(store.calls) == 2
    assert set(store.owners) == {"team-a"}  # every look-up is the caller's team's


async def test_a_context_without_a_team_searches_the_default_team() -> None:
    store = FakeStore("docs")
    async with httpx.AsyncClient() as http:
        context = ToolContext(http=http, config=ToolsConfig(), rag=store, rag_collections=[])
        await RagSearchTool().run({"query": "q", "collection": "docs"}, context)
    assert store.owners == ["default", "default"]


async def test_store_without_has_collection_limits_to_active() -> None:
    class Minimal:
        search = FakeStore.search

        def __init__(self) -> None:
            self.calls: list[Any] = []
            self.fail = None

    text = await search({"query": "q", "collection": "other"}, Minimal(), ["docs"])
    assert text.startswith("error: unknown collection 'other'")


@pytest.mark.parametrize(
    ("arguments", "store", "active", "expected"),
    [
        ({"query": "q"}, None, ["docs"], "error: RAG is not configured on this gateway"),
        ({"query": "q"}, FakeStore(), [], "error: no collection is active for this request"),
        ({}, FakeStore(), ["docs"], "error: invalid arguments: Object missing required field"),
        ({"query": "q", "k": 0}, FakeStore(), ["docs"], "error: invalid arguments: Expected `int`"),
        ("q", FakeStore(), ["docs"], "error: invalid arguments: expected a JSON object"),
    ],
)
async def test_failures_come_back_as_error_text(
    arguments: Any, store: Any, active: list[str], expected: str
) -> None:
    assert (await search(arguments, store, active)).startswith(expected)


async def test_k_is_capped_and_store_errors_are_reported() -> None:
    store = FakeStore()
    await search({"query": "q", "k": 500}, store, ["docs"])
    assert store.calls[-1][2] == 20
    store.fail = UpstreamUnavailable("The embedding model is not reachable.")
    text = await search({"query": "q"}, store, ["docs"])
    assert text == "error: search failed: The embedding model is not reachable."


async def test_no_hits() -> None:
    class Empty(FakeStore):
        async def search(self, *args: Any, **kwargs: Any) -> list[FakeHit]:
            return []

    assert await search({"query": "q"}, Empty(), ["docs"]) == "No passages found for 'q' in docs."


async def test_another_teams_collection_is_unknown_to_the_tool(tmp_path: Any) -> None:
    """The real store: key B's model naming key A's collection finds nothing of it."""
    from extensions.rag import ingest
    from extensions.rag.config import RagConfig
    from extensions.rag.schemas import DocumentIn
    from extensions.rag.store import RagStore
    from tests.support.rag_fakes import bow_embed

    store = RagStore(RagConfig(), tmp_path, bow_embed)
    await store.create_collection("team-a", "a-private")
    secret = DocumentIn(id="vault", text="The vault code is 1234.")
    await ingest.add_documents(store, "team-a", "a-private", [secret])
    await store.create_collection("team-b", "b-own")
    try:
        named = await search(
            {"query": "vault code", "collection": "a-private"}, store, ["b-own"], team_id="team-b"
        )
        assert named == "error: unknown collection 'a-private' (active for this request: b-own)"
        forced = await search({"query": "vault code"}, store, ["a-private"], team_id="team-b")
        assert forced == "error: search failed: Unknown RAG collection 'a-private'."
        mine = await search({"query": "vault code", "collection": "a-private"}, store, [])
        assert "The vault code is 1234." in mine
    finally:
        await store.aclose()
