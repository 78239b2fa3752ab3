"""The RAG management API (/v1/switchyard/rag) through the real gateway over HTTP.

The gateway embeds through its own router, as in production: the configured embedding
model ``smollm2-135m-embed`` is an ``openai``-adapter deployment whose upstream is
``EmbeddingsUpstream`` (deterministic bag-of-words vectors, tests/support/rag_fakes.py).
No test hook replaces the embedder; the real model is exercised by the extension e2e
tests with llama.cpp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.rag_api import Env, chunks_in, create, embedding_model, error_of
from tests.support.rag_fakes import embeddings_upstream, make_pdf
from tests.support.servers import serve_gateway

KEY = "sk-rag-tests"
MAX_UPLOAD_MB = 0.05  # ~51 KiB per file: small enough to test 413 cheaply


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("rag-e2e")
    (root / "allowed").mkdir()
    (root / "outside").mkdir()
    with embeddings_upstream() as (upstream, url):
        config = {
            "server": {"api_keys": [KEY], "data_dir": str(root / "data")},
            "models": [embedding_model(url, timeout_s=10)],
            "rag": {
                "allowed_dirs": [str(root / "allowed")],
                "max_upload_mb": MAX_UPLOAD_MB,
                "chunk_tokens": 64,
                "chunk_overlap": 8,
                "top_k": 3,
            },
        }
        with serve_gateway(config) as gateway:
            yield Env(gateway, upstream, root)


@pytest.fixture
def api(env: Env) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{env.gateway.url}/v1/switchyard/rag",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as client:
        yield client


DOCS: list[dict[str, Any]] = [
    {
        "id": "tides",
        "text": "Tides are caused by the gravity of the moon pulling on the oceans.",
        "metadata": {"topic": "sea"},
        "source": "https://example.org/tides",
    },
    {"id": "bread", "text": "Sourdough bread rises as wild yeast ferments the flour."},
    {"id": "volcano", "text": "A volcano erupts when magma breaks through the crust."},
]


def test_the_api_is_guarded_like_v1(env: Env) -> None:
    response = httpx.get(f"{env.gateway.url}/v1/switchyard/rag/collections")
    assert error_of(response, 401)["code"] == "invalid_api_key"


def test_collection_lifecycle(api: httpx.Client) -> None:
    made = create(api, "lifecycle", description="for the test", metadata={"team": "docs"})
    assert made == {
        "name": "lifecycle",
        "chunks": 0,
        "embedding_model": "smollm2-135m-embed",
        "description": "for the test",
        "metadata": {"team": "docs"},
        "owner": "default",  # a static key is in team default
        "shared": False,
        "object": "rag.collection",
    }
    duplicate = error_of(api.post("/collections", json={"name": "lifecycle"}), 409)
    assert "lifecycle" in duplicate["message"]
    bad = error_of(api.post("/collections", json={"name": "no spaces!"}), 400)
    assert bad["param"] == "name"
    names = [c["name"] for c in api.get("/collections").json()["data"]]
    assert "lifecycle" in names
    assert api.get("/collections/lifecycle").json()["description"] == "for the test"
    deleted = api.delete("/collections/lifecycle")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": "lifecycle", "object": "rag.collection", "deleted": True}
    assert "'lifecycle'" in error_of(api.get("/collections/lifecycle"), 404)["message"]


def test_documents_and_search(api: httpx.Client, env: Env) -> None:
    create(api, "science")
    before = env.upstream.requests
    added = api.post("/collections/science/documents", json={"documents": DOCS})
    assert added.status_code == 200, added.text
    body = added.json()
    assert body["chunks"] == 3 and [d["status"] for d in body["documents"]] == ["added"] * 3
    assert env.upstream.requests > before  # embedded through the gateway's own route

    found = api.post("/collections/science/search", json={"query": "moon and ocean tides"})
    hits = found.json()["data"]
    assert len(hits) == 3  # rag.top_k
    top = hits[0]
    assert top["source_id"] == "tides" and top["source"] == "https://example.org/tides"
    assert top["collection"] == "science" and top["metadata"] == {"topic": "sea"}
    assert top["position"] == {"chunk": 0, "start": 0, "end": len(DOCS[0]["text"])}
    assert top["text"] == DOCS[0]["text"] and top["id"].startswith("tides#")
    assert top["score"] > hits[1]["score"]

    filtered = api.post(
        "/collections/science/search",
        json={"query": "moon tides", "k": 5, "where": {"source_id": "volcano"}},
    ).json()["data"]
    assert [h["source_id"] for h in filtered] == ["volcano"]

    create(api, "kitchen")
    api.post("/collections/kitchen/documents", json={"documents": [DOCS[1]]})
    multi = api.post(
        "/search", json={"collections": ["science", "kitchen"], "query": "yeast bread", "k": 2}
    ).json()["data"]
    assert {h["collection"] for h in multi} == {"science", "kitchen"}
    assert all(h["source_id"] == "bread" for h in multi)
    assert (
        error_of(
            api.post("/search", json={"collections": ["science", "nowhere"], "query": "x"}), 404
        )["message"]
        == "Unknown RAG collection 'nowhere'."
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/collections/ghost-coll", {}),
        ("DELETE", "/collections/ghost-coll", {}),
        ("POST", "/collections/ghost-coll/documents", {"json": {"documents": DOCS[:1]}}),
        ("POST", "/collections/ghost-coll/files", {"files": {"file": ("a.md", b"# A")}}),
        ("POST", "/collections/ghost-coll/index", {"json": {"path": "{allowed}"}}),
        ("POST", "/collections/ghost-coll/search", {"json": {"query": "x"}}),
        ("POST", "/collections/ghost-coll/documents/delete", {"json": {"ids": ["x"]}}),
        ("DELETE", "/collections/ghost-coll/documents/x", {}),
    ],
)
def test_unknown_collections_are_404_naming_them(
    api: httpx.Client, env: Env, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    if "json" in kwargs and "path" in kwargs["json"]:
        kwargs = {"json": {"path": str(env.allowed)}}
    response = api.request(method, path, **kwargs)
    assert "'ghost-coll'" in error_of(response, 404)["message"]


def test_file_uploads(api: httpx.Client) -> None:
    create(api, "uploads")
    html = b"<html><body><script>evil()</script><h1>Gulls</h1><p>Gulls nest on cliffs.</p>"
    pdf = make_pdf(["Page one covers anchors.", "Page two covers compasses."])
    files = [
        ("file", ("notes.md", b"# Notes\n\nSeals sleep on warm rocks.", "text/markdown")),
        ("file", ("birds.html", html, "text/html")),
        ("file", ("manual.pdf", pdf, "application/pdf")),
        ("file", ("nav.rs", b'fn compass() -> &\'static str { "north" }\n', "text/plain")),
    ]
    response = api.post(
        "/collections/uploads/files", files=files, data={"metadata": '{"team": "nav"}'}
    )
    assert response.status_code == 200, response.text
    documents = response.json()["documents"]
    assert [(d["id"], d["status"]) for d in documents] == [
        ("upload:notes.md", "added"),
        ("upload:birds.html", "added"),
        ("upload:manual.pdf", "added"),
        ("upload:nav.rs", "added"),
    ]
    hits = api.post(
        "/collections/uploads/search", json={"query": "compasses", "where": {"doc_type": "pdf"}}
    ).json()["data"]
    assert hits[0]["source"] == "manual.pdf" and hits[0]["position"]["page"] == 2
    assert hits[0]["metadata"] == {"team": "nav"}
    [gulls] = api.post(
        "/collections/uploads/search", json={"query": "gulls cliffs", "k": 1}
    ).json()["data"]
    assert gulls["source"] == "birds.html" and "evil" not in gulls["text"]

    again = api.post(
        "/collections/uploads/files", files=files[:1], data={"metadata": '{"team": "nav"}'}
    )
    assert again.json()["documents"][0]["status"] == "unchanged"
    named = api.post(
        "/collections/uploads/files", files=files[:1], data={"id": "custom-notes"}
    ).json()
    assert named["documents"][0]["id"] == "custom-notes"


def test_bad_uploads_are_refused_and_store_nothing(api: httpx.Client) -> None:
    create(api, "strict")
    api.post("/collections/strict/documents", json={"documents": DOCS})
    stored = chunks_in(api, "strict")
    good = ("file", ("ok.md", b"# fine", "text/markdown"))
    cases = [
        ([good, ("file", ("virus.exe", b"MZ\x90\x00", "application/octet-stream"))], {}, 400),
        ([("file", ("empty.txt", b"", "text/plain"))], {}, 400),
        ([("file", ("big.txt", b"word " * 20_000, "text/plain"))], {}, 413),
        ([("file", ("huge.txt", b"x" * (2 * 1024 * 1024), "text/plain"))], {}, 413),
        ([good], {"metadata": "not json"}, 400),
        ([good], {"metadata": '{"source": "forged"}'}, 400),
        ([good, ("file", ("two.md", b"# two", "text/markdown"))], {"id": "one-id"}, 400),
    ]
    for files, data, status in cases:
        response = api.post("/collections/strict/files", files=files, data=data)
        error = error_of(response, status)
        if status == 400 and files[-1][1][0] in ("virus.exe", "empty.txt"):
            assert files[-1][1][0] in error["message"]
    not_multipart = api.post("/collections/strict/files", json={"file": "x"})
    assert error_of(not_multipart, 400)["param"] == "file"
    assert error_of(api.post("/collections/strict/files", data={"x": "1"}), 400)["param"] == "file"
    assert chunks_in(api, "strict") == stored


def test_bad_json_bodies_name_the_field(api: httpx.Client) -> None:
    create(api, "jsoncheck")
    not_json = api.post(
        "/collections/jsoncheck/documents",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    error_of(not_json, 400)
    wrong = api.post("/collections/jsoncheck/documents", json={"documents": [{"text": 5}]})
    assert error_of(wrong, 400)["param"] == "documents[0].text"
    unknown = api.post("/collections/jsoncheck/search", json={"query": "x", "limit": 3})
    error_of(unknown, 400)
    reserved = api.post(
        "/collections/jsoncheck/documents",
        json={"documents": [{"text": "t", "metadata": {"chunk": 1}}]},
    )
    assert error_of(reserved, 400)["param"] == "documents[0].metadata.chunk"
    bad_where = api.post("/collections/jsoncheck/search", json={"query": "x", "where": {"$x": 1}})
    assert error_of(bad_where, 400)["param"] == "where"
    assert chunks_in(api, "jsoncheck") == 0


def test_index_a_server_directory(api: httpx.Client, env: Env) -> None:
    create(api, "handbook")
    docs = env.allowed / "handbook"
    (docs / "ops").mkdir(parents=True)
    (docs / "intro.md").write_text("# Intro\n\nThe harbour master keeps the tide tables.")
    (docs / "ops" / "pumps.txt").write_text("Restart the bilge pumps every morning.")
    (docs / "ops" / "skip.log").write_text("excluded by the filter")
    (env.outside / "secret.md").write_text("The vault code is 1234.")
    (docs / "escape.md").symlink_to(env.outside / "secret.md")
    request = {"path": str(docs), "exclude": ["*.log", ".*"]}

    first = api.post("/collections/handbook/index", json=request).json()
    assert (first["added"], first["updated"], first["unchanged"], first["removed"]) == (2, 0, 0, 0)
    assert first["skipped"] == 1 and first["failed"] == []  # escape.md leads outside
    assert first["path"] == str(docs.resolve())
    hits = api.post("/collections/handbook/search", json={"query": "vault code"}).json()["data"]
    assert all("vault" not in h["text"] for h in hits)

    second = api.post("/collections/handbook/index", json=request).json()
    assert (second["added"], second["unchanged"]) == (0, 2)

    (docs / "intro.md").write_text("# Intro\n\nThe lighthouse keeper owns the tide tables.")
    (docs / "ops" / "pumps.txt").unlink()
    third = api.post("/collections/handbook/index", json=request).json()
    assert (third["added"], third["updated"], third["unchanged"], third["removed"]) == (0, 1, 0, 1)
    [hit] = api.post("/collections/handbook/search", json={"query": "tide", "k": 5}).json()["data"]
    assert "lighthouse keeper" in hit["text"]
    assert hit["source"] == str(docs.resolve() / "intro.md")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("{outside}", 403),
        ("{allowed}/../outside", 403),
        ("{allowed}/link-out", 403),
        ("relative/path", 400),
        ("{allowed}/missing", 400),
    ],
)
def test_index_refuses_paths_outside_allowed_dirs(
    api: httpx.Client, env: Env, path: str, status: int
) -> None:
    if not api.get("/collections/guarded").is_success:
        create(api, "guarded")
    link = env.allowed / "link-out"
    if not link.is_symlink():
        link.symlink_to(env.outside, target_is_directory=True)
    wanted = path.format(outside=env.outside, allowed=env.allowed)
    error = error_of(api.post("/collections/guarded/index", json={"path": wanted}), status)
    assert wanted in error["message"] and error["param"] == "path"
    assert chunks_in(api, "guarded") == 0


def test_delete_documents(api: httpx.Client, env: Env) -> None:
    create(api, "pruning")
    api.post("/collections/pruning/documents", json={"documents": DOCS})
    api.post("/collections/pruning/files", files={"file": ("notes.md", b"# Seals on rocks")})
    folder = env.allowed / "pruning"
    folder.mkdir()
    (folder / "page.md").write_text("Cormorants dry their wings.")
    api.post("/collections/pruning/index", json={"path": str(folder)})
    file_id = f"file:{folder.resolve() / 'page.md'}"

    by_ids = api.post("/collections/pruning/documents/delete", json={"ids": ["bread", "volcano"]})
    assert by_ids.json() == {
        "collection": "pruning",
        "documents": 2,
        "chunks": 2,
        "object": "rag.documents.deleted",
    }
    by_source = api.post(
        "/collections/pruning/documents/delete", json={"sources": ["https://example.org/tides"]}
    )
    assert by_source.json()["documents"] == 1
    assert api.delete("/collections/pruning/documents/upload:notes.md").json()["documents"] == 1
    assert api.delete(f"/collections/pruning/documents/{file_id}").json()["documents"] == 1
    assert chunks_in(api, "pruning") == 0
    missing = error_of(api.delete("/collections/pruning/documents/bread"), 404)
    assert "'bread'" in missing["message"]
    empty = api.post("/collections/pruning/documents/delete", json={})
    assert error_of(empty, 400)["param"] == "ids"


def test_without_the_embedding_model_writes_are_503(tmp_path: Path) -> None:
    config = {"server": {"data_dir": str(tmp_path)}, "rag": {"embedding_model": "absent"}}
    with (
        serve_gateway(config) as gateway,
        httpx.Client(base_url=f"{gateway.url}/v1/switchyard/rag", timeout=30) as api,
    ):
        create(api, "lonely")
        response = api.post("/collections/lonely/documents", json={"documents": DOCS})
        assert "'absent'" in error_of(response, 503)["message"]
        assert chunks_in(api, "lonely") == 0
