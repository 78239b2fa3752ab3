"""Video jobs through the official ``openai`` package (``client.videos``), served by the
comfyui adapter with the shipped image-to-video and text-to-video workflows."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.support.fake_comfyui import (
    DEPLOY,
    FakeComfyUI,
    comfy_model,
    png_bytes,
    serve_comfyui,
)
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenants import seed_keys

KEY, OTHER_KEY = "sk-videos-test", "sk-videos-other"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks Sora APIs


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfyUI]:
    with serve_comfyui() as fake:
        yield fake


def _animated(folder: Path, save_node: str) -> dict[str, Any]:
    """The shipped text-to-video workflow saving frames with ``save_node`` (an animated
    PNG or WEBP, as ComfyUI's own nodes write them) instead of an MP4."""
    template = json.loads((DEPLOY / "text-to-video.json").read_text())
    del template["10"]  # CreateVideo
    inputs: dict[str, Any] = {"images": ["9", 0], "filename_prefix": "switchyard/anim", "fps": 8.0}
    inputs |= {"compress_level": 4} if save_node == "SaveAnimatedPNG" else {}
    inputs |= {"lossless": True, "quality": 80, "method": "default"} if "WEBP" in save_node else {}
    template["11"] = {"class_type": save_node, "inputs": inputs}
    path = folder / f"{save_node}.json"
    path.write_text(json.dumps(template))
    mapping = {"prompt": "6.text", "frames": "5.length", "fps": "11.fps", "seed": "8.seed"}
    mapping |= {"width": "5.width", "height": "5.height"}
    return {"template": str(path), "inputs": mapping, "outputs": ["11"]}


@pytest.fixture(scope="module")
def gateway(
    comfy: FakeComfyUI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("data")
    models = [
        comfy_model("svd", comfy.url, {"video": "image-to-video.yaml"}),
        comfy_model("wan", comfy.url, {"video": "text-to-video.yaml"}),
        comfy_model("wan-apng", comfy.url, {"video": _animated(data_dir, "SaveAnimatedPNG")}),
        comfy_model("wan-webp", comfy.url, {"video": _animated(data_dir, "SaveAnimatedWEBP")}),
        comfy_model("wan-slow", comfy.url, {"video": "text-to-video.yaml"}, timeout_s=1),
        comfy_model("sd", comfy.url, {"generate": "text-to-image.yaml"}),
    ]
    seed_keys(data_dir, {OTHER_KEY: "team_other"})  # video jobs belong to a team
    server = {"api_keys": [KEY], "data_dir": str(data_dir)}
    with serve_gateway({"server": server, "models": models}) as running:
        yield running


def _sdk(gateway: RunningServer, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def client(gateway: RunningServer, comfy: FakeComfyUI) -> Iterator[openai.OpenAI]:
    comfy.reset()
    with _sdk(gateway) as sdk:
        yield sdk
    comfy.reset()


def _finish(client: openai.OpenAI, video_id: str, timeout: float = 20) -> Any:
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        video = client.videos.retrieve(video_id)
        seen.append((video.status, video.progress))
        if video.status in ("completed", "failed") or time.monotonic() > deadline:
            return video, seen
        time.sleep(0.02)


FRAME = png_bytes((48, 32), (200, 100, 50, 255))


def test_image_to_video_lifecycle_to_content(client: openai.OpenAI, comfy: FakeComfyUI) -> None:
    video = client.videos.create(
        model="svd",
        prompt="waves on a beach",
        input_reference=("frame.png", FRAME, "image/png"),
        seconds="4",
        size="64x48",
        extra_body={"fps": 2},
    )
    assert video.object == "video" and video.id.startswith("video_")
    assert video.status in ("queued", "in_progress") and video.model == "svd"
    assert video.seconds == "4" and video.size == "64x48" and video.prompt == "waves on a beach"
    done, seen = _finish(client, video.id)
    assert done.status == "completed" and done.progress == 100, seen
    assert done.completed_at and done.expires_at and done.expires_at > done.completed_at
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    workflow = comfy.prompts[-1]
    assert workflow["3"]["inputs"]["video_frames"] == 8  # 4 s x 2 fps
    assert workflow["3"]["inputs"]["fps"] == 2 and workflow["7"]["inputs"]["fps"] == 2
    assert workflow["2"]["inputs"]["image"] in comfy.uploads
    content = client.videos.download_content(video.id)
    assert content.response.headers["content-type"] == "video/mp4"
    data = content.read()
    assert data[4:8] == b"ftyp"
    saved = [v for (_, _, name), v in comfy.files.items() if name.endswith(".mp4")]
    assert data in saved
    if shutil.which("ffprobe"):  # the double encodes real H.264 when ffmpeg is there
        probe = [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=nb_frames,width",
            "-of",
            "csv",
            "-",
        ]
        assert subprocess.run(probe, input=data, capture_output=True).stdout == b"stream,64,8\n"


def test_text_to_video_without_reference(client: openai.OpenAI, comfy: FakeComfyUI) -> None:
    video = client.videos.create(
        model="wan", prompt="a paper boat", size="32x32", extra_body={"frames": 5}
    )
    done, _ = _finish(client, video.id)
    assert done.status == "completed" and done.size == "32x32"
    workflow = comfy.prompts[-1]
    assert workflow["6"]["inputs"]["text"] == "a paper boat"
    assert workflow["5"]["inputs"]["length"] == 5


def test_json_body_with_a_data_url_reference(gateway: RunningServer, comfy: FakeComfyUI) -> None:
    body = {
        "model": "svd",
        "prompt": "still life",
        "seconds": 1,
        "input_reference": {
            "image_url": "data:image/png;base64," + base64.b64encode(FRAME).decode()
        },
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    created = httpx.post(f"{gateway.url}/v1/videos", json=body, headers=headers)
    assert created.status_code == 200, created.text
    assert created.headers["openai-poll-after-ms"]
    with _sdk(gateway) as client:
        done, _ = _finish(client, created.json()["id"])
    assert done.status == "completed" and done.size == "1024x576"  # the template's size


def test_image_to_video_without_reference_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(model="svd", prompt="x")
    assert caught.value.body["param"] == "input_reference"  # type: ignore[index]


def test_model_without_a_video_workflow_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(model="sd", prompt="x")
    assert caught.value.code == "unsupported_capability" and "video" in caught.value.message


def test_bad_seconds_and_unknown_video(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(model="wan", prompt="x", seconds="forever")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "seconds"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve("video_" + "0" * 32)


def test_execution_error_fails_the_job_with_comfyuis_message(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    comfy.mode = "execution_error"
    video = client.videos.create(model="wan", prompt="x", size="16x16", seconds="1")
    done, _ = _finish(client, video.id)
    assert done.status == "failed"
    assert done.error.code == "comfyui_execution_error" and "out of memory" in done.error.message
    with pytest.raises(openai.BadRequestError, match="failed"):
        client.videos.download_content(video.id)


def test_never_finishing_job_fails_with_a_timeout(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    comfy.mode = "hang"
    video = client.videos.create(model="wan-slow", prompt="x", size="16x16", seconds="1")
    time.sleep(0.2)
    running = client.videos.retrieve(video.id)
    assert running.status == "in_progress" and 0 <= running.progress < 100
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.download_content(video.id)
    assert caught.value.code == "video_not_ready"
    done, _ = _finish(client, video.id)
    assert done.status == "failed" and done.error.code == "upstream_timeout"
    assert comfy.interrupted == comfy.prompt_ids


def test_jobs_are_private_to_their_team_and_can_be_listed_and_deleted(
    client: openai.OpenAI, gateway: RunningServer
) -> None:
    video = client.videos.create(model="wan", prompt="mine", size="16x16", seconds="1")
    _finish(client, video.id)
    with _sdk(gateway, OTHER_KEY) as other:
        with pytest.raises(openai.NotFoundError):
            other.videos.retrieve(video.id)
        with pytest.raises(openai.NotFoundError):
            other.videos.download_content(video.id)
        assert video.id not in [v.id for v in other.videos.list()]
    assert video.id in [v.id for v in client.videos.list()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deleted = client.videos.delete(video.id)
    assert deleted.deleted is True and deleted.id == video.id
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)


@pytest.mark.parametrize(
    ("model", "content_type", "metadata"),
    [("wan-apng", "image/apng", b"comf"), ("wan-webp", "image/webp", b"EXIF")],
)
def test_animated_png_and_webp_outputs_are_the_video_without_the_workflow(
    client: openai.OpenAI, comfy: FakeComfyUI, model: str, content_type: str, metadata: bytes
) -> None:
    video = client.videos.create(
        model=model, prompt="a secret paper boat", size="32x16", extra_body={"frames": 3}
    )
    done, _ = _finish(client, video.id)
    assert done.status == "completed", done.error
    content = client.videos.download_content(video.id)
    assert content.response.headers["content-type"] == content_type
    data = content.read()
    extension = ".png" if model == "wan-apng" else ".webp"
    (saved,) = [
        data
        for (_, _, name), data in comfy.files.items()
        if name.startswith("anim_") and name.endswith(extension)
    ]
    assert metadata in saved and b"secret paper boat" in saved  # ComfyUI embedded the prompt
    assert metadata not in data and b"secret paper boat" not in data
    with Image.open(io.BytesIO(data)) as shown, Image.open(io.BytesIO(saved)) as original:
        assert shown.n_frames == original.n_frames == 3  # type: ignore[attr-defined]
        for frame in range(3):
            shown.seek(frame)
            original.seek(frame)
            assert shown.convert("RGB").tobytes() == original.convert("RGB").tobytes()
