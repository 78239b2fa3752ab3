"""Two gateways on one PostgreSQL state database and one media backend (a shared
directory, or S3 through moto's S3-compatible server), driven with the official
``openai`` package: an image made through A is served by B, a video job started on A is
polled to completion and downloaded on B, another team gets 404 on either, and a job
whose runner went away is failed (``runner_lost`` after ``kill -9``, ``shutdown`` after a
clean stop) when B reads it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_comfyui import FakeComfyUI, comfy_model, serve_comfyui
from tests.support.s3 import S3Server
from tests.support.servers import RunningServer, serve_gateway, serve_process
from tests.support.tenants import seed_keys

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks Sora APIs

NORTH, SOUTH = "sk-replicas-north", "sk-replicas-south"
MASTER = "sk-replicas-master"
HEARTBEAT_S, STALE_AFTER_S = 0.2, 1.5


@dataclass
class Fleet:
    database: str
    media: dict[str, Any]
    """The ``media.store`` section both replicas use."""
    root: Path
    stored: Any
    """What the backend really holds (file names or object keys)."""

    def config(self, comfy: FakeComfyUI, data_dir: Path) -> dict[str, Any]:
        return {
            "defaults": False,
            "server": {"master_key": MASTER, "data_dir": str(data_dir)},
            "state": {"database": self.database},
            "media": {
                "store": self.media,
                "job_heartbeat_s": HEARTBEAT_S,
                "job_stale_after_s": STALE_AFTER_S,
                "job_progress_write_s": 0.1,
            },
            # PostgreSQL state means replicas: RAG (unused here) needs a Chroma server.
            "rag": {"chroma_url": "http://127.0.0.1:9"},
            "models": [
                comfy_model("sd", comfy.url, {"generate": "text-to-image.yaml"}),
                comfy_model("wan", comfy.url, {"video": "text-to-video.yaml"}),
            ],
        }


@pytest.fixture(params=["dir", "s3"])
def fleet(
    request: pytest.FixtureRequest, fresh_postgres_url: str, tmp_path: Path
) -> Iterator[Fleet]:
    seed_keys(tmp_path, {NORTH: "north", SOUTH: "south"}, database=fresh_postgres_url)
    if request.param == "dir":
        shared = tmp_path / "shared-volume"
        yield Fleet(
            fresh_postgres_url,
            {"dir": {"path": str(shared)}},
            tmp_path,
            lambda: sorted(p.name for p in shared.iterdir()) if shared.exists() else [],
        )
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = s3.new_bucket()
    yield Fleet(
        fresh_postgres_url,
        {"s3": s3.store_config(bucket, prefix="replicas/")},
        tmp_path,
        lambda: [k.removeprefix("replicas/") for k in s3.keys(bucket)],
    )


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfyUI]:
    with serve_comfyui() as fake:
        yield fake


@pytest.fixture
def pair(fleet: Fleet, comfy: FakeComfyUI) -> Iterator[tuple[RunningServer, RunningServer]]:
    comfy.reset()
    with ExitStack() as stack:
        servers = [
            stack.enter_context(serve_gateway(fleet.config(comfy, fleet.root / name)))
            for name in ("a", "b")
        ]
        yield servers[0], servers[1]
    comfy.reset()


def _sdk(server: RunningServer | str, key: str) -> openai.OpenAI:
    url = server if isinstance(server, str) else server.url
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def _until_done(client: openai.OpenAI, video_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed") or time.monotonic() > deadline:
            return video
        time.sleep(0.05)


def test_an_image_made_on_a_is_served_by_b(
    pair: tuple[RunningServer, RunningServer], fleet: Fleet
) -> None:
    a, b = pair
    with _sdk(a, NORTH) as client:
        url = client.images.generate(model="sd", prompt="a fox", size="16x16").data[0].url
    assert url is not None and url.startswith(f"{a.url}/v1/media/")
    media_id = url.rsplit("/", 1)[1]
    assert fleet.stored() == [f"{media_id}.png"]
    on_b = url.replace(a.url, b.url)
    for key in (NORTH, None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        served = httpx.get(on_b, headers=headers)
        assert served.status_code == 200, (key, served.text)
        assert served.content.startswith(b"\x89PNG")
        assert served.headers["content-type"] == "image/png"
        assert int(served.headers["content-length"]) == len(served.content)
    for server in (a, b):
        hidden = httpx.get(f"{server.url}/v1/media/{media_id}", headers={"api-key": SOUTH})
        assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "id"
    assert httpx.get(f"{b.url}/v1/media/{'A' * 32}").status_code == 404


def test_a_video_started_on_a_is_polled_and_downloaded_on_b(
    pair: tuple[RunningServer, RunningServer], fleet: Fleet, comfy: FakeComfyUI
) -> None:
    a, b = pair
    with _sdk(a, NORTH) as on_a, _sdk(b, NORTH) as on_b:
        video = on_a.videos.create(model="wan", prompt="tide", size="32x32", seconds="1")
        assert video.status in ("queued", "in_progress")
        done = _until_done(on_b, video.id)
        assert done.status == "completed" and done.progress == 100, done.error
        assert done.expires_at and done.completed_at and done.expires_at > done.completed_at
        content = on_b.videos.download_content(video.id)
        data = content.read()
        assert content.response.headers["content-type"] == "video/mp4"
        saved = [v for (_, _, name), v in comfy.files.items() if name.endswith(".mp4")]
        assert data in saved
        assert video.id in [v.id for v in on_b.videos.list()]
        with _sdk(b, SOUTH) as other:
            with pytest.raises(openai.NotFoundError):
                other.videos.retrieve(video.id)
            with pytest.raises(openai.NotFoundError):
                other.videos.download_content(video.id)
            assert video.id not in [v.id for v in other.videos.list()]
        assert len(fleet.stored()) == 1
        on_b.videos.delete(video.id)  # deleted on B: the job and its file, for A too
        with pytest.raises(openai.NotFoundError):
            on_a.videos.retrieve(video.id)
    assert fleet.stored() == []


def _running(client: openai.OpenAI, video_id: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        video = client.videos.retrieve(video_id)
        if video.status == "in_progress" or time.monotonic() > deadline:
            return video
        time.sleep(0.05)


@pytest.mark.parametrize("fleet", ["dir"], indirect=True)
def test_a_job_whose_runner_was_killed_fails_with_runner_lost_on_b(
    fleet: Fleet, tmp_path: Path
) -> None:
    with serve_comfyui() as comfy, ExitStack() as stack:
        comfy.mode = "hang"
        workdir = tmp_path / "a"
        workdir.mkdir()
        a = stack.enter_context(serve_process(fleet.config(comfy, workdir / "data"), workdir))
        b = stack.enter_context(serve_gateway(fleet.config(comfy, tmp_path / "b")))
        with _sdk(a.url, NORTH) as on_a, _sdk(b, NORTH) as on_b:
            video = on_a.videos.create(model="wan", prompt="tide", size="16x16", seconds="1")
            running = _running(on_b, video.id)
            assert running.status == "in_progress", running
            a.proc.kill()  # kill -9: no shutdown code runs
            a.proc.wait()
            lost = _until_done(on_b, video.id)
        assert lost.status == "failed"
        assert lost.error.code == "runner_lost"
        assert f"{STALE_AFTER_S:g} s" in lost.error.message
        httpx.post(f"{comfy.url}/interrupt", json={})


@pytest.mark.parametrize("fleet", ["dir"], indirect=True)
def test_a_clean_stop_of_a_fails_its_job_with_shutdown(fleet: Fleet, tmp_path: Path) -> None:
    with serve_comfyui() as comfy, serve_gateway(fleet.config(comfy, tmp_path / "b")) as b:
        comfy.mode = "hang"
        with serve_gateway(fleet.config(comfy, tmp_path / "a")) as a, _sdk(a, NORTH) as on_a:
            video = on_a.videos.create(model="wan", prompt="tide", size="16x16", seconds="1")
            with _sdk(b, NORTH) as on_b:
                assert _running(on_b, video.id).status == "in_progress"
        with _sdk(b, NORTH) as on_b:
            ended = on_b.videos.retrieve(video.id)
        assert ended.status == "failed" and ended.error.code == "shutdown"
