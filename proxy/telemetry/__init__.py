"""Telemetry: the current request (for logs and upstream headers) and tracing spans.

``span`` and ``upstream_headers`` are what the rest of the code calls; ``Tracing`` (the
OpenTelemetry SDK) is imported only by the app factory, and only built when configured.
"""

from proxy.telemetry.config import TelemetryConfig
from proxy.telemetry.current import NO_SPAN, bind, current, span, unbind, upstream_headers

__all__ = ["NO_SPAN", "TelemetryConfig", "bind", "current", "span", "unbind", "upstream_headers"]
