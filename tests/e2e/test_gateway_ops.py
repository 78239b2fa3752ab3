"""Response headers, health, readiness, metrics and docs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.e2e.conftest import AUTH, CLIENT_KEY, model_entry
from tests.support.fake_openai import FakeOpenAI, Fault, wait_until
from tests.support.servers import RunningServer, free_port

USER = [{"role": "user", "content": "count my tokens please"}]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if found == wanted:
            return float(match.group(3))
    return 0.0


def test_request_id_is_echoed(client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=USER, extra_headers={"x-request-id": "req-from-client-7"}
    )

    assert response.headers["x-request-id"] == "req-from-client-7"
    assert response.parse().choices[0].message.content


def test_request_id_is_generated_and_overhead_reported(client: openai.OpenAI) -> None:
    first = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER)
    second = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER)

    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert float(first.headers["x-switchyard-overhead-ms"]) >= 0.0


def test_overhead_excludes_the_wait_for_the_upstream(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-picky"] = Fault("delay", seconds=1.0)

    started = time.monotonic()
    response = client.chat.completions.with_raw_response.create(model="picky", messages=USER)
    waited = time.monotonic() - started

    assert waited >= 1.0  # the upstream really held the request for a second
    assert 0.0 <= float(response.headers["x-switchyard-overhead-ms"]) < 1000.0


def test_error_responses_carry_the_headers_too(raw: httpx.Client) -> None:
    response = raw.post("/v1/chat/completions", json={}, headers={"x-request-id": "bad-1"})

    assert response.status_code == 401
    assert response.headers["x-request-id"] == "bad-1"
    assert float(response.headers["x-switchyard-overhead-ms"]) >= 0.0


def test_streaming_response_headers(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-test", messages=USER, stream=True, extra_headers={"x-request-id": "s-1"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-request-id"] == "s-1"
        assert "x-switchyard-overhead-ms" in response.headers
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_health_is_open_without_a_key(raw: httpx.Client) -> None:
    response = raw.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_lists_models(raw: httpx.Client) -> None:
    response = raw.get("/health/ready", headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["models"]) == {"gpt-test", "embed-test", "picky"}
    assert body["models"]["gpt-test"]["ready"] is True


def test_openapi_docs_are_served(raw: httpx.Client) -> None:
    schema = raw.get("/docs/openapi.json")

    assert schema.status_code == 200
    assert "/v1/chat/completions" in schema.json()["paths"]


def test_metrics_count_requests_and_tokens(client: openai.OpenAI, raw: httpx.Client) -> None:
    def sample(name: str, **labels: str) -> float:
        return metric(raw.get("/metrics").text, name, **labels)

    prompt_before = sample("switchyard_prompt_tokens_total", model="gpt-test")
    completion_before = sample("switchyard_completion_tokens_total", model="gpt-test")
    served = {"model": "gpt-test", "route": "chat", "status": "200"}
    served_before = sample("switchyard_requests_total", **served)
    completion = client.chat.completions.create(model="gpt-test", messages=USER)
    stream = client.chat.completions.create(
        model="gpt-test", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    usages = [c.usage for c in stream if c.usage]
    assert completion.usage is not None
    assert len(usages) == 1
    prompt = completion.usage.prompt_tokens + usages[0].prompt_tokens
    completion_tokens = completion.usage.completion_tokens + usages[0].completion_tokens

    # A request is counted when its response has finished, which may be just after the
    # client read the last byte: wait for it rather than racing it.
    assert wait_until(lambda: sample("switchyard_requests_total", **served) == served_before + 2)
    assert sample("switchyard_prompt_tokens_total", model="gpt-test") == prompt_before + prompt
    assert (
        sample("switchyard_completion_tokens_total", model="gpt-test")
        == completion_before + completion_tokens
    )
    response = raw.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for histogram in (
        "switchyard_request_duration_seconds_count",
        "switchyard_upstream_duration_seconds_count",
        "switchyard_time_to_first_token_seconds_count",
    ):
        assert metric(text, histogram, model="gpt-test", route="chat") > 0
    assert metric(text, "switchyard_gateway_overhead_seconds_count", route="chat") > 0
    assert "switchyard_in_flight_requests" in text


def test_metrics_count_errors_by_status(client: openai.OpenAI, raw: httpx.Client) -> None:
    labels = {"model": "unknown", "route": "chat", "status": "404"}
    before = metric(raw.get("/metrics").text, "switchyard_requests_total", **labels)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="never-configured", messages=USER)

    assert wait_until(
        lambda: (
            metric(raw.get("/metrics").text, "switchyard_requests_total", **labels) == before + 1
        )
    )


def test_metrics_can_be_protected(
    start_gateway: Callable[..., RunningServer], fake_url: str, fake: FakeOpenAI
) -> None:
    gateway = start_gateway(
        [model_entry("m", "upstream-m", fake_url)], api_keys=[CLIENT_KEY], protect_metrics=True
    )
    with httpx.Client(base_url=gateway.url) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers=AUTH).status_code == 200
        assert http.get("/health").status_code == 200


def test_ready_reports_every_deployment(
    start_gateway: Callable[..., RunningServer], fake_url: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    gateway = start_gateway(
        [model_entry("m", "upstream-a", fake_url), model_entry("m", "upstream-b", closed)],
        public_health_details=True,
    )
    body = httpx.get(f"{gateway.url}/health/ready").json()

    labels = [d["deployment"] for d in body["models"]["m"]["deployments"]]
    assert labels == ["openai:127.0.0.1/upstream-a", "openai:127.0.0.1/upstream-b"]
