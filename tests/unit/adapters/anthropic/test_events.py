"""SSE parsing of upstream byte streams, and Anthropic error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.anthropic.errors import error_from_response
from adapters.anthropic.events import SseEvent, parse_event, sse_events
from proxy.errors import RateLimited, UpstreamError, UpstreamRejected


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(*parts: bytes) -> list[list[SseEvent]]:
    return [batch async for batch in sse_events(_chunks(*parts))]


def test_parse_event_reads_name_and_data() -> None:
    event = parse_event(b'event: ping\ndata: {"type": "ping"}')

    assert event == SseEvent(
        "ping", b'{"type": "ping"}', b'event: ping\ndata: {"type": "ping"}\n\n'
    )


def test_parse_event_joins_data_lines_and_skips_comments() -> None:
    event = parse_event(b": keep-alive\nevent:x\ndata: a\ndata:b\nid: 3")

    assert event is not None
    assert (event.name, event.data) == ("x", b"a\nb")
    assert parse_event(b": only a comment") is None


async def test_events_split_across_reads_come_out_whole() -> None:
    batches = await collect(
        b"event: message_start\nda",
        b'ta: {"a": 1}\n\nevent: ping\ndata: {}\n',
        b"\nevent: message_stop\ndata: {}\n\n",
    )

    assert [[(e.name, e.data) for e in batch] for batch in batches] == [
        [("message_start", b'{"a": 1}')],
        [("ping", b"{}"), ("message_stop", b"{}")],
    ]


async def test_crlf_line_endings_even_split_between_reads() -> None:
    batches = await collect(b"event: a\r\ndata: 1\r", b"\n\r\nevent: b\r\ndata: 2\r\n\r\n")

    assert [(e.name, e.data, e.raw) for batch in batches for e in batch] == [
        ("a", b"1", b"event: a\ndata: 1\n\n"),
        ("b", b"2", b"event: b\ndata: 2\n\n"),
    ]


async def test_a_last_event_without_its_blank_line_is_still_read() -> None:
    batches = await collect(b"event: message_stop\ndata: {}")

    assert [(e.name, e.data) for batch in batches for e in batch] == [("message_stop", b"{}")]


# ----------------------------------------------------------------------------- errors


def _body(etype: str, message: str) -> bytes:
    return b'{"type": "error", "error": {"type": "%s", "message": "%s"}, "request_id": "req_1"}' % (
        etype.encode(),
        message.encode(),
    )


def test_429_is_rate_limited_with_its_retry_after() -> None:
    error = error_from_response(
        429, _body("rate_limit_error", "Too many"), httpx.Headers({"retry-after": "17"})
    )

    assert isinstance(error, RateLimited)
    assert error.retry_after_s == 17.0
    assert error.headers["Retry-After"] == "17"
    assert error.message == "Upstream rate limit: Too many"


def test_529_overloaded_is_a_retryable_503() -> None:
    error = error_from_response(529, _body("overloaded_error", "Overloaded"), httpx.Headers())

    assert type(error) is UpstreamError
    assert error.retryable
    assert (error.http_status, error.error_code) == (503, "upstream_overloaded")


def test_500_is_a_retryable_502() -> None:
    error = error_from_response(500, _body("api_error", "Internal"), httpx.Headers())

    assert type(error) is UpstreamError
    assert (error.http_status, error.retryable) == (502, True)
    assert error.message == "Upstream error 500: Internal"


@pytest.mark.parametrize(
    ("status", "etype"),
    [(400, "invalid_request_error"), (404, "not_found_error"), (413, "request_too_large")],
)
def test_4xx_keeps_status_type_and_message(status: int, etype: str) -> None:
    error = error_from_response(status, _body(etype, "Nope"), httpx.Headers())

    assert isinstance(error, UpstreamRejected)
    assert (error.http_status, error.error_type, error.message) == (status, etype, "Nope")
    assert not error.retryable


def test_401_says_it_is_the_deployments_key() -> None:
    error = error_from_response(401, _body("authentication_error", "invalid x-api-key"), {})

    assert isinstance(error, UpstreamRejected)
    assert error.http_status == 401
    assert error.message == (
        "The Anthropic upstream refused this deployment's API key: invalid x-api-key"
    )


def test_a_body_that_is_not_anthropics_is_the_message() -> None:
    error = error_from_response(502, b"<html>Bad gateway</html>", httpx.Headers())

    assert error.message == "Upstream error 502: <html>Bad gateway</html>"
