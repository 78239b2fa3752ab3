"""An upstream answer nested too deeply to decode is the upstream's failure (502, or an
SSE error frame once the stream began), never the gateway's 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.servers import (
    RunningServer,
    answer_lifespan,
    read_body,
    serve_asgi,
    serve_gateway,
)

DEEP = "[" * 5000 + "]" * 5000


def _completion(extra: str) -> bytes:
    body = {
        "id": "chatcmpl-deep",
        "object": "chat.completion",
        "created": 1,
        "model": "deep",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
    }
    return json.dumps(body).encode()[:-1] + b', "extra": ' + extra.encode() + b"}"


def _chunk(content: str, extra: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-deep",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "deep",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    data = json.dumps(chunk).encode()
    if extra is not None:
        data = data[:-1] + b', "extra": ' + extra.encode() + b"}"
    return b"data: " + data + b"\n\n"


async def deep_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every chat request with a deep ``extra`` field: in the body, or in the
    first SSE chunk (``first``) or the second one (``later``), by the upstream model id."""
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    request = json.loads(await read_body(receive))
    if not request.get("stream"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": _completion(DEEP)})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    first = request["model"] == "first"
    events = [_chunk("Hel", DEEP if first else None), _chunk("lo", None if first else DEEP)]
    for event in [*events, b"data: [DONE]\n\n"]:
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await asyncio.sleep(0.2)  # each event reaches the gateway on its own
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningServer]:
    with serve_asgi(deep_upstream) as upstream:
        url = f"{upstream.url}/v1"
        config = {
            "server": {"api_keys": [CLIENT_KEY]},
            "models": [
                model_entry("deep-first", "first", url),
                model_entry("deep-later", "later", url),
            ],
        }
        with serve_gateway(config) as running:
            yield running


ASK = [{"role": "user", "content": "hi"}]


def test_a_deep_answer_is_a_502(gateway: RunningServer) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway).chat.completions.create(model="deep-first", messages=ASK)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert caught.value.body["message"] == (  # type: ignore[index]
        "The upstream answered with JSON nested too deeply to read."
    )


def test_a_deep_first_chunk_is_a_502_before_the_stream_begins(gateway: RunningServer) -> None:
    reply = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "deep-first", "messages": ASK, "stream": True},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert reply.status_code == 502
    assert reply.json()["error"]["type"] == "upstream_error"


def test_a_deep_later_chunk_ends_the_stream_with_an_error_event(gateway: RunningServer) -> None:
    stream = sdk(gateway).chat.completions.create(
        model="deep-later",
        messages=ASK,  # type: ignore[arg-type]
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hel"]
    assert caught.value.message == "The upstream answered with JSON nested too deeply to read."
