"""SSE framing of adapter streams, and the OpenAI error shape of every typed error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    SwitchyardError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    encode_error,
    sse_error_frame,
)
from proxy.schemas.chat import ChatCompletionChunk, ChunkChoice, Delta
from proxy.streaming import DONE, sse_bytes


class Source:
    """An adapter-like stream that records whether it was closed."""

    def __init__(self, items: list[Any], failure: Exception | None = None) -> None:
        self.items = items
        self.failure = failure
        self.closed = False

    async def run(self) -> AsyncIterator[Any]:
        try:
            for item in self.items:
                yield item
            if self.failure is not None:
                raise self.failure
        finally:
            self.closed = True


def chunk(text: str) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id="c",
        created=1,
        model="m",
        choices=[ChunkChoice(index=0, delta=Delta(content=text), finish_reason=None)],
    )


async def frames(source: Source) -> list[bytes]:
    return [frame async for frame in sse_bytes(source.run())]


async def test_bytes_pass_through_structs_are_encoded_and_done_ends_the_stream() -> None:
    raw = b'data: {"raw": true}\n\n'
    source = Source([raw, chunk("hi")])

    out = await frames(source)

    assert out[0] is raw  # forwarded without re-encoding
    assert out[1].startswith(b"data: ") and out[1].endswith(b"\n\n")
    assert json.loads(out[1][6:])["choices"][0]["delta"] == {"content": "hi"}
    assert out[2] == DONE
    assert source.closed


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (UpstreamTimeout("The upstream for 'm' timed out."), "upstream_timeout"),
        (RuntimeError("bug"), "upstream_error"),
    ],
)
async def test_failure_after_the_first_byte_ends_with_an_error_frame(
    failure: Exception, code: str
) -> None:
    source = Source([b"data: {}\n\n"], failure)

    out = await frames(source)

    assert len(out) == 2
    error = json.loads(out[1].removeprefix(b"data: "))["error"]
    assert error["code"] == code
    assert DONE not in out
    assert "bug" not in error["message"]  # internal details stay in the log


async def test_closing_the_sse_stream_closes_the_source() -> None:
    source = Source([b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"])
    stream = sse_bytes(source.run())

    assert await anext(stream) == b"data: 1\n\n"
    await stream.aclose()  # type: ignore[attr-defined]

    assert source.closed


@pytest.mark.parametrize(
    ("error", "status", "etype", "code"),
    [
        (InvalidRequest("bad", param="temperature"), 400, "invalid_request_error", None),
        (AuthenticationFailed("no"), 401, "invalid_request_error", "invalid_api_key"),
        (ModelNotFound("gone", param="model"), 404, "invalid_request_error", "model_not_found"),
        (PayloadTooLarge("big"), 413, "invalid_request_error", "payload_too_large"),
        (RateLimited("slow"), 429, "rate_limit_error", "rate_limit_exceeded"),
        (UpstreamError("x"), 502, "upstream_error", "upstream_error"),
        (UpstreamUnavailable("x"), 502, "upstream_error", "upstream_unavailable"),
        (UpstreamTimeout("x"), 504, "timeout_error", "upstream_timeout"),
        (SwitchyardError("x"), 500, "server_error", None),
    ],
)
def test_error_classes_render_as_openai_errors(
    error: SwitchyardError, status: int, etype: str, code: str | None
) -> None:
    body = json.loads(encode_error(error))

    assert error.http_status == status
    assert body == {
        "error": {"message": error.message, "type": etype, "param": error.param, "code": code}
    }


def test_upstream_rejection_keeps_the_upstream_status_and_fields() -> None:
    error = UpstreamRejected(
        422, "bad sampler", type="invalid_request_error", param="top_k", code=None
    )

    assert error.http_status == 422
    assert json.loads(encode_error(error))["error"] == {
        "message": "bad sampler",
        "type": "invalid_request_error",
        "param": "top_k",
        "code": None,
    }


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (2.4, "2"), (29.6, "30")])
def test_rate_limited_sets_a_whole_second_retry_after(seconds: float, header: str) -> None:
    assert RateLimited("x", retry_after_s=seconds).headers["Retry-After"] == header


def test_rate_limited_without_retry_after_sets_no_header() -> None:
    assert "Retry-After" not in RateLimited("x").headers


def test_sse_error_frame_is_one_data_event() -> None:
    frame = sse_error_frame(UpstreamTimeout("late"))

    assert frame.startswith(b"data: {") and frame.endswith(b"}\n\n")
    assert frame.count(b"\n\n") == 1
