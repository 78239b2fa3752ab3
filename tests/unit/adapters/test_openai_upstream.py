"""Error mapping and SSE re-framing for OpenAI-compatible upstreams."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from adapters.base import CallStats
from adapters.openai.upstream import (
    error_from_response,
    probe_usage,
    retry_after_seconds,
    sse_events,
)
from adapters.transport import mapped_transport_errors
from proxy.errors import (
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# ------------------------------------------------------------------------ Retry-After


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers)) == expected


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)

    seconds = retry_after_seconds(httpx.Headers({"retry-after": when}))

    assert seconds is not None
    assert 100 < seconds <= 120


def test_retry_after_date_in_the_past_is_zero() -> None:
    when = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert retry_after_seconds(httpx.Headers({"retry-after": when})) == 0.0


# ----------------------------------------------------------------------- error mapping


def _openai_error(message: str, **fields: object) -> bytes:
    return json.dumps({"error": {"message": message, **fields}}).encode()


def test_4xx_passes_through_with_everything_the_upstream_said() -> None:
    body = _openai_error(
        "maximum context length is 8192 tokens",
        type="invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    )

    error = error_from_response(400, body, httpx.Headers())

    assert isinstance(error, UpstreamRejected)
    assert not error.retryable
    assert error.http_status == 400
    envelope = error.body().error
    assert envelope.message == "maximum context length is 8192 tokens"
    assert envelope.type == "invalid_request_error"
    assert envelope.param == "messages"
    assert envelope.code == "context_length_exceeded"


def test_numeric_error_codes_become_strings() -> None:
    error = error_from_response(404, _openai_error("no such model", code=404), httpx.Headers())
    assert error.body().error.code == "404"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "model not loaded"}', "model not loaded"),  # Ollama, llama.cpp
        (b'{"detail": "Not authenticated"}', "Not authenticated"),  # FastAPI servers
        (b'{"message": "bad thing"}', "bad thing"),
        (b"plain text failure", "plain text failure"),
        (b"", "HTTP 403"),
    ],
)
def test_non_openai_error_bodies_keep_their_message(body: bytes, message: str) -> None:
    error = error_from_response(403, body, httpx.Headers())

    assert isinstance(error, UpstreamRejected)
    assert error.http_status == 403
    assert error.message == message
    assert error.body().error.type == "invalid_request_error"


def test_429_is_rate_limited_with_retry_after() -> None:
    error = error_from_response(
        429, _openai_error("slow down"), httpx.Headers({"retry-after": "12"})
    )

    assert isinstance(error, RateLimited)
    assert error.retryable
    assert error.retry_after_s == 12.0
    assert error.headers["Retry-After"] == "12"
    assert error.http_status == 429
    assert "slow down" in error.message


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_5xx_is_a_retryable_502(status: int) -> None:
    error = error_from_response(status, _openai_error("overloaded"), httpx.Headers())

    assert type(error) is UpstreamError
    assert error.retryable
    assert error.http_status == 502
    assert "overloaded" in error.message


# ------------------------------------------------------------------- transport errors


def _raise(exc: Exception) -> None:
    with mapped_transport_errors("my-model"):
        raise exc


def _chained(outer: Exception, cause: Exception) -> Exception:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), UpstreamUnavailable),
        (httpx.RemoteProtocolError("peer closed"), UpstreamUnavailable),
        (httpx.ReadError("reset"), UpstreamUnavailable),
        (httpx.ReadTimeout("slow"), UpstreamTimeout),
        (httpx.ConnectTimeout("slow"), UpstreamTimeout),
        (httpx.PoolTimeout("busy"), UpstreamTimeout),
        # httpx-aiohttp reports a refused connection as ConnectTimeout; the cause tells.
        (
            _chained(httpx.ConnectTimeout("x"), aiohttp.ClientConnectionError("refused")),
            UpstreamUnavailable,
        ),
        (
            _chained(httpx.ReadTimeout("x"), aiohttp.SocketTimeoutError("read")),
            UpstreamTimeout,
        ),
    ],
)
def test_transport_errors_are_typed(exc: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught:
        _raise(exc)

    assert type(caught.value) is expected
    assert "my-model" in str(caught.value)
    assert caught.value.retryable  # type: ignore[attr-defined]


def test_timeouts_are_504() -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        _raise(httpx.ReadTimeout("slow"))
    assert caught.value.http_status == 504


# ------------------------------------------------------------------------------ usage


def test_probe_usage_reads_only_usage() -> None:
    stats = CallStats()
    body = b'{"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,'
    body += b' "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 1}}}'

    probe_usage(body, stats)

    assert (stats.prompt_tokens, stats.completion_tokens) == (3, 4)


@pytest.mark.parametrize("body", [b"not json", b'{"usage": null}', b"{}", b'{"usage": "x"}'])
def test_probe_usage_ignores_bodies_without_usable_usage(body: bytes) -> None:
    stats = CallStats()
    probe_usage(body, stats)
    assert (stats.prompt_tokens, stats.completion_tokens) == (0, 0)


# -------------------------------------------------------------------------------- SSE


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _collect(*parts: bytes, stats: CallStats | None = None) -> list[bytes]:
    return [b async for b in sse_events(_chunks(*parts), stats or CallStats(), "m")]


EVENT_A = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
EVENT_B = b'data: {"choices": [{"delta": {"content": "b"}}]}\n\n'
USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,'
USAGE += b' "total_tokens": 7}}\n\n'
DONE = b"data: [DONE]\n\n"


async def test_whole_events_are_forwarded_as_the_upstreams_bytes() -> None:
    blocks = await _collect(EVENT_A, EVENT_B, DONE)

    assert blocks == [EVENT_A, EVENT_B]


async def test_events_split_anywhere_are_reassembled() -> None:
    stream = EVENT_A + EVENT_B + USAGE + DONE
    stats = CallStats()

    blocks = await _collect(*(stream[i : i + 1] for i in range(len(stream))), stats=stats)

    assert b"".join(blocks) == EVENT_A + EVENT_B + USAGE
    assert all(block.endswith(b"\n\n") for block in blocks)
    assert (stats.prompt_tokens, stats.completion_tokens) == (5, 2)


async def test_several_events_in_one_read_and_done_in_the_middle() -> None:
    trailing = b'data: {"after": "done"}\n\n'

    blocks = await _collect(EVENT_A + EVENT_B + DONE + trailing)

    assert blocks == [EVENT_A + EVENT_B]


async def test_crlf_line_endings_are_normalised_even_when_split() -> None:
    crlf = EVENT_A.replace(b"\n", b"\r\n") + DONE.replace(b"\n", b"\r\n")
    cut = crlf.index(b"\r\n\r\n") + 1  # between \r and \n

    blocks = await _collect(crlf[:cut], crlf[cut:])

    assert blocks == [EVENT_A]


async def test_comments_and_event_fields_are_tolerated() -> None:
    keepalive = b": keep-alive\n\n"
    named = b'event: message\nid: 7\ndata: {"x": 1}\n\n'

    blocks = await _collect(keepalive, named, DONE)

    assert b"".join(blocks) == keepalive + named


async def test_malformed_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        await _collect(EVENT_A, b"data: {not json\n\n", DONE)
    assert "malformed" in caught.value.message
    assert caught.value.http_status == 502


async def test_a_line_that_is_not_sse_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        await _collect(b"<html>Bad Gateway</html>\n\n")


async def test_malformed_data_after_good_events_fails_after_they_were_yielded() -> None:
    received: list[bytes] = []
    with pytest.raises(UpstreamError):
        async for block in sse_events(_chunks(EVENT_A, b"data: oops\n\n"), CallStats(), "m"):
            received.append(block)
    assert received == [EVENT_A]


async def test_a_stream_that_ends_before_done_is_an_upstream_error() -> None:
    received: list[bytes] = []
    with pytest.raises(UpstreamError) as caught:
        async for block in sse_events(_chunks(EVENT_A, EVENT_B), CallStats(), "m"):
            received.append(block)
    assert received == [EVENT_A, EVENT_B]
    assert "[DONE]" in caught.value.message


async def test_final_event_without_its_blank_line_is_still_read() -> None:
    blocks = await _collect(EVENT_A, b"data: [DONE]")

    assert blocks == [EVENT_A]


# ------------------------------------------------------------- usage the client hid


async def _pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.parametrize("framing", ["one line", "event field"])
async def test_a_usage_chunk_the_client_did_not_ask_for_is_counted_and_not_forwarded(
    framing: str,
) -> None:
    content = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    usage_json = b'{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}'
    usage = (
        b"data: " + usage_json + b"\n\n"
        if framing == "one line"
        else b"event: chunk\ndata: " + usage_json + b"\n\n"
    )
    stats = CallStats()
    out = b"".join(
        [
            b
            async for b in sse_events(
                _pieces(content + usage, b"data: [DONE]\n\n"), stats, "m", hide_usage=True
            )
        ]
    )
    assert out == content
    assert (stats.prompt_tokens, stats.completion_tokens) == (7, 3)


async def test_usage_on_a_chunk_with_choices_is_forwarded_even_when_hidden() -> None:
    both = (
        b'data: {"choices":[{"index":0,"delta":{}}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    )
    stats = CallStats()
    out = b"".join(
        [
            b
            async for b in sse_events(
                _pieces(both + b"data: [DONE]\n\n"), stats, "m", hide_usage=True
            )
        ]
    )
    assert out == both
    assert stats.completion_tokens == 2


async def test_without_hiding_the_usage_chunk_is_forwarded() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
    out = b"".join(
        [b async for b in sse_events(_pieces(usage + b"data: [DONE]\n\n"), CallStats(), "m")]
    )
    assert out == usage
