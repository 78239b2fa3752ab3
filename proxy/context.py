"""Per-request context, created by the outermost ASGI layer and read by handlers.

``RequestContextMiddleware`` wraps the Litestar app. It assigns the request id, times
the request, adds ``x-request-id`` and ``x-switchyard-overhead-ms`` to the response
head, and when the response is finished (or the client went away) records metrics
and writes the access-log line. It is plain ASGI because it runs on every request.

A client that went away before its response was complete is recorded as 499 (nginx's
"client closed request"), whatever status the response had begun with.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from adapters.base import CallStats
from proxy.keys import key_id, presented_key
from proxy.metrics import Metrics

SCOPE_KEY = "switchyard.request"
CLIENT_CLOSED = 499
access_log = logging.getLogger("switchyard.access")


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    started: float
    route: str = "other"
    model: str = "unknown"
    stream: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    verified_key_id: str | None = None
    """Set by the auth guard once the key is checked."""
    prompt: str | None = None
    stats: CallStats = field(default_factory=CallStats)

    @property
    def key_id(self) -> str | None:
        """Who is calling: the checked key, or (with auth off) whatever key was sent.

        Without configured keys nothing is verified, but data scoped by key (sessions,
        video jobs) still keeps clients that send different keys apart.
        """
        if self.verified_key_id is not None:
            return self.verified_key_id
        presented = presented_key(self._header)
        return key_id(presented) if presented else None

    def _header(self, name: str) -> str | None:
        value = raw_header(self.headers, name.encode("latin-1"))
        return None if value is None else value.decode("latin-1")


def request_info(scope: Any) -> RequestInfo:
    return scope[SCOPE_KEY]  # type: ignore[no-any-return]


_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    """Unique per process and across restarts (random prefix), cheaper than uuid4.

    Request ids identify, they do not authorise: they need not be unpredictable.
    """
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


def raw_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case) in ASGI's raw header list."""
    for key, value in headers:
        if key == name:
            return value
    return None


def client_gone(receive: Any) -> bool:
    """Whether the server already knows the client disconnected, without waiting.

    ASGI has no way to poll, and uvicorn drops whatever is sent to a closed connection
    without a word: a client that left while a remote answer was awaited would be
    recorded with the answer's status. A server hands out a disconnect it knows of
    without suspending, so ``receive()`` is stepped once: if it would wait, the client
    is still there and the step is closed unfinished.
    """
    step = receive()
    send = getattr(step, "send", None)
    if send is None:  # not a coroutine: nothing can be learnt without awaiting it
        return False
    try:
        send(None)
    except StopIteration as finished:
        message = finished.value
        return isinstance(message, dict) and message.get("type") == "http.disconnect"
    except Exception:  # a server that fails here tells nothing either way
        return False
    step.close()
    return False


class RequestContextMiddleware:
    def __init__(self, app: Any, metrics: Metrics, *, log_prompts: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.log_prompts = log_prompts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = raw_header(scope["headers"], b"x-request-id")
        request_id = given.decode("latin-1")[:128] if given else _new_request_id()
        info = RequestInfo(request_id=request_id, started=started, headers=scope["headers"])
        scope[SCOPE_KEY] = info
        status = 500
        overhead = 0.0
        first_body_at: float | None = None
        complete = aborted = False

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal status, overhead, first_body_at, complete, aborted
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
                aborted = client_gone(receive)
            if message["type"] == "http.response.start":
                status = message["status"]
                overhead = max(0.0, time.perf_counter() - started - info.stats.upstream_s)
                headers = list(message.get("headers") or ())
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                headers.append((b"x-switchyard-overhead-ms", f"{overhead * 1000:.3f}".encode()))
                message = {**message, "headers": headers}
            elif first_body_at is None and message["type"] == "http.response.body":
                first_body_at = time.perf_counter()
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.in_flight.dec()
            if aborted or (not complete and client_gone(receive)):
                status = CLIENT_CLOSED
            self._record(scope, info, status, overhead, first_body_at)

    def _record(
        self,
        scope: dict[str, Any],
        info: RequestInfo,
        status: int,
        overhead: float,
        first_body_at: float | None,
    ) -> None:
        total = time.perf_counter() - info.started
        stats = info.stats
        series = self.metrics.series(info.model, info.route)
        series.count(status)
        series.duration.observe(total)
        series.overhead.observe(overhead)
        if stats.attempts:
            series.upstream.observe(stats.upstream_s)
        ttft = None
        if info.stream and first_body_at is not None and status < 400:
            ttft = first_body_at - info.started
            series.ttft.observe(ttft)
        if stats.prompt_tokens or stats.completion_tokens:
            series.prompt_tokens.inc(stats.prompt_tokens)
            series.completion_tokens.inc(stats.completion_tokens)
        if scope["path"].startswith("/health") or scope["path"] == "/metrics":
            return
        extra: dict[str, Any] = {
            "request_id": info.request_id,
            "method": scope["method"],
            "path": scope["path"],
            "model": info.model,
            "deployment": stats.deployment or None,
            "status": status,
            "stream": info.stream,
            "duration_ms": round(total * 1000, 3),
            "upstream_ms": round(stats.upstream_s * 1000, 3),
            "overhead_ms": round(overhead * 1000, 3),
            "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "attempts": stats.attempts,
        }
        if self.log_prompts and info.prompt is not None:
            extra["prompt"] = info.prompt
        access_log.info("request", extra=extra)
