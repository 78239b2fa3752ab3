"""Images through the official ``openai`` package, served by the comfyui adapter with the
shipped deploy/comfyui workflows, against the protocol-faithful ComfyUI double."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.support.fake_comfyui import DEPLOY, FakeComfyUI, comfy_model, png_bytes, serve_comfyui
from tests.support.fake_openai import wait_until
from tests.support.servers import RunningServer, free_port, serve_gateway

KEY = "sk-images-test"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_variation
IMAGE_WORKFLOWS = {
    "generate": "text-to-image.yaml",
    "edit": "image-edit.yaml",
    "variation": "variation.yaml",
}


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfyUI]:
    with serve_comfyui() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    comfy: FakeComfyUI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("data")
    bad = json.loads((DEPLOY / "text-to-image.json").read_text())
    bad["4"]["inputs"]["ckpt_name"] = "not-installed.safetensors"
    bad_path = data_dir / "bad-checkpoint.json"
    bad_path.write_text(json.dumps(bad))
    models = [
        comfy_model("sd", comfy.url, IMAGE_WORKFLOWS),
        comfy_model("sd-video-only", comfy.url, {"video": "text-to-video.yaml"}),
        comfy_model(
            "sd-broken",
            comfy.url,
            {"generate": {"template": str(bad_path), "inputs": {"prompt": "6.text"}}},
        ),
    ]
    config = {
        "server": {"api_keys": [KEY], "data_dir": str(data_dir), "max_body_mb": 1},
        "models": models,
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningServer, comfy: FakeComfyUI) -> Iterator[openai.OpenAI]:
    comfy.reset()
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=30) as sdk:
        yield sdk
    comfy.reset()


def test_generation_urls_download_real_pngs(client: openai.OpenAI, comfy: FakeComfyUI) -> None:
    result = client.images.generate(model="sd", prompt="a lighthouse", n=2, size="64x48")
    assert len(result.data) == 2 and result.size == "64x48" and result.output_format == "png"
    workflow = comfy.prompts[-1]
    assert workflow["6"]["inputs"]["text"] == "a lighthouse"
    assert workflow["5"]["inputs"] == {"width": 64, "height": 48, "batch_size": 2}
    bodies = set()
    for item in result.data:
        assert item.url and item.url.startswith("http://127.0.0.1:")
        response = httpx.get(item.url)  # no API key: the unguessable id is the capability
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert _open(response.content).size == (64, 48)
        bodies.add(response.content)
    assert len(bodies) == 2


def test_generation_b64_jpeg_with_seed_steps_and_quality(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    extra = {"seed": 1234, "negative_prompt": "fog", "steps": 3}
    first = client.images.generate(
        model="sd",
        prompt="a harbour",
        response_format="b64_json",
        output_format="jpeg",
        extra_body=extra,
    )
    workflow = comfy.prompts[-1]
    assert workflow["3"]["inputs"]["seed"] == 1234 and workflow["3"]["inputs"]["steps"] == 3
    assert workflow["7"]["inputs"]["text"] == "fog"
    image = _open(base64.b64decode(first.data[0].b64_json or ""))
    assert image.format == "JPEG" and image.size == (512, 512)  # the template's own size
    again = client.images.generate(
        model="sd", prompt="a harbour", response_format="b64_json", extra_body=extra
    )
    assert _open(base64.b64decode(again.data[0].b64_json or "")).format == "PNG"
    client.images.generate(
        model="sd", prompt="x", quality="hd", style="vivid", response_format="b64_json"
    )
    assert comfy.prompts[-1]["3"]["inputs"]["steps"] == 30  # quality_steps in the spec
    assert comfy.prompts[-1]["6"]["inputs"]["text"].startswith("x, vivid colours")  # style_suffix


def test_edit_with_mask_repaints_only_the_transparent_area(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half transparent: edit there
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    result = client.images.edit(
        model="sd",
        image=("wall.png", png_bytes((64, 64), (255, 0, 0, 255)), "image/png"),
        mask=("mask.png", buffer.getvalue(), "image/png"),
        prompt="a blue door",
        response_format="b64_json",
    )
    edited = _open(base64.b64decode(result.data[0].b64_json or "")).convert("RGB")
    assert edited.size == (64, 64) and result.size == "64x64"
    assert edited.getpixel((60, 10)) == (255, 0, 0)  # outside the mask: untouched
    assert edited.getpixel((2, 2)) != (255, 0, 0)  # inside: repainted
    workflow = comfy.prompts[-1]
    assert workflow["1"]["inputs"]["image"] in comfy.uploads
    assert workflow["2"]["inputs"]["image"] in comfy.uploads
    assert workflow["1"]["inputs"]["image"].startswith("switchyard/")


def test_variations(client: openai.OpenAI, comfy: FakeComfyUI) -> None:
    result = client.images.create_variation(
        model="sd",
        image=("photo.png", png_bytes((80, 60), (0, 128, 0, 255)), "image/png"),
        n=2,
        size="256x256",
    )
    assert len(result.data) == 2
    for item in result.data:
        assert _open(httpx.get(item.url or "").content).size == (256, 256)
    assert comfy.prompts[-1]["11"]["inputs"]["amount"] == 2


def test_edit_without_mask_when_the_workflow_needs_one(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model="sd",
            image=("a.png", png_bytes((32, 32), (1, 2, 3, 255)), "image/png"),
            prompt="x",
        )
    assert caught.value.body["param"] == "mask"  # type: ignore[index]
    assert "mask" in caught.value.message


def test_non_image_upload_is_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            model="sd",
            image=("notes.txt", b"these are not pixels", "image/png"),
            mask=("mask.png", png_bytes((32, 32), (0, 0, 0, 0)), "image/png"),
            prompt="x",
        )
    assert "notes.txt" in caught.value.message
    assert caught.value.body["param"] == "image"  # type: ignore[index]


def test_edit_without_any_image_is_400(gateway: RunningServer) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/images/edits",
        data={"model": "sd", "prompt": "x"},
        files={"mask": ("m.png", png_bytes((8, 8), (0, 0, 0, 0)), "image/png")},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "image"


def test_mask_of_another_size_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="same size"):
        client.images.edit(
            model="sd",
            image=("a.png", png_bytes((32, 32), (1, 2, 3, 255)), "image/png"),
            mask=("m.png", png_bytes((16, 16), (0, 0, 0, 0)), "image/png"),
            prompt="x",
        )


def test_oversized_upload_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.create_variation(
            model="sd", image=("big.png", b"\0" * (2 << 20), "image/png")
        )
    assert caught.value.status_code == 413


def test_model_without_the_capability_is_a_400_that_says_so(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="sd-video-only", prompt="x")
    assert "does not support images" in caught.value.message
    assert caught.value.code == "unsupported_capability"


def test_a_missing_checkpoint_is_503_naming_it_and_the_model_is_not_ready(
    client: openai.OpenAI, gateway: RunningServer
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="sd-broken", prompt="x")
    assert caught.value.status_code == 503
    assert caught.value.code == "comfyui_missing_file"
    message = caught.value.body["message"]  # type: ignore[index]
    assert message == (
        "ComfyUI cannot run the workflow for 'sd-broken': node 4 (CheckpointLoaderSimple) "
        "needs ckpt_name 'not-installed.safetensors', which the server does not have."
    )
    state = _ready(gateway, "sd-broken")
    assert state["ready"] is False
    assert state["deployments"][0]["reason"] == message
    assert _ready(gateway, "sd")["ready"] is True  # the server itself is fine


def test_execution_error_is_502_with_comfyuis_message(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    comfy.mode = "execution_error"
    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(model="sd", prompt="x")
    assert caught.value.status_code == 502
    assert "out of memory" in caught.value.message and "KSampler" in caught.value.message


def test_polling_history_when_the_websocket_is_unavailable(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    comfy.websocket = False
    result = client.images.generate(
        model="sd", prompt="x", size="32x32", response_format="b64_json"
    )
    assert _open(base64.b64decode(result.data[0].b64_json or "")).size == (32, 32)


def test_media_path_traversal_is_refused(gateway: RunningServer, tmp_path: Path) -> None:
    attempts = [
        "/v1/media/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/media/%2e%2e",
        "/v1/media/....//....//etc/passwd",
        "/v1/media/" + "A" * 32,  # well-formed, never issued
        "/v1/media/" + "A" * 31 + "%00",
    ]
    with httpx.Client(base_url=gateway.url) as raw:
        for path in attempts:
            response = raw.send(raw.build_request("GET", httpx.URL(gateway.url + path)))
            assert response.status_code == 404, path
            assert "root:" not in response.text


@pytest.fixture
def own_gateway() -> Iterator[Callable[[dict[str, Any]], RunningServer]]:
    with ExitStack() as stack:

        def start(config: dict[str, Any]) -> RunningServer:
            # These servers have no keys: readiness details are asked for in the config.
            server = {"public_health_details": True, **config.get("server", {})}
            return stack.enter_context(serve_gateway({**config, "server": server}))

        yield start


def _generation_error(server: RunningServer) -> openai.APIStatusError:
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        sdk.images.generate(model="sd", prompt="x")
    return caught.value


def _ready(server: RunningServer, model: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}  # details need a key where keys are set
    body = httpx.get(f"{server.url}/health/ready", headers=headers).json()
    return body["models"][model]  # type: ignore[no-any-return]


def test_comfyui_going_away_mid_job_is_502_and_readiness_shows_it(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        server = own_gateway(
            {
                "server": {"data_dir": str(tmp_path)},
                "models": [comfy_model("sd", comfy.url, IMAGE_WORKFLOWS)],
            }
        )
        assert _ready(server, "sd")["ready"] is True
        comfy.mode = "vanish"
        error = _generation_error(server)
        assert error.status_code == 502
        assert "went away" in error.message
        state = _ready(server, "sd")
        assert state["ready"] is False and "went away" in state["deployments"][0]["reason"]


def test_unreachable_comfyui_is_502_and_not_ready(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    server = own_gateway(
        {
            "server": {"data_dir": str(tmp_path)},
            "models": [comfy_model("sd", dead, IMAGE_WORKFLOWS)],
        }
    )
    state = _ready(server, "sd")
    assert state["ready"] is False and "not answering" in state["deployments"][0]["reason"]
    error = _generation_error(server)
    assert error.status_code == 502 and error.code == "upstream_unavailable"


def test_job_that_never_finishes_times_out_and_is_cancelled(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        model = comfy_model("sd", comfy.url, IMAGE_WORKFLOWS, timeout_s=0.5)
        server = own_gateway({"server": {"data_dir": str(tmp_path)}, "models": [model]})
        comfy.mode = "hang"
        error = _generation_error(server)
        assert error.status_code == 504
        assert "did not finish" in error.message and "0.5s" in error.message
        assert comfy.interrupted == comfy.prompt_ids  # the running prompt was stopped
        assert comfy.deleted == []


def test_retention_deletes_media(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        server = own_gateway(
            {
                "server": {
                    "data_dir": str(tmp_path),
                    "media_retention_s": 0.6,
                    "media_sweep_interval_s": 0.1,
                    "public_base_url": "https://images.example.com/ai",
                },
                "models": [comfy_model("sd", comfy.url, IMAGE_WORKFLOWS)],
            }
        )
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk:
            url = sdk.images.generate(model="sd", prompt="x", size="16x16").data[0].url or ""
        assert url.startswith("https://images.example.com/ai/v1/media/")
        local = server.url + url.removeprefix("https://images.example.com/ai")
        assert httpx.get(local).status_code == 200
        media_id = url.rsplit("/", 1)[1]
        stored = sorted(p.name for p in (tmp_path / "media").iterdir())
        assert stored == [f"{media_id}.png"]  # its owning team is in the state store
        deadline = time.monotonic() + 5
        while list((tmp_path / "media").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((tmp_path / "media").iterdir()) == []
        assert httpx.get(local).status_code == 404


def _text_chunks(data: bytes) -> dict[str, str]:
    with _open(data) as image:
        return dict(image.text)  # type: ignore[attr-defined]


def _saved_pngs(comfy: FakeComfyUI) -> list[bytes]:
    return [data for (_, _, name), data in comfy.files.items() if name.endswith(".png")]


def test_returned_images_carry_no_workflow_and_keep_their_pixels(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    b64 = client.images.generate(
        model="sd", prompt="a secret lighthouse", size="32x24", response_format="b64_json"
    )
    url = client.images.generate(model="sd", prompt="a secret lighthouse", size="32x24")
    saved = {_open(data).tobytes(): data for data in _saved_pngs(comfy)}
    for returned in (
        base64.b64decode(b64.data[0].b64_json or ""),
        httpx.get(url.data[0].url or "").content,
    ):
        assert _text_chunks(returned) == {}
        assert b"secret lighthouse" not in returned and b"ckpt_name" not in returned
        original = saved[_open(returned).tobytes()]  # the same pixels ComfyUI saved
        assert "secret lighthouse" in _text_chunks(original)["prompt"]  # it did embed them
        assert _open(returned).size == (32, 24)


def test_keep_metadata_returns_the_images_as_comfyui_saved_them(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        model = comfy_model("sd", comfy.url, IMAGE_WORKFLOWS, keep_metadata=True)
        server = own_gateway({"server": {"data_dir": str(tmp_path)}, "models": [model]})
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk:
            b64 = sdk.images.generate(model="sd", prompt="kept", response_format="b64_json")
            url = sdk.images.generate(model="sd", prompt="kept")
        returned = [
            base64.b64decode(b64.data[0].b64_json or ""),
            httpx.get(url.data[0].url or "").content,
        ]
        assert sorted(returned) == sorted(_saved_pngs(comfy))  # byte for byte
        assert json.loads(_text_chunks(returned[0])["prompt"])["6"]["inputs"]["text"] == "kept"


def test_the_history_is_read_once_after_the_last_message(
    client: openai.OpenAI, comfy: FakeComfyUI
) -> None:
    for _ in range(3):
        client.images.generate(model="sd", prompt="x", size="16x16", response_format="b64_json")
    assert len(comfy.prompt_ids) == 3
    assert comfy.history_reads == comfy.prompt_ids  # no poll found it missing first


def _start_generation(server: RunningServer, prompt: str) -> socket.socket:
    """Send a generation request on a raw connection, to be closed mid-way."""
    body = json.dumps({"model": "sd", "prompt": prompt, "size": "16x16"}).encode()
    head = (
        f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", server.port))
    connection.sendall(head.encode() + body)
    return connection


def test_a_client_that_leaves_cancels_its_prompt_queued_or_running(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        model = comfy_model("sd", comfy.url, IMAGE_WORKFLOWS)
        server = own_gateway({"server": {"data_dir": str(tmp_path)}, "models": [model]})
        comfy.mode = "hang"
        running = _start_generation(server, "first")
        assert wait_until(lambda: comfy.running is not None)
        queued = _start_generation(server, "second")
        assert wait_until(lambda: len(comfy.pending) == 1)
        first, second = comfy.prompt_ids
        queued.close()
        assert wait_until(lambda: comfy.deleted == [second])
        assert comfy.interrupted == [] and comfy.running[1] == first  # type: ignore[index]
        running.close()
        assert wait_until(lambda: comfy.interrupted == [first])
        assert wait_until(lambda: first in comfy.history)
        assert comfy.history[first]["status"]["status_str"] == "error"
        assert comfy.deleted == [second] and second not in comfy.history


def test_an_interrupted_prompt_stops_at_the_next_step_and_saves_nothing(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    """Not a fault mode: an ordinary slow run, stopped by the interrupt the gateway sends
    when its client leaves (ComfyUI checks for it before each sampler step)."""
    with serve_comfyui() as comfy:
        model = comfy_model("sd", comfy.url, IMAGE_WORKFLOWS)
        server = own_gateway({"server": {"data_dir": str(tmp_path)}, "models": [model]})
        comfy.step_delay, comfy.max_steps = 0.2, 200
        running = _start_generation(server, "slow")
        assert wait_until(lambda: comfy.running is not None)
        [prompt_id] = comfy.prompt_ids
        running.close()
        assert wait_until(lambda: prompt_id in comfy.history)
        entry = comfy.history[prompt_id]
        assert comfy.interrupted == [prompt_id]
        assert entry["status"]["status_str"] == "error"
        assert entry["status"]["completed"] is False
        assert [kind for kind, _ in entry["status"]["messages"]][-1] == "execution_interrupted"
        assert entry["outputs"] == {}
        assert [key for key in comfy.files if key[0] == "output"] == []


def test_a_missing_checkpoint_marks_that_model_not_ready_until_it_runs_again(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        models = [
            comfy_model("sd", comfy.url, IMAGE_WORKFLOWS),
            comfy_model("wan", comfy.url, {"video": "text-to-video.yaml"}),
        ]
        server = own_gateway({"server": {"data_dir": str(tmp_path)}, "models": models})
        comfy.models["ckpt_name"].remove("v1-5-pruned-emaonly-fp16.safetensors")
        error = _generation_error(server)
        assert error.status_code == 503 and error.code == "comfyui_missing_file"
        message = error.body["message"]  # type: ignore[index]
        assert "node 4 (CheckpointLoaderSimple)" in message
        assert "'v1-5-pruned-emaonly-fp16.safetensors'" in message
        assert "512-inpainting" not in message  # the server's own files are not listed
        state = _ready(server, "sd")
        assert state["ready"] is False and state["deployments"][0]["reason"] == message
        assert _ready(server, "wan")["ready"] is True
        comfy.models["ckpt_name"].append("v1-5-pruned-emaonly-fp16.safetensors")
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk:
            sdk.images.generate(model="sd", prompt="x", size="16x16")
        assert _ready(server, "sd")["ready"] is True


def test_models_of_one_server_share_its_health_and_failed_uploads_count(
    own_gateway: Callable[[dict[str, Any]], RunningServer], tmp_path: Path
) -> None:
    with serve_comfyui() as comfy:
        models = [comfy_model(n, comfy.url, IMAGE_WORKFLOWS) for n in ("sd", "sd-twin")]
        server = own_gateway({"server": {"data_dir": str(tmp_path)}, "models": models})
        assert _ready(server, "sd")["ready"] is True and _ready(server, "sd-twin")["ready"]
        comfy.mode = "upload_error"
        with (
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk,
            pytest.raises(openai.APIStatusError) as caught,
        ):
            sdk.images.create_variation(
                model="sd", image=("a.png", png_bytes((16, 16), (1, 2, 3, 255)), "image/png")
            )
        assert caught.value.status_code == 502
        reason = f"ComfyUI at {comfy.url} answered 500 to /upload/image"
        for name in ("sd", "sd-twin"):  # the twin knows at once, without a probe of its own
            state = _ready(server, name)
            assert state["ready"] is False and state["deployments"][0]["reason"] == reason
        comfy.mode = "ok"
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk:
            sdk.images.generate(model="sd-twin", prompt="x", size="16x16")
        assert _ready(server, "sd")["ready"] is True and _ready(server, "sd-twin")["ready"]
