"""A model whose deployments speak Messages themselves gets the client's body unchanged.

The route's decision alone, with ``bridge.is_native`` and ``bridge.passthrough``
replaced: what the route hands the pass-through, and how it frames a native stream
(tests/e2e/test_messages_native.py runs it for real, through the anthropic adapter).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Response
from litestar.testing import TestClient

from proxy.app import error_renderer
from proxy.dialects import DialectMap, bridge
from proxy.dialects.anthropic import MessagesDialect
from proxy.dialects.anthropic.routes import SHUTDOWN_FRAME, create_message
from proxy.errors import UpstreamTimeout
from proxy.responses import EventStreamResponse

BODY = {
    "model": "claude-native",
    "max_tokens": 64,
    "thinking": {"type": "enabled", "budget_tokens": 32},
    "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
}


@pytest.fixture
def passed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def is_native(request: Any, model: str, dialect: str, body: Any) -> bool:
        seen["asked"] = (model, dialect)
        return model == "claude-native"

    async def passthrough(
        request: Any, dialect: str, raw: bytes, *, route: str, stream_response: Any
    ) -> Response[Any]:
        seen.update(dialect=dialect, raw=raw, route=route, stream_response=stream_response)
        return Response(content=b'{"type":"message"}', media_type="application/json")

    monkeypatch.setattr(bridge, "is_native", is_native)
    monkeypatch.setattr(bridge, "passthrough", passthrough)
    return seen


def client() -> TestClient[Any]:
    app = Litestar(
        [create_message],
        exception_handlers={Exception: error_renderer(DialectMap([MessagesDialect]))},
    )
    return TestClient(app)


def test_a_native_model_gets_the_raw_body_thinking_and_all(passed: dict[str, Any]) -> None:
    raw = json.dumps(BODY).encode()
    with client() as http:
        response = http.post("/v1/messages", content=raw)
    assert response.status_code == 200
    assert response.json() == {"type": "message"}
    assert passed["asked"] == ("claude-native", "messages")
    # Not translated, not even validated here: a document block and thinking pass as sent.
    assert (passed["dialect"], passed["route"], passed["raw"]) == ("messages", "messages", raw)


async def test_a_native_stream_keeps_the_upstreams_events_and_our_shutdown_frame(
    passed: dict[str, Any],
) -> None:
    with client() as http:
        http.post("/v1/messages", content=json.dumps(BODY).encode())

    async def events() -> AsyncIterator[bytes]:
        yield b"event: message_stop\ndata: {}\n\n"

    response = passed["stream_response"](events())
    assert isinstance(response, EventStreamResponse)
    assert response._shutdown_frame == SHUTDOWN_FRAME
    assert [e async for e in response.body_iterator] == [b"event: message_stop\ndata: {}\n\n"]

    async def broken() -> AsyncIterator[bytes]:
        yield b"event: ping\ndata: {}\n\n"
        raise UpstreamTimeout("The upstream stopped sending.")

    cut = passed["stream_response"](broken())
    assert [e async for e in cut.body_iterator] == [
        b"event: ping\ndata: {}\n\n",
        b'event: error\ndata: {"type":"error","error":{"type":"timeout_error",'
        b'"message":"The upstream stopped sending."}}\n\n',
    ]
    name, data = SHUTDOWN_FRAME.decode().strip().split("\n")
    assert name == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["type"] == "overloaded_error"


def test_a_model_that_is_not_native_is_translated_and_validated(passed: dict[str, Any]) -> None:
    with client() as http:
        response = http.post("/v1/messages", content=json.dumps({**BODY, "model": "other"}))
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("messages[0].content[0].type:")
    assert "raw" not in passed
