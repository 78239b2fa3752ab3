"""RAG collections belong to the team of the key that created them, through the real
gateway.

Two API keys of two teams probe each other's collections on every route of /v1/switchyard/rag, in
chat (``X-Switchyard-RAG``) and through the ``rag_search`` tool: to key B, key A's
collection is exactly an unknown collection. Shared collections (an admin's
``rag.shared_collections``, and one written before collections had owners, straight
through chromadb) are readable by both keys and writable by neither.

Embeddings and the chat model come from ``ScriptedChatUpstream`` (tests/support/
rag_fakes.py) behind the ``openai`` adapter, so the gateway embeds and chats through
its own router as in production, and what the model was sent can be read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.rag_fakes import (
    ScriptedChatUpstream,
    embeddings_upstream,
    write_legacy_collection,
)
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenants import seed_keys

KEY_A = "sk-rag-owner-a"
KEY_B = "sk-rag-owner-b"
TEAM_A = "team_rag_a"
TEAM_B = "team_rag_b"
SECRET = "The vault code is 1234 and the safe opens at dawn."
HANDBOOK = "Expense reports are due on the fifth working day of each month."
LEGACY = "The ferry leaves the harbour at nine every morning."
BREAD = "Sourdough bread rises as wild yeast ferments the flour."


class Env:
    def __init__(self, gateway: RunningServer, upstream: ScriptedChatUpstream, root: Path):
        self.gateway = gateway
        self.upstream = upstream
        self.docs = root / "allowed" / "docs"

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.gateway.url}/v1/switchyard/rag",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def chat(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.gateway.url}/v1", api_key=key, max_retries=0, timeout=30
        )


def fill(api: httpx.Client, name: str, doc_id: str, text: str) -> None:
    assert api.post("/collections", json={"name": name}).status_code == 201
    added = api.post(
        f"/collections/{name}/documents", json={"documents": [{"id": doc_id, "text": text}]}
    )
    assert added.status_code == 200, added.text


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("rag-owners")
    data = root / "data"
    (root / "allowed" / "docs").mkdir(parents=True)
    (root / "allowed" / "docs" / "page.md").write_text("Gulls nest on the cliffs.")
    write_legacy_collection(data / "chroma", "legacy-notes", [("ferry", LEGACY)])
    with embeddings_upstream(ScriptedChatUpstream()) as (upstream, url):
        assert isinstance(upstream, ScriptedChatUpstream)
        models = [
            {"name": name, "adapter": "openai", "model": upstream_id, "base_url": url,
             "api_key": "sk-upstream", "timeout_s": 10}
            for name, upstream_id in (("smollm2-135m-embed", "bag-of-words"), ("chat", "scripted"))
        ]  # fmt: skip
        seed_keys(data, {KEY_A: TEAM_A, KEY_B: TEAM_B})
        config: dict[str, Any] = {
            "server": {"master_key": "sk-rag-owners-master", "data_dir": str(data)},
            "models": models,
            "rag": {"allowed_dirs": [str(root / "allowed")], "top_k": 3},
        }
        # Key A makes the handbook; then the admin marks it shared and restarts.
        with serve_gateway(config) as first, Env(first, upstream, root).api(KEY_A) as api:
            fill(api, "handbook", "expenses", HANDBOOK)
        config["rag"]["shared_collections"] = ["handbook"]
        with serve_gateway(config) as gateway:
            env = Env(gateway, upstream, root)
            with env.api(KEY_A) as api:
                fill(api, "a-private", "vault", SECRET)
            with env.api(KEY_B) as api:
                fill(api, "b-own", "bread", BREAD)
            yield env


@pytest.fixture
def as_a(env: Env) -> Iterator[httpx.Client]:
    with env.api(KEY_A) as client:
        yield client


@pytest.fixture
def as_b(env: Env) -> Iterator[httpx.Client]:
    with env.api(KEY_B) as client:
        yield client


def listing(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get("/collections")
    assert response.status_code == 200, response.text
    return {c["name"]: c for c in response.json()["data"]}


def test_each_key_lists_its_own_and_the_shared_collections(
    as_a: httpx.Client, as_b: httpx.Client
) -> None:
    a, b = listing(as_a), listing(as_b)
    assert set(a) == {"a-private", "handbook", "legacy-notes"}
    assert set(b) == {"b-own", "handbook", "legacy-notes"}
    assert (a["a-private"]["owner"], a["a-private"]["shared"]) == (TEAM_A, False)
    assert (b["b-own"]["owner"], b["b-own"]["shared"]) == (TEAM_B, False)
    # The handbook is still A's, but shared; B is never told whose it is.
    assert (a["handbook"]["owner"], a["handbook"]["shared"]) == (TEAM_A, True)
    assert (b["handbook"]["owner"], b["handbook"]["shared"]) == (None, True)
    for seen in (a, b):
        legacy = seen["legacy-notes"]
        assert (legacy["owner"], legacy["shared"], legacy["chunks"]) == (None, True, 1)
        assert legacy["metadata"] == {"owner": "docs-team"}


ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/collections/{name}", {}),
    ("DELETE", "/collections/{name}", {}),
    ("POST", "/collections/{name}/documents", {"json": {"documents": [{"text": "B was here"}]}}),
    ("POST", "/collections/{name}/files", {"files": {"file": ("b.md", b"# B was here")}}),
    ("POST", "/collections/{name}/index", {"json": {"path": "{docs}"}}),
    ("POST", "/collections/{name}/documents/delete", {"json": {"ids": ["vault"]}}),
    ("DELETE", "/collections/{name}/documents/vault", {}),
    ("POST", "/collections/{name}/search", {"json": {"query": "vault code"}}),
    ("POST", "/search", {"json": {"collections": ["{name}"], "query": "vault code"}}),
    ("POST", "/search", {"json": {"collections": ["b-own", "{name}"], "query": "vault code"}}),
]
READS = {0, 7, 8, 9}


def request(api: httpx.Client, env: Env, route: tuple[str, str, dict[str, Any]], name: str) -> Any:
    method, path, kwargs = route
    filled = json.loads(json.dumps(kwargs.get("json"))) if "json" in kwargs else None
    if filled is not None:
        text = json.dumps(filled).replace("{name}", name).replace("{docs}", str(env.docs))
        kwargs = {**kwargs, "json": json.loads(text)}
    return api.request(method, path.format(name=name), **kwargs)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_keys_collection_is_an_unknown_collection(
    env: Env, as_a: httpx.Client, as_b: httpx.Client, route: tuple[str, str, dict[str, Any]]
) -> None:
    unknown = request(as_b, env, route, "never-made")
    theirs = request(as_b, env, route, "a-private")
    assert (theirs.status_code, unknown.status_code) == (404, 404)
    assert theirs.json() == json.loads(unknown.text.replace("never-made", "a-private"))
    assert theirs.json()["error"]["message"] == "Unknown RAG collection 'a-private'."
    # A's collection is untouched and still A's alone.
    assert as_a.get("/collections/a-private").json()["chunks"] == 1
    [hit] = as_a.post("/collections/a-private/search", json={"query": "vault code"}).json()["data"]
    assert hit["text"] == SECRET


WRITES = [route for i, route in enumerate(ROUTES) if i not in READS]


@pytest.mark.parametrize("key", [KEY_A, KEY_B], ids=["owner", "other"])
@pytest.mark.parametrize("name", ["handbook", "legacy-notes"])
@pytest.mark.parametrize("route", WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_shared_collections_cannot_be_changed(
    env: Env, key: str, name: str, route: tuple[str, str, dict[str, Any]]
) -> None:
    with env.api(key) as api:
        response = request(api, env, route, name)
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "permission_denied" and error["param"] == "collection"
        assert error["message"].startswith(f"RAG collection '{name}' is shared and read-only")
        assert api.get(f"/collections/{name}").json()["chunks"] == 1


def test_a_shared_name_cannot_be_created(as_b: httpx.Client) -> None:
    response = as_b.post("/collections", json={"name": "handbook"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize("key", [KEY_A, KEY_B], ids=["owner", "other"])
def test_shared_collections_are_searched_by_everyone(env: Env, key: str) -> None:
    with env.api(key) as api:
        assert api.get("/collections/handbook").json()["shared"] is True
        [hit] = api.post("/collections/handbook/search", json={"query": "expense"}).json()["data"]
        assert hit["text"] == HANDBOOK
        found = api.post(
            "/search", json={"collections": ["handbook", "legacy-notes"], "query": "ferry"}
        ).json()["data"]
        assert {(h["collection"], h["text"]) for h in found} == {
            ("handbook", HANDBOOK),
            ("legacy-notes", LEGACY),
        }


# ----------------------------------------------------------------- chat


def rag_chat(env: Env, key: str, collections: str) -> Any:
    return env.chat(key).chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "What is the vault code, and the ferry time?"}],
        extra_headers={"X-Switchyard-RAG": collections},
    )


def test_chat_with_another_keys_collection_is_refused_like_an_unknown_one(env: Env) -> None:
    sent = len(env.upstream.chats)
    errors = {}
    for name in ("a-private", "never-made"):
        with pytest.raises(openai.NotFoundError) as caught:
            rag_chat(env, KEY_B, f"b-own,{name}")
        errors[name] = caught.value.body
    assert errors["a-private"] == json.loads(
        json.dumps(errors["never-made"]).replace("never-made", "a-private")
    )
    assert errors["a-private"] == {
        "message": "Unknown RAG collection 'a-private'.",
        "type": "invalid_request_error",
        "param": "rag",
        "code": None,
    }
    assert len(env.upstream.chats) == sent  # the model was never called


def test_chat_sources_are_the_callers_own_and_the_shared(env: Env) -> None:
    response = rag_chat(env, KEY_B, "b-own,handbook,legacy-notes")
    header = json.loads(response.headers["x-switchyard-sources"])
    assert {s["collection"] for s in header} == {"b-own", "handbook", "legacy-notes"}
    assert response.parse().model_extra["switchyard"]["sources"] == header
    context = env.upstream.chats[-1]["messages"][0]["content"]
    assert HANDBOOK in context and LEGACY in context and SECRET not in context

    own = rag_chat(env, KEY_A, "a-private")
    [source] = json.loads(own.headers["x-switchyard-sources"])
    assert (source["collection"], source["source_id"]) == ("a-private", "vault")
    assert SECRET in env.upstream.chats[-1]["messages"][0]["content"]


# ----------------------------------------------------------------- rag_search tool


def tool_chat(env: Env, key: str, arguments: dict[str, Any], active: list[str]) -> str:
    env.upstream.tool_arguments = arguments
    reply = env.chat(key).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Look it up."}],
        extra_body={"switchyard": {"tools": ["rag_search"], **({"rag": active} if active else {})}},
    )
    content: str = reply.choices[0].message.content
    return content


def test_rag_search_cannot_reach_another_keys_collection(env: Env) -> None:
    sent = len(env.upstream.chats)
    answer = tool_chat(env, KEY_B, {"query": "vault code", "collection": "a-private"}, ["b-own"])
    assert answer == (
        "The tool said: error: unknown collection 'a-private' (active for this request: b-own)"
    )
    assert all(SECRET not in json.dumps(body) for body in env.upstream.chats[sent:])

    shared = tool_chat(env, KEY_B, {"query": "expense reports", "collection": "handbook"}, [])
    assert shared.startswith("The tool said: [1] source_id=expenses") and HANDBOOK in shared
    own = tool_chat(env, KEY_A, {"query": "vault code", "collection": "a-private"}, [])
    assert own.startswith("The tool said: [1] source_id=vault") and SECRET in own


# ----------------------------------------------------------------- auth off


def test_without_auth_every_caller_shares_the_default_teams_collections(tmp_path: Path) -> None:
    """A single-user setup (no keys configured) is one team, ``default``: what one caller
    makes, any other reads, whatever key it sends; a virtual key still has its own team."""
    data = tmp_path / "data"
    seed_keys(data, {KEY_B: TEAM_B})
    with embeddings_upstream() as (_, url):
        config = {
            "server": {"data_dir": str(data)},
            "models": [
                {"name": "smollm2-135m-embed", "adapter": "openai", "model": "bag-of-words",
                 "base_url": url, "api_key": "sk-upstream", "timeout_s": 10}
            ],
        }  # fmt: skip
        with serve_gateway(config) as gateway:
            rag = f"{gateway.url}/v1/switchyard/rag"
            keyed = {"Authorization": "Bearer sk-anything"}
            member = {"Authorization": f"Bearer {KEY_B}"}
            made = httpx.post(f"{rag}/collections", json={"name": "anon-notes"})
            assert made.status_code == 201 and made.json()["owner"] == "default"
            assert httpx.get(f"{rag}/collections/anon-notes").status_code == 200
            assert httpx.get(f"{rag}/collections/anon-notes", headers=keyed).status_code == 200
            assert httpx.get(f"{rag}/collections/anon-notes", headers=member).status_code == 404
            assert httpx.get(f"{rag}/collections", headers=member).json()["data"] == []
