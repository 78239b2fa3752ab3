"""OpenTelemetry tracing: one tracer provider per app, built only when tracing is on.

The server span of a request starts in ``proxy.context`` (continuing a client's
``traceparent``) and is the current span while the app runs, so the child spans opened
with ``proxy.telemetry.span`` (extensions, routing attempts, the upstream call) hang
under it. Spans carry route, model, team and key ids, deployments and outcomes; never
a prompt, a path with an id in it, an exception message or a header value.

The provider is the app's own (not OpenTelemetry's global one), so several apps in one
process (the tests) keep their spans apart; ``aclose`` flushes what is still queued.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from proxy.telemetry.config import TelemetryConfig

_INCOMING = (b"traceparent", b"tracestate")


class Tracing:
    def __init__(self, config: TelemetryConfig, exporter: SpanExporter | None = None) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        if config.traces_url is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp = OTLPSpanExporter(endpoint=config.traces_url, headers=dict(config.headers))
            self.provider.add_span_processor(BatchSpanProcessor(otlp))
        if exporter is not None:  # tests: spans handed over as they end
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("switchyard")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def create(
        cls, config: TelemetryConfig, exporter: SpanExporter | None = None
    ) -> Tracing | None:
        """The app's tracing, or None (tracing off) without an endpoint or exporter."""
        if config.otlp_endpoint is None and exporter is None:
            return None
        return cls(config, exporter)

    def start_request(self, method: str, headers: list[tuple[bytes, bytes]]) -> tuple[Any, Any]:
        """Open the request's server span (a child of the client's ``traceparent``, if
        it sent one) and make it current; returns what ``finish_request`` needs."""
        carrier = {k.decode(): v.decode("latin-1") for k, v in headers if k in _INCOMING}
        parent = self.propagator.extract(carrier) if carrier else None
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    def finish_request(self, opened: tuple[Any, Any], info: Any, method: str, status: int) -> None:
        span, token = opened
        otel_context.detach(token)
        span.update_name(f"{method} {info.route}")
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.route": info.route,
            "http.response.status_code": status,
            "switchyard.request_id": info.request_id,
            "switchyard.model": info.model,
            "switchyard.team_id": info.team_id,
            "switchyard.attempts": info.stats.attempts,
        }
        if info.key_id is not None:
            attributes["switchyard.key_id"] = info.key_id
        if info.stats.deployment:
            attributes["switchyard.deployment"] = info.stats.deployment
        span.set_attributes(attributes)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def child(self, name: str, attributes: dict[str, Any]) -> _Child:
        return _Child(self.tracer, name, attributes)

    def inject(self, carrier: dict[str, str]) -> None:
        """Add the current span's ``traceparent`` (and ``tracestate``) to ``carrier``."""
        self.propagator.inject(carrier)

    async def aclose(self) -> None:
        """Export what is queued and stop (the exporter's HTTP call blocks: a thread)."""
        await asyncio.to_thread(self.provider.shutdown)


class _Child:
    """A child span as a context manager. An exception leaving it sets ``outcome`` to
    the exception's class (its message, which may quote an upstream, is not kept)."""

    __slots__ = ("_manager", "_outcome_set", "span")

    def __init__(self, tracer: Any, name: str, attributes: dict[str, Any]) -> None:
        self._manager = tracer.start_as_current_span(
            name,
            attributes=attributes,
            kind=SpanKind.CLIENT if name == "upstream" else SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._outcome_set = False
        self.span: Any = None

    def __enter__(self) -> _Child:
        self.span = self._manager.__enter__()
        return self

    def set(self, key: str, value: Any) -> None:
        self._outcome_set = self._outcome_set or key == "outcome"
        self.span.set_attribute(key, value)

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> Any:
        if error is not None:
            self.span.set_attribute("outcome", type(error).__name__)
            retryable = getattr(error, "retryable", None)
            if isinstance(retryable, bool):
                self.span.set_attribute("retryable", retryable)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        elif not self._outcome_set:
            self.span.set_attribute("outcome", "ok")
        return self._manager.__exit__(kind, error, tb)
