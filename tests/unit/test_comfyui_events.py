"""Reading ComfyUI: websocket progress, /prompt rejections, /history, and the polling client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapters.comfyui.client import ComfyClient
from adapters.comfyui.events import (
    OutputFile,
    Tracker,
    history_outputs,
    history_state,
    rejected,
)
from proxy.errors import InvalidRequest, UpstreamError, UpstreamTimeout

PID = "p-1"


def _msg(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": {"prompt_id": PID, **data}}


def test_tracker_turns_messages_into_a_rising_percentage() -> None:
    seen: list[int] = []
    tracker = Tracker("m", total_nodes=4, on_progress=seen.append, prompt_id=PID)
    assert not tracker.feed({"type": "status", "data": {"status": {}}})
    assert not tracker.feed(_msg("execution_start"))
    assert not tracker.feed(_msg("execution_cached", nodes=["1"]))
    assert not tracker.feed(_msg("executing", node="2"))
    assert not tracker.feed(_msg("progress", value=5, max=10, node="2"))
    assert not tracker.feed(
        {"type": "progress", "data": {"prompt_id": "other", "value": 9, "max": 10}}
    )
    assert not tracker.feed(_msg("executing", node="3"))
    assert not tracker.feed(_msg("executed", node="3", output={}))
    assert tracker.feed(_msg("executing", node=None))
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 75
    assert 37 in seen  # (1 cached + half of node 2) / 4


def test_tracker_raises_comfyuis_execution_error() -> None:
    tracker = Tracker("sd", total_nodes=3, prompt_id=PID)
    error = _msg("execution_error", node_id="3", node_type="KSampler", exception_message="OOM\n")
    with pytest.raises(UpstreamError) as caught:
        tracker.feed(error)
    assert caught.value.http_status == 502 and caught.value.error_code == "comfyui_execution_error"
    assert caught.value.message == (
        "ComfyUI failed running the workflow for 'sd' in node 3 (KSampler): OOM"
    )
    with pytest.raises(UpstreamError, match="interrupted"):
        tracker.feed(_msg("execution_interrupted"))


def test_rejections_carry_comfyuis_messages() -> None:
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
        },
        "node_errors": {
            "4": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "ckpt_name: 'x' not in []",
                    }
                ],
                "class_type": "CheckpointLoaderSimple",
            }
        },
    }
    error = rejected(body, "sd")
    assert isinstance(error, InvalidRequest) and error.http_status == 400
    assert error.message == (
        "ComfyUI rejected the workflow for 'sd': Prompt outputs failed validation; node 4 "
        "(CheckpointLoaderSimple): Value not in list: ckpt_name: 'x' not in []"
    )
    missing = rejected(
        {
            "error": {
                "message": "Cannot execute because node Foo does not exist.",
                "details": "Node ID '#3'",
            },
            "node_errors": {},
        },
        "sd",
    )
    assert "node Foo does not exist.: Node ID '#3'" in missing.message


def test_history_outputs_prefer_saved_files_and_wanted_nodes() -> None:
    entry = {
        "outputs": {
            "5": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]},
            "9": {
                "images": [{"filename": "a.png", "subfolder": "s", "type": "output"}],
                "animated": [False],
            },
            "12": {
                "gifs": [
                    {
                        "filename": "v.mp4",
                        "subfolder": "",
                        "type": "output",
                        "format": "video/h264-mp4",
                    }
                ]
            },
        },
        "status": {"status_str": "success", "completed": True, "messages": []},
    }
    files = history_outputs(entry, ())
    assert [f.filename for f in files] == ["a.png", "v.mp4"]
    assert history_outputs(entry, ("12",)) == [OutputFile("12", "v.mp4", "", "output")]
    assert files[1].is_video and files[0].is_image and not files[0].is_video
    assert history_outputs({"outputs": {"5": entry["outputs"]["5"]}}, ())[0].type == "temp"
    assert history_state(entry, "m") is True


def test_history_state_raises_recorded_errors() -> None:
    failed = {
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [
                [
                    "execution_error",
                    {"node_id": "3", "node_type": "KSampler", "exception_message": "boom"},
                ]
            ],
        },
    }
    with pytest.raises(UpstreamError, match="boom"):
        history_state(failed, "m")


def _client(handler: Any, **kw: Any) -> ComfyClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ComfyClient(
        "http://comfy:8188",
        http,
        model="sd",
        timeout=httpx.Timeout(5),
        headers={"x-token": "t"},
        poll_interval_s=0.01,
        websocket=False,
        **kw,
    )


async def test_polling_client_runs_a_prompt_to_its_outputs() -> None:
    polls = 0
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        seen.append(request)
        if request.url.path == "/prompt":
            body = json.loads(request.content)
            assert body["prompt"] == {"1": {}} and body["client_id"]
            return httpx.Response(200, json={"prompt_id": PID, "number": 1, "node_errors": {}})
        polls += 1
        if polls < 3:
            return httpx.Response(200, json={})
        outputs = {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}}
        return httpx.Response(200, json={PID: {"outputs": outputs, "status": {"completed": True}}})

    accepted: list[bool] = []
    files = await _client(handler).run(
        {"1": {}}, timeout_s=5, on_accepted=lambda: accepted.append(True)
    )
    assert [f.filename for f in files] == ["a.png"] and accepted == [True] and polls == 3
    assert all(r.headers["x-token"] == "t" for r in seen)


async def test_client_timeout_cancels_the_prompt() -> None:
    cancelled: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            return httpx.Response(200, json={"prompt_id": PID, "number": 1})
        if request.url.path in ("/queue", "/interrupt"):
            cancelled.append(request.url.path)
            return httpx.Response(200, json={})
        return httpx.Response(200, json={})

    with pytest.raises(UpstreamTimeout, match=r"within 0\.1s"):
        await _client(handler).run({"1": {}}, timeout_s=0.1)
    assert cancelled == ["/queue", "/interrupt"]


async def test_client_rejection_and_server_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            return httpx.Response(
                400, json={"error": {"message": "Prompt has no outputs"}, "node_errors": []}
            )
        return httpx.Response(500, text="Internal Server Error")

    client = _client(handler)
    with pytest.raises(InvalidRequest, match="Prompt has no outputs"):
        await client.submit({}, "c")
    with pytest.raises(UpstreamError, match="ComfyUI answered 500"):
        await client.probe()
