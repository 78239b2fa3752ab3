"""The openai adapter's Responses API pass-through: usage read from ``input_tokens`` /
``output_tokens``, event streams re-framed unchanged and checked for a terminal event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from adapters.base import CallStats
from adapters.openai.upstream import probe_responses_usage, responses_events
from proxy.errors import UpstreamError
from tests.support.fake_openai_responses import response_object
from tests.support.fake_openai_responses import responses_events as fake_events


def test_usage_of_a_response_body_and_of_a_completed_event() -> None:
    stats = CallStats()
    body = json.dumps(response_object({"input": "one two three"}, "r1")).encode()
    assert probe_responses_usage(body, stats) is None
    assert (stats.prompt_tokens, stats.completion_tokens) == (3, 6)
    event = json.dumps({"type": "response.completed", "response": json.loads(body)}).encode()
    other = CallStats()
    assert probe_responses_usage(event, other) == "response.completed"
    assert (other.prompt_tokens, other.completion_tokens) == (3, 6)


def test_malformed_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        probe_responses_usage(b"{nope", CallStats())


async def _split(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _stream(events: list[dict[str, object]]) -> bytes:
    return b"".join(f"event: {e['type']}\r\ndata: {json.dumps(e)}\r\n\r\n".encode() for e in events)


async def test_a_stream_is_reframed_unchanged_and_its_usage_noted() -> None:
    events = fake_events({"input": "hi there"}, "r2")
    stats = CallStats()
    blocks = [b async for b in responses_events(_split(_stream(events), 7), stats, "m")]
    assert b"".join(blocks) == _stream(events).replace(b"\r\n", b"\n")
    assert all(block.endswith(b"\n\n") for block in blocks)
    assert (stats.prompt_tokens, stats.completion_tokens) == (2, 5)


async def test_a_stream_cut_before_its_terminal_event_is_an_upstream_error() -> None:
    events = fake_events({"input": "hi"}, "r3")[:-1]
    with pytest.raises(UpstreamError, match="ended the stream before it was complete"):
        _ = [b async for b in responses_events(_split(_stream(events), 50), CallStats(), "m")]
