"""The request middleware's read deadline, at the ASGI layer.

The deadline counts from the request's first byte (``REQUEST_BEGAN_KEY``, set by the
server's protocol), so time spent on the head is taken from the body's share. It only
holds while the body is incomplete: afterwards ``receive`` is the server's own, which
is how the disconnect watchers of streams keep working.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.context import REQUEST_BEGAN_KEY, RequestContextMiddleware
from proxy.errors import RequestTimeout
from proxy.metrics import Metrics


def scope(**extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/x", "headers": [], **extra}


async def ignore(message: Any) -> None:
    pass


def middleware(app: Any, timeout: float) -> RequestContextMiddleware:
    return RequestContextMiddleware(
        app, Metrics(), log_prompts=False, request_read_timeout_s=timeout
    )


async def test_time_spent_on_the_head_counts_against_the_deadline() -> None:
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    began = asyncio.get_running_loop().time() - 100
    with pytest.raises(RequestTimeout) as timed_out:
        await asyncio.wait_for(
            middleware(app, 60)(scope(**{REQUEST_BEGAN_KEY: began}), receive, ignore), 5
        )
    assert timed_out.value.http_status == 408
    assert timed_out.value.headers == {"Connection": "close"}


async def test_after_the_body_receive_is_not_bounded() -> None:
    messages = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]
    seen: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = messages.pop(0)
        if message["type"] == "http.disconnect":
            await asyncio.sleep(0.3)  # past the deadline below
        return message

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    await middleware(app, 0.1)(scope(), receive, ignore)
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]
