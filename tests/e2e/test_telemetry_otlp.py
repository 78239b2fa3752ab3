"""Spans leave a running ``switchyard serve`` over OTLP/HTTP, as a collector receives them.

The receiver is a small HTTP server in the test that decodes each POST to
``/v1/traces`` as the protobuf ``ExportTraceServiceRequest`` (``opentelemetry-proto``)
and answers as a collector does. The gateway is stopped with SIGTERM before the
assertions: shutting down flushes the batch of spans still queued.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.conftest import CLIENT_KEY, model_entry
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import answer_lifespan, read_body, serve_asgi, serve_process


class OtlpReceiver:
    """Records every span exported to it, with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        status, answer = 404, b""
        if scope["method"] == "POST" and scope["path"] == "/v1/traces":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "attributes": _attributes(span.attributes),
                                "resource": resource,
                            }
                        )
            status, answer = 200, ExportTraceServiceResponse().SerializeToString()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": answer})


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


def test_spans_reach_an_otlp_http_collector(
    fake: FakeOpenAI, fake_url: str, tmp_path: Path
) -> None:
    receiver = OtlpReceiver()
    with serve_asgi(receiver) as collector:
        config = {
            "defaults": False,
            "server": {"api_keys": [CLIENT_KEY], "data_dir": str(tmp_path / "data")},
            "telemetry": {
                "otlp_endpoint": collector.url,
                "service_name": "switchyard-otlp-test",
                "headers": {"x-collector-token": "collector-secret"},
            },
            "models": [model_entry("m", "upstream-gpt", fake_url)],
        }
        with serve_process(config, tmp_path) as served:
            response = httpx.post(
                f"{served.url}/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            served.proc.send_signal(signal.SIGTERM)
            assert served.proc.wait(timeout=60) == -signal.SIGTERM  # after a clean shutdown
    sent = fake.last("/v1/chat/completions").headers
    trace_id = sent["traceparent"].split("-")[1]
    spans = {s["name"]: s for s in receiver.spans if s["trace_id"] == trace_id}
    assert set(spans) == {"POST chat", "routing.attempt", "upstream"}
    server, attempt, upstream = spans["POST chat"], spans["routing.attempt"], spans["upstream"]
    assert server["parent_span_id"] == ""
    assert attempt["parent_span_id"] == server["span_id"]
    assert upstream["parent_span_id"] == attempt["span_id"]
    assert sent["traceparent"].split("-")[2] == upstream["span_id"]
    assert server["attributes"]["switchyard.request_id"] == response.headers["x-request-id"]
    assert server["attributes"]["http.response.status_code"] == 200
    assert server["resource"]["service.name"] == "switchyard-otlp-test"
    assert all(h.get("x-collector-token") == "collector-secret" for h in receiver.headers)
