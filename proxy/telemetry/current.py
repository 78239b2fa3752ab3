"""The request being served, as a context variable: what logs, spans and upstream
requests made on its behalf need to know about it, without it being passed down.

Set once per request by ``proxy.context.RequestContextMiddleware``. Nothing here imports
OpenTelemetry: with tracing off, a span site costs one context-variable read.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol


class Traced(Protocol):
    """What ``proxy.context.RequestInfo`` offers to telemetry."""

    request_id: str
    headers: list[tuple[bytes, bytes]]
    """The client request's raw ASGI headers (lower-case names)."""
    tracing: Any
    """The app's ``Tracing`` when tracing is on, else None."""

    @property
    def key_id(self) -> str | None: ...

    @property
    def team_id(self) -> str: ...


_current: ContextVar[Traced | None] = ContextVar("switchyard_request", default=None)


def bind(info: Traced) -> Token[Traced | None]:
    return _current.set(info)


def unbind(token: Token[Traced | None]) -> None:
    _current.reset(token)


def current() -> Traced | None:
    return _current.get()


class _NoSpan:
    """The span of a site when tracing is off: does nothing, costs nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None


NO_SPAN = _NoSpan()


def span(name: str, **attributes: Any) -> Any:
    """A child span of the request's current one, as a context manager; ``NO_SPAN``
    outside a request or with tracing off. An exception leaving it is recorded with
    its class as ``outcome`` (and ``retryable`` when the error says)."""
    info = _current.get()
    tracing = None if info is None else info.tracing
    if tracing is None:
        return NO_SPAN
    return tracing.child(name, attributes)


_TRACE_CONTEXT = (b"traceparent", b"tracestate")


def upstream_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` plus the request's ``x-request-id`` and its W3C trace context: when
    tracing, the current span's ``traceparent``; otherwise the client's own, passed on
    unchanged (W3C Trace Context asks a hop that does not trace to forward it), so a
    trace across the gateway stays whole either way. For every request sent upstream
    on a client's behalf."""
    info = _current.get()
    if info is None:
        return headers
    sent = {**headers, "x-request-id": info.request_id}
    if info.tracing is not None:
        info.tracing.inject(sent)
        return sent
    for name, value in info.headers:
        if name in _TRACE_CONTEXT:
            sent[name.decode()] = value.decode("latin-1")
    return sent
