"""Per-request context, created by the outermost ASGI layer and read by handlers.

``RequestContextMiddleware`` wraps the Litestar app. It assigns the request id, times
the request, adds ``x-request-id`` and ``x-switchyard-overhead-ms`` to the response
head, and when the response is finished (or the client went away) records metrics
and writes the access-log line. It is plain ASGI because it runs on every request.

The request is bound as ``proxy.telemetry``'s current one, for log lines and upstream
headers; with tracing on, its server span is opened here too.

It also registers each request with the shutdown ``Drain`` (``proxy.drain``), and holds
the request body to ``server.request_read_timeout_s``: uvicorn has no body timeout, so
``receive`` is wrapped with a deadline until the body is complete (one ``asyncio``
timer per read, nothing once the body is in), and a stalled body becomes a 408. A body
the server's protocol had parsed whole before the request started (``BODY_RECEIVED_KEY``,
the common case) is not wrapped at all: that wrapper was the hot path's largest new cost.

A client that went away before its response was complete is recorded as 499 (nginx's
"client closed request"), whatever status the response had begun with.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.base import CallStats
from proxy.disconnect import client_gone
from proxy.drain import Drain
from proxy.errors import RequestTimeout, ServerShuttingDown, SwitchyardError, encode_error
from proxy.keys import key_id, presented_key
from proxy.metrics import Metrics
from proxy.state.records import DEFAULT_TEAM_ID
from proxy.telemetry import bind, unbind
from proxy.tenancy.outage import is_outage, outage_error

if TYPE_CHECKING:
    from proxy.tenancy.admission import Admission
    from proxy.tenancy.identity import Identity

SCOPE_KEY = "switchyard.request"
#: Set by the server's HTTP protocol (``proxy.server``): the event-loop time at which the
#: request's first byte arrived, so the read deadline covers the head as well as the body.
REQUEST_BEGAN_KEY = "switchyard.request_began"
#: Set by the same protocol once the whole request (head and body) has been parsed.
BODY_RECEIVED_KEY = "switchyard.body_received"
_CLOSE = (b"connection", b"close")
CLIENT_CLOSED = 499
access_log = logging.getLogger("switchyard.access")
ANONYMOUS_OWNER = "-"
"""The owner of what callers that send no key store (auth off)."""


def owner_of(key_id: str | None) -> str:
    """Who owns what a caller stores (sessions, RAG collections, jobs): its key id."""
    return key_id or ANONYMOUS_OWNER


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    started: float
    route: str = "other"
    model: str = "unknown"
    stream: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    prompt: str | None = None
    stats: CallStats = field(default_factory=CallStats)
    events_sent: int = 0
    """SSE events the client was sent (counted by ``proxy.responses``)."""
    ended_by_shutdown: bool = False
    """Still running when the shutdown drain ran out, and ended by the server."""
    failure: SwitchyardError | None = None
    """Why a response that had begun was cut (``StreamAborted``); recorded as its status."""
    identity: Identity | None = None
    """Who is calling, set by the tenancy guard on every ``/v1`` route."""
    usage_model: str | None = None
    """The model a model call asked for: set when the tenancy layer saw it, so the
    request gets a usage row (whether it was let through or refused)."""
    usage_body: dict[str, Any] | None = None
    """The model call's request body, for estimating the usage of a stream that ended
    without reporting it (``proxy.tenancy.service``)."""
    admission: Admission | None = None
    """What the request holds (rate reservation, parallel slot) until it ends."""
    cache: str | None = None
    """What the response cache did (``hit``, ``miss``, ``bypass``); ``None``: not cached."""
    tracing: Any = None
    """The app's ``proxy.telemetry.tracing.Tracing`` when tracing is on: spans opened
    while serving this request (``proxy.telemetry.span``) are recorded by it."""

    @property
    def key_id(self) -> str | None:
        """Who is calling: the identity's key id (a virtual key's id, a static key's
        digest), or, before the guard ran, a digest of whatever key was sent."""
        if self.identity is not None:
            return self.identity.key_id
        presented = self.presented_key()
        return key_id(presented) if presented else None

    @property
    def owner(self) -> str:
        """The owner of per-key data (sessions): see ``owner_of``."""
        return owner_of(self.key_id)

    @property
    def team_id(self) -> str:
        """The owner of per-team data (RAG collections, media, video jobs)."""
        return self.identity.team_id if self.identity is not None else DEFAULT_TEAM_ID

    def presented_key(self) -> str | None:
        """The key the request presents (``proxy.keys.presented_key``), read from the raw
        ASGI headers: cheaper than building Litestar's ``Headers`` for it."""
        return presented_key(self._header)

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


ErrorRenderer = Callable[[SwitchyardError], tuple[int, bytes, dict[str, str]]]
"""Status, body and headers of an error in the dialect of a path (``proxy.dialects``)."""


def _openai_error(error: SwitchyardError) -> tuple[int, bytes, dict[str, str]]:
    return error.http_status, encode_error(error), error.headers


def _shutdown_response(render: ErrorRenderer) -> tuple[dict[str, Any], dict[str, Any]]:
    error = ServerShuttingDown("The server shut down before the answer was ready.")
    return _error_response(error, render, close=True)


def _error_response(
    error: SwitchyardError, render: ErrorRenderer, *, close: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An error answered before the app ran, in the same shape the app renders."""
    status, body, extra = render(error)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
    ]
    if close:
        headers.append(_CLOSE)
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class RequestContextMiddleware:
    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        *,
        log_prompts: bool,
        drain: Drain | None = None,
        request_read_timeout_s: float | None = None,
        tracing: Any = None,
        dialects: Any = None,
    ) -> None:
        self.app = app
        self.dialects = dialects
        """``proxy.dialects.DialectMap``: who renders a path's errors, which paths outside
        ``/v1/`` identify their callers; ``None``: OpenAI's errors, ``/v1/`` only."""
        self._identified = ("/v1/", *(dialects.identified if dialects is not None else ()))
        self.tracing = tracing
        self.metrics = metrics
        self.log_prompts = log_prompts
        self.drain = drain or Drain()
        self.read_timeout_s = request_read_timeout_s
        self.tenancy: Any = None
        """Set by the app's lifespan (``proxy.tenancy.service.Tenancy``) once it is open."""
        self.generations: Any = None
        """Set by the app's lifespan (``proxy.generation.Generations``): each request is
        pinned to the routing generation current when it arrived, until it has ended."""
        self.reloader: Any = None
        """Set by the app's lifespan (``proxy.reload.Reloader``), for SIGHUP."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = raw_header(scope["headers"], b"x-request-id")
        request_id = given.decode("latin-1")[:128] if given else _new_request_id()
        tracing = self.tracing
        info = RequestInfo(
            request_id=request_id, started=started, headers=scope["headers"], tracing=tracing
        )
        scope[SCOPE_KEY] = info
        bound = bind(info)
        span = None if tracing is None else tracing.start_request(scope["method"], info.headers)
        status = 500
        overhead = 0.0
        first_body_at: float | None = None
        responded = complete = aborted = False
        drain = self.drain

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal status, overhead, first_body_at, responded, complete, aborted
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
                aborted = client_gone(receive)
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                overhead = max(0.0, time.perf_counter() - started - info.stats.upstream_s)
                headers = list(message.get("headers") or ())
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                headers.append((b"x-switchyard-overhead-ms", f"{overhead * 1000:.3f}".encode()))
                admission = info.admission
                if admission is not None and admission.grant is not None:
                    headers.extend(admission.grant.headers)
                if drain.draining:
                    headers.append(_CLOSE)
                message = {**message, "headers": headers}
            elif first_body_at is None and message["type"] == "http.response.body":
                first_body_at = time.perf_counter()
            await send(message)

        if self.read_timeout_s is not None and not scope.get(BODY_RECEIVED_KEY):
            receive = self._with_read_deadline(scope, receive, lambda: responded)
        self.metrics.in_flight.inc()
        task = drain.track(info)
        generations = self.generations
        pinned = generations.enter() if generations is not None else None
        try:
            refused = await self._identify(scope, info)
            if refused is not None:
                for message in refused:
                    await send_with_headers(message)
                return
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            if not info.ended_by_shutdown or responded or task is None:
                raise
            task.uncancel()
            start, body = _shutdown_response(self._renderer(scope["path"]))
            await send_with_headers(start)
            await send_with_headers(body)
        except Exception:
            if info.failure is None:
                raise
            # A body cut on purpose (StreamAborted): returning without the final chunk
            # makes the server close the connection, so the client sees the failure.
        finally:
            drain.untrack(task)
            self.metrics.in_flight.dec()
            if aborted or (not complete and client_gone(receive)):
                status = CLIENT_CLOSED
            try:
                status, total, ttft = self._record(scope, info, status, overhead, first_body_at)
                if span is not None:
                    tracing.finish_request(span, info, scope["method"], status)
                if info.usage_model is not None and self.tenancy is not None:
                    await self._account(info, status, total, ttft)
            finally:
                unbind(bound)
                if pinned is not None:
                    generations.leave(*pinned)

    async def _identify(
        self, scope: dict[str, Any], info: RequestInfo
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Who is calling, for every ``/v1`` route (``/v1/media`` checks for itself: its
        ids are capabilities): the identity, or the error response to send instead.

        Here rather than in a Litestar guard: a guard costs a copy of the route handler
        per request, which was the largest cost tenancy added to the hot path."""
        tenancy = self.tenancy
        path: str = scope["path"]
        if (
            tenancy is None
            or not path.startswith(self._identified)
            or path.startswith("/v1/media/")
        ):
            return None
        try:
            info.identity = await tenancy.authenticator.identify(info.presented_key())
        except SwitchyardError as refused:
            return _error_response(refused, self._renderer(path))
        except Exception as exc:
            if not is_outage(exc):
                raise
            return _error_response(outage_error(exc), self._renderer(path))
        return None

    def _renderer(self, path: str) -> ErrorRenderer:
        if self.dialects is None:
            return _openai_error
        return self.dialects.for_path(path).render_error  # type: ignore[no-any-return]

    async def _account(
        self, info: RequestInfo, status: int, total: float, ttft: float | None
    ) -> None:
        try:
            await self.tenancy.finish(info, status, total, ttft)
        except Exception:
            access_log.exception("accounting for request %s failed", info.request_id)

    def _with_read_deadline(self, scope: dict[str, Any], receive: Any, responded: Any) -> Any:
        """``receive`` that raises ``RequestTimeout`` once the read deadline has passed
        with the body still incomplete. Once the body is in, or a response has begun
        (the handler is done with the body), it is ``receive`` again."""
        assert self.read_timeout_s is not None
        loop = asyncio.get_running_loop()
        deadline = scope.get(REQUEST_BEGAN_KEY, loop.time()) + self.read_timeout_s
        body_complete = False

        async def receive_within_deadline() -> Any:
            nonlocal body_complete
            if body_complete or responded():
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive within {self.read_timeout_s:g} s.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body"):
                body_complete = True
            return message

        return receive_within_deadline

    def _record(
        self,
        scope: dict[str, Any],
        info: RequestInfo,
        status: int,
        overhead: float,
        first_body_at: float | None,
    ) -> tuple[int, float, float | None]:
        """Metrics and the access log; returns the final status, duration and TTFT."""
        total = time.perf_counter() - info.started
        stats = info.stats
        if info.failure is not None:
            status = info.failure.http_status
        series = self.metrics.series(info.model, info.route)
        series.count(status)
        if info.ended_by_shutdown:
            self.metrics.ended_by_shutdown.labels(info.model, info.route).inc()
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
            return status, total, ttft
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
        if info.stream:
            extra["events_sent"] = info.events_sent
        if info.cache is not None:
            extra["cache"] = info.cache
        if info.ended_by_shutdown:
            extra["outcome"] = "ended_by_shutdown"
        if info.failure is not None:
            extra["error"] = info.failure.message
        if self.log_prompts and info.prompt is not None:
            extra["prompt"] = info.prompt
        if info.identity is not None:
            extra["team"] = info.identity.team_id
            extra["key"] = info.identity.key_id
        access_log.info("request", extra=extra)
        return status, total, ttft
