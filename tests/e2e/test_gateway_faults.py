"""Upstream faults: each ends in the documented error, or in a healthy deployment's answer.

Every test starts its own gateway (cooldowns are router state) with short timeouts.
Waiting for something to be observed uses a deadline; nothing asserts a duration.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY, async_sdk, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, Fault, rate_limited, status_fault, wait_until
from tests.support.servers import RunningServer, free_port

USER = [{"role": "user", "content": "hi"}]
Start = Callable[..., RunningServer]


def closed_url() -> str:
    """An address nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def deployments_of(gateway: RunningServer, model: str) -> list[Any]:
    """The router's deployments (white-box, to check in-flight accounting)."""
    litestar_app = gateway.app.app
    return list(litestar_app.state.switchyard.router.deployments[model])


def text_of(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


# ---------------------------------------------------------------- before the first byte


def test_refused_connection_is_502(start_gateway: Start) -> None:
    gateway = start_gateway([model_entry("m", "up", closed_url(), timeout_s=1)])

    with sdk(gateway) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=USER)
        assert caught.value.status_code == 502
        assert caught.value.code == "upstream_unavailable"
        with pytest.raises(openai.InternalServerError) as streamed:
            client.chat.completions.create(model="m", messages=USER, stream=True)
        assert streamed.value.status_code == 502
    assert "127.0.0.1" not in caught.value.message  # internal addresses are not disclosed


def test_refused_connection_falls_back_to_a_healthy_deployment(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    gateway = start_gateway(
        [model_entry("m", "dead", closed_url(), timeout_s=1), model_entry("m", "alive", fake_url)]
    )

    with sdk(gateway) as client:
        for _ in range(3):
            reply = client.chat.completions.create(model="m", messages=USER)
            assert reply.choices[0].message.content == "Hello! You said: hi"
    assert len(fake.received(model="alive")) == 3


def test_500_falls_back_to_a_healthy_deployment(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["broken"] = status_fault(500, "internal meltdown")
    gateway = start_gateway(
        [model_entry("m", "broken", fake_url), model_entry("m", "healthy", fake_url)]
    )

    with sdk(gateway) as client:
        replies = [client.chat.completions.create(model="m", messages=USER) for _ in range(4)]
        streamed = text_of(client.chat.completions.create(model="m", messages=USER, stream=True))

    assert all(r.choices[0].message.content == "Hello! You said: hi" for r in replies)
    assert streamed == "Hello! You said: hi"
    # Tried once, then cooled down: later requests go straight to the healthy one.
    assert len(fake.received(model="broken")) == 1
    assert len(fake.received(model="healthy")) == 5


def test_500_on_every_deployment_is_502(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["broken"] = status_fault(503, "overloaded")
    gateway = start_gateway([model_entry("m", "broken", fake_url)])

    with sdk(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"


def test_a_lone_deployment_is_used_again_after_a_failure(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["flaky"] = status_fault(500, times=1)
    gateway = start_gateway([model_entry("m", "flaky", fake_url)])

    with sdk(gateway) as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=USER)
        # Cooling down, but the only deployment: it is tried rather than refused.
        reply = client.chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "Hello! You said: hi"


def test_stream_500_before_the_first_byte_is_retried(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["broken"] = status_fault(500)
    gateway = start_gateway(
        [model_entry("m", "broken", fake_url), model_entry("m", "healthy", fake_url)]
    )

    with sdk(gateway) as client:
        texts = [
            text_of(client.chat.completions.create(model="m", messages=USER, stream=True))
            for _ in range(2)
        ]
    assert texts == ["Hello! You said: hi"] * 2
    assert len(fake.received(model="broken")) == 1


def test_model_fallbacks_are_tried_when_every_deployment_fails(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["primary-up"] = status_fault(500)
    gateway = start_gateway(
        [
            model_entry("primary", "primary-up", fake_url, fallbacks=["backup"]),
            model_entry("backup", "backup-up", fake_url),
        ]
    )

    with sdk(gateway) as client:
        reply = client.chat.completions.create(model="primary", messages=USER)
    assert reply.choices[0].message.content == "Hello! You said: hi"
    assert [r.model for r in fake.received()] == ["primary-up", "backup-up"]


def test_429_is_retried_on_another_deployment_and_retry_after_binds(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["limited"] = rate_limited(retry_after="30")
    gateway = start_gateway(
        [model_entry("m", "limited", fake_url), model_entry("m", "free", fake_url)]
    )

    with sdk(gateway) as client:
        for _ in range(4):
            assert client.chat.completions.create(model="m", messages=USER).choices
    # The limited deployment was tried once; its Retry-After kept it out afterwards.
    assert len(fake.received(model="limited")) == 1
    assert len(fake.received(model="free")) == 4


def test_429_with_a_single_deployment_reaches_the_client_with_retry_after(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["limited"] = rate_limited(retry_after="30")
    gateway = start_gateway([model_entry("m", "limited", fake_url)])

    with sdk(gateway) as client:
        with pytest.raises(openai.RateLimitError) as first:
            client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.RateLimitError) as second:
            client.chat.completions.create(model="m", messages=USER)

    assert first.value.status_code == 429
    assert first.value.response.headers["retry-after"] == "30"
    assert 1 <= int(second.value.response.headers["retry-after"]) <= 30
    # While the upstream's Retry-After runs, the gateway answers without asking it again.
    assert len(fake.received(model="limited")) == 1


def test_timeout_is_504_and_the_upstream_request_is_closed(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["slow"] = Fault("delay", seconds=30)
    gateway = start_gateway([model_entry("m", "slow", fake_url, timeout_s=0.5)])

    with sdk(gateway) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=USER)

    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    seen = fake.last("/v1/chat/completions")
    assert wait_until(lambda: seen.disconnected_at is not None)


def test_timeout_falls_back_to_a_healthy_deployment(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["slow"] = Fault("delay", seconds=30)
    gateway = start_gateway(
        [model_entry("m", "slow", fake_url, timeout_s=0.5), model_entry("m", "quick", fake_url)]
    )

    with sdk(gateway) as client:
        for _ in range(2):
            reply = client.chat.completions.create(model="m", messages=USER)
            assert reply.choices[0].message.content == "Hello! You said: hi"


# ------------------------------------------------------------------ after the first byte


def test_chunks_are_forwarded_before_the_upstream_finishes(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["staller"] = Fault("stall", after=2, seconds=30)
    gateway = start_gateway([model_entry("m", "staller", fake_url, timeout_s=20)])

    with sdk(gateway) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        chunks = iter(stream)
        first, second = next(chunks), next(chunks)
        seen = fake.last("/v1/chat/completions")
        # Both arrived while the upstream was still holding its response open.
        assert not seen.completed
        assert seen.disconnected_at is None
        stream.close()

    assert first.choices[0].delta.role == "assistant"
    assert second.choices[0].delta.content == "Hello!"
    assert wait_until(lambda: seen.disconnected_at is not None)


def test_stall_mid_stream_ends_with_an_error_frame(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["staller"] = Fault("stall", after=2, seconds=30)
    gateway = start_gateway([model_entry("m", "staller", fake_url, timeout_s=0.5)])
    received: list[str] = []

    with sdk(gateway) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")

    assert received == ["", "Hello!"]  # what came before the stall reached the client
    assert caught.value.code == "upstream_timeout"
    assert not isinstance(caught.value, openai.APIStatusError)  # the status line was 200


def test_stall_mid_stream_frame_on_the_wire(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["staller"] = Fault("stall", after=1, seconds=30)
    gateway = start_gateway([model_entry("m", "staller", fake_url, timeout_s=0.5)])
    body = {"model": "m", "messages": USER, "stream": True}

    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=10) as r:
        assert r.status_code == 200
        frames = [line for line in r.iter_lines() if line]

    assert len(frames) == 2
    assert all(frame.startswith("data: ") for frame in frames)
    assert json.loads(frames[0][6:])["object"] == "chat.completion.chunk"
    assert json.loads(frames[1][6:]) == {
        "error": {
            "message": "The upstream for 'm' timed out.",
            "type": "timeout_error",
            "param": None,
            "code": "upstream_timeout",
        }
    }


def test_malformed_sse_ends_with_an_error_frame(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["garbled"] = Fault("malformed", after=2)
    gateway = start_gateway([model_entry("m", "garbled", fake_url)])

    with sdk(gateway) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass

    assert caught.value.code == "upstream_error"
    assert "malformed" in caught.value.message


def test_stream_cut_before_done_ends_with_an_error_frame(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["cut"] = Fault("truncate", after=3)
    gateway = start_gateway([model_entry("m", "cut", fake_url)])

    with sdk(gateway) as client:
        stream = client.completions.create(model="m", prompt="x", stream=True)
        with pytest.raises(openai.APIError) as caught:
            for _ in stream:
                pass
    assert caught.value.code == "upstream_error"


def test_client_disconnect_closes_the_upstream_request(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["dripper"] = Fault("drip", seconds=0.02)
    gateway = start_gateway([model_entry("m", "dripper", fake_url)])

    with sdk(gateway) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        chunks = iter(stream)
        for _ in range(3):
            next(chunks)
        stream.close()

    seen = fake.last("/v1/chat/completions")
    assert wait_until(lambda: seen.disconnected_at is not None)
    assert not seen.completed
    assert seen.chunks_sent < 400
    deployment = deployments_of(gateway, "m")[0]
    assert wait_until(lambda: deployment.in_flight == 0)


async def test_async_client_disconnect_closes_the_upstream_request(
    start_gateway: Start, fake: FakeOpenAI, fake_url: str
) -> None:
    fake.faults["dripper"] = Fault("drip", seconds=0.02)
    gateway = start_gateway([model_entry("m", "dripper", fake_url)], api_keys=[CLIENT_KEY])

    async with async_sdk(gateway) as client:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        count = 0
        async for _ in stream:
            count += 1
            if count == 3:
                break
        await stream.close()

    seen = fake.last("/v1/chat/completions")
    assert wait_until(lambda: seen.disconnected_at is not None)
    assert not seen.completed
