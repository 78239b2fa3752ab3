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


def _not_in_list(node: str, name: str, value: str, *, extra_info: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": f"{name}: '{value}' not in ['a.safetensors', 'b.safetensors']",
    }
    if extra_info:
        item["extra_info"] = {"input_name": name, "received_value": value}
    return {
        "error": {"type": "prompt_outputs_failed_validation", "message": "failed", "details": ""},
        "node_errors": {node: {"errors": [item], "class_type": "CheckpointLoaderSimple"}},
    }


@pytest.mark.parametrize("extra_info", [True, False])
def test_a_file_the_server_lacks_is_a_503_without_the_servers_list(extra_info: bool) -> None:
    error = rejected(_not_in_list("4", "ckpt_name", "x.safetensors", extra_info=extra_info), "sd")
    assert isinstance(error, UpstreamError)
    assert error.http_status == 503 and error.error_code == "comfyui_missing_file"
    assert error.message == (
        "ComfyUI cannot run the workflow for 'sd': node 4 (CheckpointLoaderSimple) needs "
        "ckpt_name 'x.safetensors', which the server does not have."
    )


def test_a_value_the_request_filled_is_the_clients_400_without_the_servers_list() -> None:
    error = rejected(
        _not_in_list("4", "ckpt_name", "x.safetensors"), "sd", frozenset({("4", "ckpt_name")})
    )
    assert isinstance(error, InvalidRequest) and error.http_status == 400
    assert error.message == (
        "ComfyUI rejected the workflow for 'sd': failed; node 4 (CheckpointLoaderSimple): "
        "Value not in list: ckpt_name 'x.safetensors'"
    )


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
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": "image - Invalid image file: gone.png",
                    }
                ],
                "class_type": "LoadImage",
            }
        },
    }
    error = rejected(body, "sd")
    assert isinstance(error, InvalidRequest) and error.http_status == 400
    assert error.message == (
        "ComfyUI rejected the workflow for 'sd': Prompt outputs failed validation; node 4 "
        "(LoadImage): Custom validation failed for node: image - Invalid image file: gone.png"
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
    assert files[0].content_type == "image/png"
    assert history_outputs({"outputs": {"5": entry["outputs"]["5"]}}, ())[0].type == "temp"
    assert history_state(entry, "m") is True


@pytest.mark.parametrize(
    ("filename", "animated", "content_type", "is_video"),
    [
        ("ComfyUI_00001_.png", [True], "image/apng", True),  # SaveAnimatedPNG
        ("ComfyUI_00001_.webp", [True], "image/webp", True),  # SaveAnimatedWEBP
        ("ComfyUI_00001_.webp", [False], "image/webp", False),  # one frame: an image
        ("ComfyUI_00001_.png", None, "image/png", False),  # SaveImage
        ("video_00001_.mp4", [True], "video/mp4", True),  # SaveVideo
    ],
)
def test_the_animated_flag_makes_a_video(
    filename: str, animated: list[bool] | None, content_type: str, is_video: bool
) -> None:
    output: dict[str, Any] = {"images": [{"filename": filename, "subfolder": "", "type": "output"}]}
    if animated is not None:
        output["animated"] = animated
    (found,) = history_outputs({"outputs": {"9": output}}, ())
    assert found.animated is bool(animated and animated[0])
    assert found.content_type == content_type and found.is_video is is_video
    assert found.is_image is content_type.startswith("image/")


def test_the_prompt_ends_on_executing_null_not_on_execution_success() -> None:
    tracker = Tracker("m", total_nodes=1, prompt_id=PID)
    assert not tracker.feed(_msg("executing", node="1"))
    assert not tracker.feed(_msg("execution_success"))  # the history is not written yet
    assert not tracker.feed({"type": "executing", "data": {"node": None, "prompt_id": "other"}})
    assert tracker.feed(_msg("executing", node=None))


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
            assert body["prompt"] == {"1": {}} and body["client_id"] and body["prompt_id"]
            # a server from before client-chosen ids answers with its own: that one counts
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


def _queue_server(places: list[str]) -> tuple[Any, list[tuple[str, str, Any]]]:
    """A server whose ``GET /queue`` shows the prompt at ``places[i]`` on the i-th call
    (``running``, ``pending`` or ``gone``); records every queue call."""
    calls: list[tuple[str, str, Any]] = []
    queued = [PID]

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/prompt":
            queued[0] = json.loads(request.content)["prompt_id"]  # the client's choice
            return httpx.Response(200, json={"prompt_id": queued[0], "number": 1})
        if path in ("/queue", "/interrupt"):
            body = json.loads(request.content) if request.content else None
            calls.append((request.method, path, body))
            if request.method == "GET":
                item = [1, queued[0], {}, {}, []]
                place = places.pop(0) if places else "gone"
                return httpx.Response(
                    200,
                    json={
                        "queue_running": [item] if place == "running" else [],
                        "queue_pending": [item] if place == "pending" else [],
                    },
                )
            return httpx.Response(200)
        return httpx.Response(200, json={})

    return handler, calls


async def test_client_timeout_interrupts_the_running_prompt() -> None:
    handler, calls = _queue_server(["running"])
    with pytest.raises(UpstreamTimeout, match=r"within 0\.1s"):
        await _client(handler).run({"1": {}}, timeout_s=0.1)
    assert calls[0][:2] == ("GET", "/queue")
    assert [c[:2] for c in calls[1:]] == [("POST", "/interrupt")]
    assert calls[1][2]["prompt_id"] not in (PID, None)  # the id the client chose and sent


@pytest.mark.parametrize(
    ("places", "expected"),
    [
        (["running"], [("POST", "/interrupt", {"prompt_id": PID})]),
        (["pending", "gone"], [("POST", "/queue", {"delete": [PID]})]),
        # it started between the look and the delete: interrupted as well
        (
            ["pending", "running"],
            [("POST", "/queue", {"delete": [PID]}), ("POST", "/interrupt", {"prompt_id": PID})],
        ),
        (["gone"], []),  # finished: nothing to stop, and no untargeted interrupt
    ],
)
async def test_cancel_deletes_a_queued_prompt_and_interrupts_a_running_one(
    places: list[str], expected: list[tuple[str, str, Any]]
) -> None:
    handler, calls = _queue_server(places)
    await _client(handler).cancel(PID)
    assert [c for c in calls if c[0] == "POST"] == expected


async def test_client_rejection_and_server_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            return httpx.Response(
                400, json={"error": {"message": "Prompt has no outputs"}, "node_errors": []}
            )
        return httpx.Response(500, text="Internal Server Error")

    client = _client(handler)
    with pytest.raises(InvalidRequest, match="Prompt has no outputs"):
        await client.submit({}, "c", PID)
    with pytest.raises(UpstreamError, match="ComfyUI answered 500"):
        await client.probe()
