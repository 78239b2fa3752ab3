"""``RagStore`` ownership on the embedded Chroma client: every method is scoped by owner.

A collection is seen and changed only by its owner; to anyone else it is exactly an
unknown collection. Shared collections (``rag.shared_collections``, and collections
written before owners existed) are readable by all and writable by none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from extensions.rag import ingest
from extensions.rag.config import RagConfig
from extensions.rag.owners import OWNER_KEY, Access, access_of
from extensions.rag.schemas import DocumentIn, IndexRequest
from extensions.rag.store import RagStore
from proxy.context import owner_of
from proxy.errors import InvalidRequest, NotFound, PermissionDenied
from tests.support.rag_fakes import bow_embed, write_legacy_collection

A, B = "key-a", "key-b"
TIDES = DocumentIn(id="tides", text="Tides are caused by the gravity of the moon.")
BREAD = DocumentIn(id="bread", text="Sourdough bread rises because wild yeast ferments flour.")


def make_store(tmp_path: Path, **config: Any) -> RagStore:
    settings = RagConfig(
        chunk_tokens=64, chunk_overlap=8, allowed_dirs=[str(tmp_path / "allowed")], **config
    )
    return RagStore(settings, tmp_path / "data", bow_embed)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RagStore]:
    store = make_store(tmp_path)
    await store.create_collection(A, "a-notes", description="A's notes")
    await ingest.add_documents(store, A, "a-notes", [TIDES])
    await store.create_collection(B, "b-notes")
    await ingest.add_documents(store, B, "b-notes", [BREAD])
    yield store
    await store.aclose()


def test_owner_of_a_caller_without_a_key_is_anonymous() -> None:
    assert owner_of("3f2a") == "3f2a"
    assert owner_of(None) == "-"


@pytest.mark.parametrize(
    ("metadata", "shared", "expected"),
    [
        ({OWNER_KEY: A}, (), Access.WRITE),
        ({OWNER_KEY: B}, (), Access.NONE),
        ({OWNER_KEY: A}, ("c",), Access.READ),  # shared: read-only even for its owner
        ({OWNER_KEY: B}, ("c",), Access.READ),
        ({"owner": A}, (), Access.READ),  # user metadata, not an owner: pre-ownership
        (None, (), Access.READ),
    ],
)
def test_access_rules(
    metadata: dict[str, Any] | None, shared: tuple[str, ...], expected: Access
) -> None:
    assert access_of("c", metadata, A, frozenset(shared)) is expected


async def test_each_owner_lists_only_its_own(store: RagStore) -> None:
    [a_info] = await store.list_collections(A)
    assert (a_info.name, a_info.owner, a_info.shared, a_info.chunks) == ("a-notes", A, False, 1)
    assert a_info.metadata == {}  # the owner is not user metadata
    assert [c.name for c in await store.list_collections(B)] == ["b-notes"]
    assert await store.list_collections("key-c") == []


async def test_another_owners_collection_is_an_unknown_collection(
    store: RagStore, tmp_path: Path
) -> None:
    unknown = await _not_found(store.collection_info(B, "never-made"))
    folder = tmp_path / "allowed" / "docs"
    folder.mkdir(parents=True)
    (folder / "page.md").write_text("Gulls nest on cliffs.")
    attempts = [
        store.collection_info(B, "a-notes"),
        store.writable_collection(B, "a-notes"),
        store.search(B, ["a-notes"], "moon tides", k=3),
        store.search(B, ["b-notes", "a-notes"], "moon tides", k=3),
        store.stored_hashes(B, "a-notes", {"origin": "json"}),
        store.delete_sources(B, "a-notes", ids=["tides"]),
        store.delete_collection(B, "a-notes"),
        ingest.add_documents(store, B, "a-notes", [BREAD]),
        ingest.add_files(store, B, "a-notes", [("x.md", b"# x")], {}),
        ingest.index_directory(store, B, "a-notes", IndexRequest(path=str(folder))),
    ]
    for attempt in attempts:
        error = await _not_found(attempt)
        assert (error.message, error.param, error.http_status) == (
            "Unknown RAG collection 'a-notes'.",
            unknown.param,
            unknown.http_status,
        )
    assert not await store.has_collection(B, "a-notes")
    # Nothing of it changed, and its owner still has all of it.
    info = await store.collection_info(A, "a-notes")
    assert (info.chunks, info.description) == (1, "A's notes")
    [hit] = await store.search(A, ["a-notes"], "moon tides", k=3)
    assert hit.source_id == "tides"
    assert [h.collection for h in await store.search(B, ["b-notes"], "moon bread", k=5)] == [
        "b-notes"
    ]


async def test_names_are_global_so_a_taken_name_is_a_conflict(store: RagStore) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await store.create_collection(B, "a-notes")
    assert caught.value.http_status == 409
    assert (await store.collection_info(A, "a-notes")).owner == A


async def test_the_owner_key_is_reserved(store: RagStore) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await store.create_collection(B, "forged", metadata={OWNER_KEY: A})
    assert caught.value.param == f"metadata.{OWNER_KEY}"


async def test_shared_collections_are_read_only_for_everyone(tmp_path: Path) -> None:
    first = make_store(tmp_path)
    await first.create_collection(A, "handbook")
    await ingest.add_documents(first, A, "handbook", [TIDES])
    await first.aclose()

    store = make_store(tmp_path, shared_collections=["handbook", "future"])
    for owner in (A, B):
        [info] = await store.list_collections(owner)
        assert (info.name, info.shared, info.chunks) == ("handbook", True, 1)
        assert info.owner == (A if owner == A else None)  # never another owner's id
        assert await store.has_collection(owner, "handbook")
        [hit] = await store.search(owner, ["handbook"], "moon", k=2)
        assert hit.source_id == "tides"
        for attempt in _writes(store, owner, "handbook", tmp_path):
            with pytest.raises(PermissionDenied) as caught:
                await attempt
            assert caught.value.http_status == 403
            assert caught.value.message.startswith("RAG collection 'handbook' is shared")
    with pytest.raises(PermissionDenied):
        await store.create_collection(B, "future")
    assert (await store.collection_info(A, "handbook")).chunks == 1
    await store.aclose()


async def test_a_collection_written_before_owners_is_shared_and_read_only(
    tmp_path: Path,
) -> None:
    """The old code path: a collection created through chromadb without an owner."""
    write_legacy_collection(
        tmp_path / "data" / "chroma",
        "legacy",
        [(TIDES.id or "", TIDES.text)],
        description="made before owners",
    )

    store = make_store(tmp_path)
    await store.start()
    for owner in (A, B, owner_of(None)):
        [info] = await store.list_collections(owner)
        assert (info.name, info.owner, info.shared) == ("legacy", None, True)
        assert info.description == "made before owners"
        assert info.metadata == {"owner": "docs-team"}
        [hit] = await store.search(owner, ["legacy"], "gravity of the moon", k=1)
        assert (hit.source_id, hit.text) == ("tides", TIDES.text)
        for attempt in _writes(store, owner, "legacy", tmp_path):
            with pytest.raises(PermissionDenied):
                await attempt
    assert (await store.collection_info(A, "legacy")).chunks == 1
    await store.aclose()


def _writes(store: RagStore, owner: str, name: str, tmp_path: Path) -> list[Any]:
    folder = tmp_path / "allowed" / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "page.md").write_text("Gulls nest on cliffs.")
    return [
        ingest.add_documents(store, owner, name, [BREAD]),
        ingest.add_files(store, owner, name, [("x.md", b"# x")], {}),
        ingest.index_directory(store, owner, name, IndexRequest(path=str(folder))),
        store.delete_sources(owner, name, ids=["tides"]),
        store.writable_collection(owner, name),
        store.delete_collection(owner, name),
    ]


async def _not_found(attempt: Any) -> NotFound:
    with pytest.raises(NotFound) as caught:
        await attempt
    return caught.value
