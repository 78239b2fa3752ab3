"""Lean responses for the hot path, usable wherever Litestar expects a ``Response``.

Litestar's own responses are general (cookies, background tasks, encoders) and its
streaming response runs an anyio task group per stream to notice disconnects;
bench/overhead.py showed both in the per-request profile. These send prepared bytes,
and a stream watches for the client leaving with one plain task: when it leaves, the
streaming task is cancelled at once, which closes the body generator and so the
upstream request.

When the shutdown drain ends a stream (``proxy.drain``), the task is cancelled with the
request marked ``ended_by_shutdown``: the stream then writes its ``shutdown_frame`` (an
SSE error event; or a function that makes it then, for a frame that follows the events
sent) and ends the body properly, so the client's parser reads an error
instead of a broken chunked body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, suppress
from typing import Any

from litestar import Response

from proxy.context import SCOPE_KEY

_JSON = b"application/json"


def _raw_headers(media_type: bytes, headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    raw = [(b"content-type", media_type)]
    if headers:
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return raw


class BytesResponse(Response[bytes]):
    """A complete body that is already encoded."""

    def __init__(
        self,
        content: bytes,
        *,
        status_code: int = 200,
        media_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, media_type=media_type, headers=headers)
        self._media_type = media_type.encode("latin-1")

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Headers are read now, not at construction: handlers may add some after.
        headers = _raw_headers(self._media_type, self.headers)
        headers.append((b"content-length", str(len(self.content)).encode()))
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.content, "more_body": False})


async def _cancel_on_disconnect(receive: Any, streaming: asyncio.Task[Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            streaming.cancel()
            return


class EventStreamResponse(Response[bytes]):
    """``text/event-stream`` (or NDJSON) from an async iterator of bytes, sent as they
    come; ``events_sent`` counts SSE events (blank-line separated), or NDJSON lines."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: dict[str, str],
        *,
        shutdown_frame: bytes | Callable[[], bytes] | None = None,
        media_type: str = "text/event-stream",
    ) -> None:
        super().__init__(b"", media_type=media_type, headers=headers)
        self._iterator = body
        self._shutdown_frame = shutdown_frame
        self._separator = b"\n\n" if media_type.startswith("text/event-stream") else b"\n"
        self._start = {
            "type": "http.response.start",
            "status": 200,
            "headers": _raw_headers(media_type.encode("latin-1"), headers),
        }

    @property
    def body_iterator(self) -> AsyncIterator[bytes]:
        """The events still to send (a dialect reads them to translate them)."""
        return self._iterator

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        info = scope.get(SCOPE_KEY)
        watcher = asyncio.create_task(_cancel_on_disconnect(receive, streaming))
        try:
            await send(self._start)
            async with aclosing(self._iterator) as body:  # type: ignore[type-var]
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if info is not None:
                        info.events_sent += chunk.count(self._separator)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if watcher.done():
                # The client left: the generator (and the upstream) is closed; nothing to send.
                streaming.uncancel()
                return
            if info is None or not info.ended_by_shutdown or self._shutdown_frame is None:
                raise
            streaming.uncancel()
            frame = self._shutdown_frame
            frame = frame if isinstance(frame, bytes) else frame()
            final = {"type": "http.response.body", "body": frame, "more_body": False}
            await send(final)
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
