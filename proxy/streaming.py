"""Turning an adapter's stream into SSE bytes, and building the streaming response.

Items are either ``bytes`` (complete SSE events from an upstream, forwarded as they
are) or response Structs (encoded here, once). The stream ends with ``data: [DONE]``;
a failure after the first byte ends it with an OpenAI error event instead, because
the status line has already gone out. A stream that the shutdown drain ends gets an
error event too (``SHUTDOWN_FRAME``, written by ``EventStreamResponse``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import Response

from proxy.errors import ServerShuttingDown, SwitchyardError, UpstreamError, sse_error_frame
from proxy.responses import EventStreamResponse

log = logging.getLogger("switchyard.streaming")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"

SHUTDOWN_FRAME = sse_error_frame(
    ServerShuttingDown("The server is shutting down; the stream was ended before it finished.")
)

_encode = msgspec.json.Encoder().encode


def sse_frame(item: Any) -> bytes:
    return b"data: " + _encode(item) + b"\n\n"


async def sse_bytes(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """SSE bytes for ``items``; closing this generator closes ``items`` (and the upstream)."""
    try:
        async with aclosing(items):  # type: ignore[type-var]
            async for item in items:
                yield item if isinstance(item, bytes) else sse_frame(item)
    except SwitchyardError as exc:
        log.warning("stream failed after it began: %s", exc.message)
        yield sse_error_frame(exc)
        return
    except Exception:
        log.exception("stream failed after it began")
        yield sse_error_frame(UpstreamError("The stream failed unexpectedly."))
        return
    yield DONE


def sse_response(items: AsyncIterator[Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return EventStreamResponse(
        sse_bytes(items),
        {**SSE_HEADERS, **headers} if headers else SSE_HEADERS,
        shutdown_frame=SHUTDOWN_FRAME,
    )
