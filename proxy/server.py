"""Running the app under uvicorn: signals, the shutdown drain, and read deadlines.

``GatewayServer`` is uvicorn's ``Server`` with a drain in front of its shutdown. uvicorn
itself, on SIGTERM, closes idle connections, waits ``timeout_graceful_shutdown`` and then
cancels what still runs, which cuts a stream mid-body (the client sees a broken chunked
read, the access log a 200). Here, on SIGTERM or SIGINT:

1. at once, ``/health/ready`` answers 503 and responses carry ``connection: close``;
2. the listening sockets close (no new connections); connections already open stay, so a
   load balancer's pooled probe still reads the 503;
3. requests in flight run for up to ``server.drain_timeout_s``;
4. those still running are ended (``Drain.end_remaining``): streams with an SSE error
   event and a proper end of body, unanswered requests with a 503;
5. uvicorn's own shutdown then closes the connections and runs the lifespan shutdown.

SIGHUP re-reads the configuration file (``proxy.reload``): new requests use the new
models, prices and plugin settings while those in flight finish on the old ones; an
invalid file is logged and the running configuration stays.

``GatewayHttpProtocol`` is uvicorn's httptools protocol with a deadline on the request
head. uvicorn arms no timer on a new connection, and between requests only an idle timer
that the first byte cancels, so a client that sends half a head (or trickles one) holds
its connection for ever; uvicorn has no setting for this (``timeout_keep_alive`` only
covers idle time after a response), so the protocol adds one timer per connection. The
body's deadline is kept by the request middleware (``proxy.context``), where a 408 can
still be rendered as an OpenAI error. The protocol also answers the concurrency limit
itself, with an OpenAI error object rather than uvicorn's plain-text 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.app import create_app
from proxy.context import BODY_RECEIVED_KEY, REQUEST_BEGAN_KEY, RequestContextMiddleware
from proxy.drain import Drain
from proxy.errors import RequestTimeout, ServerOverloaded, SwitchyardError, encode_error
from proxy.settings import Settings

log = logging.getLogger("switchyard.server")

#: After the drain has ended what was still running, how long uvicorn waits for those
#: requests to write their last bytes before it cancels them outright.
_ENDING_GRACE_S = 5


def _error_bytes(error: SwitchyardError) -> bytes:
    """A whole HTTP response carrying ``error``, for the protocol to write itself."""
    body = encode_error(error)
    head = [
        f"HTTP/1.1 {error.http_status} {HTTPStatus(error.http_status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_OVERLOADED = encode_error(
    ServerOverloaded("The server is at its connection limit; retry shortly.")
)


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_OVERLOADED)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _OVERLOADED, "more_body": False})


class GatewayHttpProtocol(HttpToolsProtocol):
    """httptools protocol with a head deadline and an OpenAI-style concurrency limit.

    The deadline (``head_timeout_s``, set by ``protocol_for``) runs from the first byte
    of each request (or from the moment the connection is ready for one) until its head
    is complete. When it passes, a 408 is written if part of a head arrived, and the
    connection is closed.
    """

    head_timeout_s: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's own check counts the new connection against the limit as well, so
        # ``limit_concurrency: N`` served N - 1; this protocol applies the limit instead.
        self.connection_limit = self.limit_concurrency
        self.limit_concurrency = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head stalls behind a response still being written: nothing
            # can be written now; the timer is armed again when that response ends.
            return
        if self._head_begun:
            timeout = RequestTimeout(
                f"The request head did not arrive within {self.head_timeout_s:g} s."
            )
            self.transport.write(_error_bytes(timeout))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        self._arm_head_timer()
        self.scope[REQUEST_BEGAN_KEY] = self.loop.time()  # type: ignore[literal-required]

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head_begun = False
        limit = self.connection_limit
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            log.warning("connection limit reached (%d): answered 503", limit)
            app, self.app = self.app, _overloaded
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # Usually parsed before the request's task first runs: the middleware then knows
        # the whole body is in and arms no read deadline (see ``proxy.context``).
        self.scope[BODY_RECEIVED_KEY] = True  # type: ignore[literal-required]
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        # Bytes that start no request (bare CRLFs) cancel uvicorn's idle timer without
        # beginning a message; this timer still closes such a connection.
        if not pipelined and self._head_timer is None and not self.transport.is_closing():
            self._arm_head_timer()


def protocol_for(settings: Settings) -> type[GatewayHttpProtocol]:
    """The protocol class with this configuration's head deadline."""
    timeout = settings.server.request_read_timeout_s
    return type("GatewayHttpProtocol", (GatewayHttpProtocol,), {"head_timeout_s": timeout})


class GatewayServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        drain_timeout_s: float,
        app: RequestContextMiddleware | None = None,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_timeout_s = drain_timeout_s
        self.app = app
        self.on_started: Callable[[], object] | None = None
        """Called once the server listens (``proxy.workers`` tells its parent)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.hangup_before_start: Callable[[], bool] = lambda: False
        """Whether a SIGHUP arrived before this server installed its handler (a worker
        being spawned, ``proxy.workers``): treated as one during start-up."""
        self._reload_pending = False
        """A SIGHUP arrived during start-up: reload once the app is up (the file may have
        changed after this process read it)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain.begin()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if not self.started:
            return
        pending = self._reload_pending or self.hangup_before_start()
        if pending and (reloader := getattr(self.app, "reloader", None)):
            log.info("reloading the configuration for a SIGHUP received during start-up")
            reloader.reload_soon()
        if self.on_started is not None:
            self.on_started()

    def _hangup(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining:
            log.warning("SIGHUP received while stopping: ignored")
            return
        reloader = getattr(self.app, "reloader", None)
        if reloader is None or self._loop is None or not self.started:
            self._reload_pending = True
            log.info("SIGHUP received during start-up: the configuration is reloaded after it")
            return
        log.info("SIGHUP received: reloading the configuration")
        self._loop.call_soon_threadsafe(reloader.reload_soon)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            with super().capture_signals():
                yield
            return
        previous = signal.signal(signal.SIGHUP, self._hangup)
        try:
            with super().capture_signals():
                yield
        finally:
            signal.signal(signal.SIGHUP, previous)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.drain.begin()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if self.drain.in_flight:
            log.info(
                "draining: %d request(s) in flight, up to %g s",
                self.drain.in_flight,
                self.drain_timeout_s,
            )
        if not await self._drained(self.drain_timeout_s):
            ended = self.drain.end_remaining()
            log.warning("drain timeout: ended %d request(s) still running", ended)
            await self._drained(_ENDING_GRACE_S)
        await super().shutdown(sockets)

    async def _drained(self, seconds: float) -> bool:
        """Wait until nothing is in flight (True) or ``seconds`` pass (False). A second
        Ctrl+C (uvicorn's ``force_exit``) stops waiting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.drain.in_flight and not self.force_exit:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


def build_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    loop: str = "uvloop",
) -> GatewayServer:
    app: RequestContextMiddleware = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host or settings.server.host,
        port=port or settings.server.port,
        loop=loop,
        http=protocol_for(settings),
        limit_concurrency=settings.server.limit_concurrency,
        access_log=False,
        log_config=None,  # uvicorn's loggers go through the JSON handler (proxy.logs)
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=_ENDING_GRACE_S,
    )
    return GatewayServer(config, app.drain, settings.server.drain_timeout_s, app)
