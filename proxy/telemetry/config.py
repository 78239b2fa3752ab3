"""The ``telemetry:`` section: OpenTelemetry tracing, off unless an endpoint is set."""

from __future__ import annotations

from typing import Annotated

import msgspec


class TelemetryConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    otlp_endpoint: str | None = None
    """Base URL of an OTLP/HTTP collector (``http://collector:4318``); spans are posted
    to ``{otlp_endpoint}/v1/traces``. Unset: no tracing, and no cost on the hot path
    (the request id is still sent upstream)."""
    service_name: str = "switchyard"
    """``service.name`` of the spans, as the tracing backend lists it."""
    sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    """Share of new traces recorded (0 to 1). A request that arrives with a
    ``traceparent`` follows its caller's sampling decision instead."""
    headers: dict[str, str] = {}
    """Headers sent with every export (a collector's API key: use ``env:NAME``)."""

    def __post_init__(self) -> None:
        endpoint = self.otlp_endpoint
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ValueError("otlp_endpoint must be an http:// or https:// URL")

    @property
    def traces_url(self) -> str | None:
        """Where spans are posted: the OTLP/HTTP traces path under the endpoint."""
        if self.otlp_endpoint is None:
            return None
        base = self.otlp_endpoint.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"
