"""Who sees what, between teams: sessions belong to a key, RAG collections, media files and
video jobs to a team; any other owner gets a 404, exactly as for something that does not
exist. And a key's ``allowed_extensions`` decides which extensions it may switch on.

One gateway with real virtual keys: ``alice`` and ``carol`` in team ``north``, ``bob`` in
team ``south``. Chat goes to the fake OpenAI upstream, embeddings to the bag-of-words
upstream, images and videos to the fake ComfyUI.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_comfyui import FakeComfyUI, comfy_model, serve_comfyui
from tests.support.rag_api import embedding_model
from tests.support.rag_fakes import embeddings_upstream
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenancy import Admin, ask, chat_model, sdk, tenancy_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks Sora APIs


@dataclass
class World:
    gateway: RunningServer
    comfy: FakeComfyUI
    alice: str
    carol: str
    bob: str
    sessions_only: str
    """A key of team north that may use the ``session`` extension and no other."""

    def http(self, key: str | None, path: str = "") -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=f"{self.gateway.url}{path}", headers=headers, timeout=30)


@pytest.fixture(scope="module")
def world(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("ownership")
    with serve_comfyui() as comfy, embeddings_upstream() as (_, embed_url):
        models = [
            chat_model("gpt-test", "upstream-gpt", fake_url),
            embedding_model(embed_url, timeout_s=10),
            comfy_model("sd", comfy.url, {"generate": "text-to-image.yaml"}),
            comfy_model("wan", comfy.url, {"video": "text-to-video.yaml"}),
        ]
        config = tenancy_config(data, models, rag={"top_k": 3})
        with serve_gateway(config) as gateway, Admin(gateway) as admin:
            north, south = admin.team("north")["id"], admin.team("south")["id"]
            yield World(
                gateway,
                comfy,
                alice=admin.key(north, "alice")["key"],
                carol=admin.key(north, "carol")["key"],
                bob=admin.key(south, "bob")["key"],
                sessions_only=admin.key(north, "narrow", allowed_extensions=["session"])["key"],
            )


# ------------------------------------------------------------------------- extensions


def test_allowed_extensions_refuse_the_others_by_name(world: World, fake: Any) -> None:
    with sdk(world.gateway, world.sessions_only) as client:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(client, extra_headers={"X-Switchyard-RAG": "anything"})
        assert "'rag'" in refused.value.message
        with pytest.raises(openai.PermissionDeniedError) as by_body:
            ask(client, extra_body={"switchyard": {"rag": ["anything"]}})
        assert "'rag'" in by_body.value.message
        assert fake.received("/v1/chat/completions") == []
        ask(client, "remember me", extra_headers={"X-Switchyard-Session": "narrow-1"})
        ask(client, "and now?", extra_headers={"X-Switchyard-Session": "narrow-1"})
    sent = [m["content"] for m in fake.last("/v1/chat/completions").body["messages"]]
    assert sent == ["remember me", "Hello! You said: remember me", "and now?"]


# --------------------------------------------------------------------------- sessions


def test_a_session_belongs_to_its_key_even_within_the_team(world: World, fake: Any) -> None:
    with sdk(world.gateway, world.alice) as client:
        ask(client, "alice's secret plan", extra_headers={"X-Switchyard-Session": "plans"})
    path = "/v1/switchyard/sessions/plans"
    with world.http(world.alice) as api:
        mine = api.get(path)
    assert mine.status_code == 200
    assert mine.json()["messages"][0]["content"] == "alice's secret plan"
    for other in (world.bob, world.carol):
        with world.http(other) as api:
            theirs = api.get(path)
            assert theirs.status_code == 404
            assert theirs.json()["error"]["param"] == "session_id"
            assert "plans" not in [
                s["id"] for s in api.get("/v1/switchyard/sessions").json()["data"]
            ]
        # Using the same session id starts the other key's own, empty session.
        with sdk(world.gateway, other) as client:
            ask(client, "who is there?", extra_headers={"X-Switchyard-Session": "plans"})
        sent = fake.last("/v1/chat/completions").body["messages"]
        assert [m["content"] for m in sent] == ["who is there?"]


# ------------------------------------------------------------------------------- RAG


def test_collections_are_shared_by_the_team_and_hidden_from_others(world: World) -> None:
    rag = "/v1/switchyard/rag"
    with world.http(world.alice, rag) as alice:
        assert alice.post("/collections", json={"name": "north-notes"}).status_code == 201
        added = alice.post(
            "/collections/north-notes/documents",
            json={"documents": [{"id": "d1", "text": "The north gate opens at dawn."}]},
        )
        assert added.status_code == 200, added.text
    with world.http(world.carol, rag) as carol:
        seen = carol.get("/collections/north-notes")
        assert seen.status_code == 200 and seen.json()["chunks"] == 1
        hits = carol.post("/collections/north-notes/search", json={"query": "north gate"})
        assert hits.status_code == 200 and hits.json()["data"][0]["text"].startswith("The north")
    with world.http(world.bob, rag) as bob:
        for method, path, body in (
            ("GET", "/collections/north-notes", None),
            ("POST", "/collections/north-notes/search", {"query": "gate"}),
            ("DELETE", "/collections/north-notes", None),
        ):
            response = bob.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert "north-notes" in response.json()["error"]["message"]
        unknown = bob.get("/collections/never-made")
        assert unknown.status_code == 404
        assert "north-notes" not in [c["name"] for c in bob.get("/collections").json()["data"]]
    with sdk(world.gateway, world.bob) as client, pytest.raises(openai.NotFoundError):
        ask(client, "what opens?", extra_headers={"X-Switchyard-RAG": "north-notes"})
    with world.http(world.carol, rag) as carol:  # still there after bob's DELETE
        assert carol.get("/collections/north-notes").status_code == 200


# ------------------------------------------------------------------- media and videos


def test_a_media_url_is_the_teams_or_anyone_without_a_key(world: World) -> None:
    with sdk(world.gateway, world.alice) as client:
        url = client.images.generate(model="sd", prompt="a fox", size="16x16").data[0].url
    assert url and "/v1/media/" in url
    with world.http(world.bob) as other_team:
        hidden = other_team.get(url)
    assert hidden.status_code == 404
    for key in (world.alice, world.carol, None):
        with world.http(key) as client:
            shown = client.get(url)
        assert shown.status_code == 200, key
        assert shown.content.startswith(b"\x89PNG")
    with world.http("sk-not-a-key") as stranger:
        assert stranger.get(url).status_code == 401


def _finished(client: openai.OpenAI, video_id: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed") or time.monotonic() > deadline:
            return video
        time.sleep(0.02)


def test_a_video_job_is_the_teams(world: World) -> None:
    with sdk(world.gateway, world.alice) as alice:
        video = alice.videos.create(model="wan", prompt="tide", size="16x16", seconds="1")
        assert _finished(alice, video.id).status == "completed"
    with sdk(world.gateway, world.carol) as carol:
        assert carol.videos.retrieve(video.id).id == video.id
        assert video.id in [v.id for v in carol.videos.list()]
    with sdk(world.gateway, world.bob) as bob:
        with pytest.raises(openai.NotFoundError):
            bob.videos.retrieve(video.id)
        with pytest.raises(openai.NotFoundError):
            bob.videos.download_content(video.id)
        assert video.id not in [v.id for v in bob.videos.list()]
