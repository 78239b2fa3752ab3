"""Tracing and request-id propagation, through the real gateway and the fake upstream.

With tracing off, every upstream request still carries the request's ``x-request-id``
(the one the client gets back). With tracing on (an in-memory exporter handed to the
app factory), a request is a span tree — server span, routing attempt(s), upstream
call, and extension spans for RAG retrieval and tool calls — and the upstream receives
a W3C ``traceparent`` naming the upstream-call span. ``test_telemetry_otlp.py`` checks
the OTLP/HTTP export itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from proxy.app import create_app
from proxy.keys import key_id
from proxy.settings import settings_from_mapping
from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, status_fault, wait_until
from tests.support.rag_fakes import ScriptedChatUpstream, embeddings_upstream
from tests.support.servers import RunningServer, serve_asgi

PROMPT = "the secret word is marmalade"
USER = [{"role": "user", "content": PROMPT}]


def traced_gateway(config: dict[str, Any], tmp: Path) -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    server = {"data_dir": str(tmp), **config.get("server", {})}
    settings = settings_from_mapping({**config, "server": server}, "<test>")
    return create_app(settings, span_exporter=exporter), exporter


@pytest.fixture
def traced(fake_url: str, tmp_path: Path) -> Iterator[tuple[RunningServer, InMemorySpanExporter]]:
    config = {
        "server": {"api_keys": [CLIENT_KEY]},
        "models": [
            model_entry("m", "upstream-gpt", fake_url),
            model_entry("flaky", "upstream-flaky", fake_url, fallbacks=["m"]),
        ],
    }
    app, exporter = traced_gateway(config, tmp_path)
    with serve_asgi(app) as running:
        yield running, exporter


def finished(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    """The spans of the request just answered: its server span ends just after the
    client has the whole response, so it is waited for."""
    assert wait_until(lambda: bool(named(exporter.get_finished_spans(), "POST chat")))
    return exporter.get_finished_spans()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def names_as_parent(traceparent: str, span: ReadableSpan) -> bool:
    """Whether a W3C ``traceparent`` names ``span`` as the parent, sampled."""
    version, trace_id, parent, flags = traceparent.split("-")
    context = span.get_span_context()
    return (version, trace_id, parent) == (
        "00",
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    ) and bool(int(flags, 16) & 1)


def all_attribute_text(spans: tuple[ReadableSpan, ...]) -> str:
    return json.dumps([dict(s.attributes or {}) for s in spans], default=str)


# ------------------------------------------------------------------ tracing off


def test_upstream_gets_the_request_id_without_tracing(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    with sdk(gateway) as client:
        plain = client.chat.completions.with_raw_response.create(model="gpt-test", messages=USER)
        plain_sent = fake.last("/v1/chat/completions").headers
        streamed = client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=USER, stream=True
        )
        list(streamed.parse())
        stream_sent = fake.last("/v1/chat/completions").headers
        embedded = client.embeddings.with_raw_response.create(model="embed-test", input="x")
        embed_sent = fake.last("/v1/embeddings").headers
    ids = [r.headers["x-request-id"] for r in (plain, streamed, embedded)]
    assert len(set(ids)) == 3
    assert [h["x-request-id"] for h in (plain_sent, stream_sent, embed_sent)] == ids
    assert "traceparent" not in plain_sent  # tracing is off by default


def test_a_client_request_id_is_kept_and_forwarded(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": USER},
        headers={"Authorization": f"Bearer {CLIENT_KEY}", "X-Request-Id": "client-chosen-17"},
        timeout=15,
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-chosen-17"
    assert fake.last("/v1/chat/completions").headers["x-request-id"] == "client-chosen-17"


def test_without_tracing_a_clients_trace_context_is_passed_on_unchanged(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": USER},
        headers={
            "Authorization": f"Bearer {CLIENT_KEY}",
            "traceparent": parent,
            "tracestate": "vendor=abc",
        },
        timeout=15,
    )
    assert response.status_code == 200
    sent = fake.last("/v1/chat/completions").headers
    assert (sent["traceparent"], sent["tracestate"]) == (parent, "vendor=abc")


# ------------------------------------------------------------------- tracing on


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_is_a_span_tree_whose_trace_reaches_the_upstream(
    traced: tuple[RunningServer, InMemorySpanExporter], fake: FakeOpenAI, stream: bool
) -> None:
    gateway, exporter = traced
    with sdk(gateway) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=USER, stream=stream
        )
        if stream:
            list(raw.parse())
    sent = fake.last("/v1/chat/completions").headers
    spans = finished(exporter)
    [server] = named(spans, "POST chat")
    [attempt] = named(spans, "routing.attempt")
    [upstream] = named(spans, "upstream")

    assert server.kind is SpanKind.SERVER and server.parent is None
    assert parent_id(attempt) == server.context.span_id
    assert parent_id(upstream) == attempt.context.span_id
    assert {s.context.trace_id for s in (server, attempt, upstream)} == {server.context.trace_id}
    # The upstream sees the trace, with the upstream-call span as its parent.
    assert names_as_parent(sent["traceparent"], upstream)
    assert sent["x-request-id"] == raw.headers["x-request-id"]

    attributes = dict(server.attributes or {})
    assert attributes["http.route"] == "chat"
    assert attributes["switchyard.model"] == "m"
    assert attributes["switchyard.team_id"] == "default"
    assert attributes["switchyard.key_id"] == key_id(CLIENT_KEY)
    assert attributes["http.response.status_code"] == 200
    assert attributes["switchyard.request_id"] == raw.headers["x-request-id"]
    assert dict(attempt.attributes or {}) == {
        "deployment": "openai:127.0.0.1/upstream-gpt",
        "model": "m",
        "attempt": 1,
        "fallback": False,
        "outcome": "ok",
    }
    assert upstream.attributes["http.response.status_code"] == 200
    # Neither the prompt nor any key is in a span.
    text = all_attribute_text(spans)
    assert "marmalade" not in text
    assert CLIENT_KEY not in text and UPSTREAM_KEY not in text


def test_a_retry_and_its_fallback_are_sibling_attempt_spans(
    traced: tuple[RunningServer, InMemorySpanExporter], fake: FakeOpenAI
) -> None:
    gateway, exporter = traced
    fake.faults["upstream-flaky"] = status_fault(503)
    with sdk(gateway) as client:
        client.chat.completions.create(model="flaky", messages=USER)
    spans = finished(exporter)
    [server] = named(spans, "POST chat")
    failed, fell_back = sorted(named(spans, "routing.attempt"), key=lambda s: s.start_time or 0)
    assert parent_id(failed) == parent_id(fell_back) == server.context.span_id
    assert dict(failed.attributes or {}) == {
        "deployment": "openai:127.0.0.1/upstream-flaky",
        "model": "flaky",
        "attempt": 1,
        "fallback": False,
        "outcome": "UpstreamError",
        "retryable": True,
    }
    assert fell_back.attributes["model"] == "m"
    assert fell_back.attributes["fallback"] is True
    assert fell_back.attributes["attempt"] == 2
    assert fell_back.attributes["outcome"] == "ok"
    upstreams = named(spans, "upstream")
    assert sorted(parent_id(u) for u in upstreams) == sorted(
        [failed.context.span_id, fell_back.context.span_id]
    )
    assert {u.attributes["http.response.status_code"] for u in upstreams} == {503, 200}
    assert server.attributes["switchyard.attempts"] == 2


def test_an_incoming_traceparent_is_continued(
    traced: tuple[RunningServer, InMemorySpanExporter], fake: FakeOpenAI
) -> None:
    gateway, exporter = traced
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with sdk(gateway) as client:
        client.chat.completions.create(
            model="m",
            messages=USER,
            extra_headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
    [server] = named(finished(exporter), "POST chat")
    assert f"{server.context.trace_id:032x}" == trace_id
    assert server.parent is not None and f"{server.parent.span_id:016x}" == caller_span
    sent = fake.last("/v1/chat/completions").headers["traceparent"]
    assert sent.split("-")[1] == trace_id


def test_an_upstream_status_error_is_recorded_on_the_server_span(
    traced: tuple[RunningServer, InMemorySpanExporter], fake: FakeOpenAI
) -> None:
    gateway, exporter = traced
    fake.faults["upstream-gpt"] = status_fault(500)
    with sdk(gateway) as client, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=USER)
    [server] = named(finished(exporter), "POST chat")
    assert server.attributes["http.response.status_code"] == 502
    assert server.status.is_ok is False


# --------------------------------------------------------------- extension spans


@pytest.fixture
def rag_gateway(
    tmp_path: Path,
) -> Iterator[tuple[RunningServer, InMemorySpanExporter, ScriptedChatUpstream]]:
    with embeddings_upstream(ScriptedChatUpstream()) as (upstream, url):
        assert isinstance(upstream, ScriptedChatUpstream)
        models = [
            {"name": name, "adapter": "openai", "model": upstream_id, "base_url": url,
             "api_key": "sk-upstream", "timeout_s": 10}
            for name, upstream_id in (("smollm2-135m-embed", "bag-of-words"), ("chat", "scripted"))
        ]  # fmt: skip
        (tmp_path / "allowed").mkdir()
        config = {"models": models, "rag": {"allowed_dirs": [str(tmp_path / "allowed")]}}
        app, exporter = traced_gateway(config, tmp_path / "data")
        with serve_asgi(app) as running:
            yield running, exporter, upstream


def test_rag_retrieval_and_each_tool_call_are_spans_under_the_request(
    rag_gateway: tuple[RunningServer, InMemorySpanExporter, ScriptedChatUpstream],
) -> None:
    gateway, exporter, upstream = rag_gateway
    api = f"{gateway.url}/v1/switchyard/rag/collections"
    assert httpx.post(api, json={"name": "notes"}, timeout=30).status_code == 201
    added = httpx.post(
        f"{api}/notes/documents",
        json={"documents": [{"id": "gulls", "text": "Gulls nest on the cliffs."}]},
        timeout=30,
    )
    assert added.status_code == 200, added.text
    exporter.clear()
    upstream.tool_arguments = {"query": "where do gulls nest", "collection": "notes"}
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Where do gulls nest?"}],
        extra_headers={"X-Switchyard-RAG": "notes"},
        extra_body={"switchyard": {"tools": ["rag_search"]}},
    )
    assert "Gulls nest on the cliffs." in (reply.choices[0].message.content or "")

    spans = finished(exporter)
    by_id = {s.context.span_id: s for s in spans}
    [server] = named(spans, "POST chat")
    [retrieval] = named(spans, "rag.retrieval")
    [tool] = named(spans, "tool.call")
    hooks = {s.attributes["extension"]: s for s in named(spans, "extension.before_request")}
    assert parent_id(hooks["rag"]) == server.context.span_id
    assert parent_id(retrieval) == hooks["rag"].context.span_id
    assert dict(tool.attributes or {}) == {"tool": "rag_search", "outcome": "ok"}

    def ancestors(span: ReadableSpan) -> list[str]:
        names = []
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    assert ancestors(tool)[-1] == "POST chat"
    # The query's embedding is a routing attempt under the retrieval (and the tool's).
    embeds = [
        s
        for s in named(spans, "routing.attempt")
        if s.attributes["deployment"] == "openai:127.0.0.1/bag-of-words"
    ]
    embed_parents = {ancestors(s)[0] for s in embeds}
    assert embed_parents == {"rag.retrieval", "tool.call"}
    # Two model calls (the tool call, then the answer): two attempts right under the request.
    chats = [s for s in named(spans, "routing.attempt") if s.attributes["model"] == "chat"]
    assert len(chats) == 2
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}
    assert "gulls" not in all_attribute_text(spans).lower()
