"""Readiness, deployment health and the truthfulness of request metrics, on the real server.

``/health/ready`` says only ready / not ready to anonymous callers; details need a key
(or ``server.public_health_details``). Readiness depends only on ``required`` models;
``/health/deployments`` shows what recent requests and active probes found.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import AUTH, CLIENT_KEY, UPSTREAM_KEY, model_entry, sdk
from tests.e2e.test_gateway_ops import metric
from tests.support.fake_comfyui import comfy_model, png_bytes, serve_comfyui
from tests.support.fake_openai import FakeOpenAI, Fault, status_fault, wait_until
from tests.support.servers import RunningServer, free_port, serve_asgi, serve_gateway

Start = Callable[..., RunningServer]
USER = [{"role": "user", "content": "hi"}]
MISSING_GGUF = "/nonexistent/switchyard-test/model.gguf"


def local_missing(name: str, **extra: Any) -> dict[str, Any]:
    """A local model whose file does not exist: its adapter reports it not ready."""
    return {"name": name, "adapter": "llamacpp", "path": MISSING_GGUF, **extra}


def ready(server: RunningServer, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{server.url}/health/ready", headers=headers, timeout=10)


def deployment_health(server: RunningServer, model: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/health/deployments", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return response.json()["models"][model]["deployments"][0]  # type: ignore[no-any-return]


def upstream_errors(text: str, deployment: str) -> float:
    """Every ``switchyard_upstream_errors_total`` sample of one deployment, summed."""
    prefix = f'switchyard_upstream_errors_total{{deployment="{deployment}",'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


# ------------------------------------------------------------------ who sees what


def test_anonymous_readiness_is_only_the_status(gateway: RunningServer) -> None:
    for headers in (None, {"Authorization": "Bearer sk-wrong"}):
        response = ready(gateway, headers)
        assert response.status_code == 200
        assert response.json() == {"status": "ready"}


def test_keyed_readiness_has_the_details(gateway: RunningServer) -> None:
    response = ready(gateway, AUTH)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["config"] == "<test>"
    assert body["reasons"] == []
    assert set(body["models"]) == {"gpt-test", "embed-test", "picky"}
    model = body["models"]["gpt-test"]
    assert model["required"] is False and model["ready"] is True
    assert model["deployments"][0]["deployment"] == "openai:127.0.0.1/upstream-gpt"


def test_public_details_never_show_the_config_path(start_gateway: Start, fake_url: str) -> None:
    gateway = start_gateway([model_entry("m", "up", fake_url)], public_health_details=True)

    body = ready(gateway).json()

    assert body["status"] == "ready"
    assert set(body["models"]) == {"m"}
    assert "config" not in body
    assert httpx.get(f"{gateway.url}/health/deployments").status_code == 200


def test_deployments_need_a_key_or_public_details(
    gateway: RunningServer, start_gateway: Start, fake_url: str
) -> None:
    anonymous = httpx.get(f"{gateway.url}/health/deployments")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{gateway.url}/health/deployments", headers=AUTH).status_code == 200

    keyless = start_gateway([model_entry("m", "up", fake_url)])
    closed = httpx.get(f"{keyless.url}/health/deployments")
    assert closed.status_code == 403
    assert "public_health_details" in closed.json()["error"]["message"]
    assert ready(keyless).json() == {"status": "ready"}


# -------------------------------------------------------------- required models


def test_an_optional_model_that_is_down_leaves_the_process_ready(
    start_gateway: Start, fake_url: str
) -> None:
    gateway = start_gateway(
        [model_entry("chat", "up", fake_url, required=True), local_missing("optional")],
        api_keys=[CLIENT_KEY],
    )

    assert ready(gateway).status_code == 200
    body = ready(gateway, AUTH).json()
    assert body["status"] == "ready"
    assert body["models"]["optional"]["ready"] is False
    assert body["models"]["optional"]["deployments"][0]["status"] == "unhealthy"
    assert body["models"]["optional"]["deployments"][0]["reason"].startswith("model file not found")


def test_a_required_model_that_is_down_makes_the_process_not_ready(
    start_gateway: Start, fake_url: str
) -> None:
    gateway = start_gateway(
        [model_entry("chat", "up", fake_url), local_missing("needed", required=True)],
        api_keys=[CLIENT_KEY],
    )

    anonymous = ready(gateway)
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "not_ready"}
    keyed = ready(gateway, AUTH)
    assert keyed.status_code == 503
    assert keyed.json()["reasons"] == ["required model 'needed' has no usable deployment"]
    assert keyed.json()["models"]["needed"]["required"] is True


def test_a_required_model_with_one_usable_deployment_is_ready(
    start_gateway: Start, fake_url: str
) -> None:
    gateway = start_gateway(
        [local_missing("m", required=True), model_entry("m", "up", fake_url)],
        api_keys=[CLIENT_KEY],
    )

    body = ready(gateway, AUTH).json()
    assert body["status"] == "ready"
    assert [d["ready"] for d in body["models"]["m"]["deployments"]] == [False, True]


def test_a_draining_process_is_not_ready(start_gateway: Start, fake_url: str) -> None:
    gateway = start_gateway([model_entry("m", "up", fake_url)], api_keys=[CLIENT_KEY])
    assert ready(gateway).status_code == 200

    gateway.app.app.state.switchyard.drain.begin()

    assert ready(gateway).status_code == 503
    assert ready(gateway).json() == {"status": "not_ready"}
    assert ready(gateway, AUTH).json()["reasons"] == ["draining: the process is shutting down"]


# ------------------------------------------------------------ passive health


def test_failing_requests_make_a_deployment_unhealthy_until_one_succeeds(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["flaky"] = status_fault(500, f"upstream broke; key {UPSTREAM_KEY} was fine")
    gateway = start_gateway(
        [model_entry("m", "flaky", fake_url, required=True)],
        api_keys=[CLIENT_KEY],
        health_window=3,
    )
    assert deployment_health(gateway, "m")["status"] == "unknown"

    with sdk(gateway) as client:
        for attempt in range(1, 4):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="m", messages=USER)
            found = deployment_health(gateway, "m")
            assert found["consecutive_failures"] == attempt
            assert found["status"] == ("unhealthy" if attempt == 3 else "cooling_down")

        assert found["recent"] == {"calls": 3, "failures": 3}
        assert found["last_success_at"] is None
        assert found["cooldown_remaining_s"] > 0
        error = found["last_error"]
        assert error["type"] == "UpstreamError" and error["code"] == "upstream_error"
        assert error["message"] == "Upstream error 500: upstream broke; key *** was fine"
        # No probe: request failures alone never take the process out of rotation
        # (out of rotation, no request could bring it back).
        assert found["ready"] is True
        assert ready(gateway).status_code == 200
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert upstream_errors(metrics, "openai:127.0.0.1/flaky") == 3

        fake.faults.clear()
        assert client.chat.completions.create(model="m", messages=USER).choices

    recovered = deployment_health(gateway, "m")
    assert recovered["status"] == "healthy"
    assert recovered["consecutive_failures"] == 0
    assert recovered["recent"] == {"calls": 3, "failures": 2}
    assert recovered["last_success_at"] is not None
    assert recovered["cooldown_remaining_s"] == 0
    assert recovered["last_error"]["type"] == "UpstreamError"  # kept for the operator


def test_a_client_error_from_the_upstream_is_not_a_deployment_failure(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["strict"] = status_fault(
        400, "Unsupported parameter: 'foo'", error_type="invalid_request_error", param="foo"
    )
    gateway = start_gateway([model_entry("m", "strict", fake_url)], api_keys=[CLIENT_KEY])

    with sdk(gateway) as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=USER)

    assert upstream_errors(httpx.get(f"{gateway.url}/metrics").text, "openai:127.0.0.1/strict") == 0
    found = deployment_health(gateway, "m")
    assert found["status"] == "unknown"
    assert found["recent"] == {"calls": 0, "failures": 0}
    assert found["last_error"] is None


def test_a_missing_mask_is_not_counted_as_an_upstream_error(tmp_path: Path) -> None:
    with serve_comfyui() as comfy:
        config = {
            "server": {"data_dir": str(tmp_path), "api_keys": [CLIENT_KEY]},
            "models": [comfy_model("sd", comfy.url, {"edit": "image-edit.yaml"})],
        }
        with serve_gateway(config) as gateway:
            with sdk(gateway) as client, pytest.raises(openai.BadRequestError) as caught:
                client.images.edit(
                    model="sd",
                    image=("i.png", png_bytes((32, 32), (1, 2, 3, 255)), "image/png"),
                    prompt="x",
                )
            assert caught.value.body["param"] == "mask"  # type: ignore[index]
            metrics = httpx.get(f"{gateway.url}/metrics").text
            assert upstream_errors(metrics, "comfyui:127.0.0.1/sd") == 0
            assert deployment_health(gateway, "sd")["consecutive_failures"] == 0


# -------------------------------------------------------------- active probes


def test_a_probe_marks_an_unreachable_upstream_unhealthy_and_sees_it_recover(
    start_gateway: Start,
) -> None:
    port = free_port()
    gateway = start_gateway(
        [
            model_entry(
                "m",
                "up",
                f"http://127.0.0.1:{port}/v1",
                required=True,
                health_probe_interval_s=0.05,
            )
        ],
        api_keys=[CLIENT_KEY],
        health_window=2,
    )

    assert wait_until(lambda: deployment_health(gateway, "m")["status"] == "unhealthy", 20)
    found = deployment_health(gateway, "m")
    assert found["last_error"]["type"] == "UpstreamUnavailable"
    assert found["probe_interval_s"] == 0.05
    assert found["ready"] is False
    assert ready(gateway).json() == {"status": "not_ready"}
    assert ready(gateway, AUTH).json()["reasons"] == ["required model 'm' has no usable deployment"]

    upstream = FakeOpenAI()
    with serve_asgi(upstream, port=port):
        assert wait_until(lambda: ready(gateway).status_code == 200, 20)
        assert deployment_health(gateway, "m")["status"] == "healthy"
    probes = upstream.received("/v1/models")
    assert probes and all(p.method == "GET" for p in probes)
    assert probes[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert upstream.received("/v1/chat/completions") == []  # no client request was needed


def test_a_probed_deployment_that_never_answered_is_unhealthy_from_its_first_failure(
    start_gateway: Start,
) -> None:
    """With a long window, the passive rule alone would call it healthy for ten probes."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    gateway = start_gateway(
        [model_entry("m", "up", url, required=True, health_probe_interval_s=0.2)],
        api_keys=[CLIENT_KEY],
        health_window=10,
    )

    assert wait_until(lambda: deployment_health(gateway, "m")["consecutive_failures"] >= 1, 20)
    found = deployment_health(gateway, "m")
    assert found["status"] == "unhealthy"
    assert found["last_success_at"] is None
    assert found["ready"] is False
    assert found["reason"].startswith("no upstream call has succeeded yet (")
    assert ready(gateway).json() == {"status": "not_ready"}


# ------------------------------------------------------------------- aborts


@pytest.fixture
def requests_by_status(raw: httpx.Client) -> Iterator[Callable[[str, str], float]]:
    def sample(model: str, status: str) -> float:
        labels = {"model": model, "route": "chat", "status": status}
        return metric(raw.get("/metrics").text, "switchyard_requests_total", **labels)

    yield sample


def test_a_client_that_leaves_before_a_remote_answer_is_counted_as_499(
    gateway: RunningServer, fake: FakeOpenAI, requests_by_status: Callable[[str, str], float]
) -> None:
    fake.faults["upstream-picky"] = Fault("delay", seconds=1.0)
    before = {s: requests_by_status("picky", s) for s in ("200", "499", "500")}
    body = {"model": "picky", "messages": USER}

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=AUTH, timeout=0.3)

    assert wait_until(lambda: requests_by_status("picky", "499") == before["499"] + 1, 10)
    assert requests_by_status("picky", "200") == before["200"]
    assert requests_by_status("picky", "500") == before["500"]


def test_a_client_that_leaves_mid_stream_is_counted_as_499(
    gateway: RunningServer, fake: FakeOpenAI, requests_by_status: Callable[[str, str], float]
) -> None:
    fake.faults["upstream-picky"] = Fault("drip", seconds=0.2)
    before = {s: requests_by_status("picky", s) for s in ("200", "499")}
    body = {"model": "picky", "messages": USER, "stream": True}

    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=AUTH, timeout=10
    ) as response:
        assert response.status_code == 200
        assert next(response.iter_lines()).startswith("data: ")

    assert wait_until(lambda: requests_by_status("picky", "499") == before["499"] + 1, 10)
    assert requests_by_status("picky", "200") == before["200"]


def test_a_client_that_leaves_while_sending_its_body_is_counted_as_499(
    gateway: RunningServer, requests_by_status: Callable[[str, str], float]
) -> None:
    before = {s: requests_by_status("unknown", s) for s in ("499", "500")}
    body = json.dumps({"model": "picky", "messages": USER}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\n"
        f"authorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body) + 100}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(head + body)  # 100 bytes short: the server waits for the rest

    assert wait_until(lambda: requests_by_status("unknown", "499") == before["499"] + 1, 10)
    assert requests_by_status("unknown", "500") == before["500"]
