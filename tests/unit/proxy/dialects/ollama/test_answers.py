"""Ollama answers when the output is cut at the token limit, and streams that fail on
something that is not a SwitchyardError."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from proxy.context import SCOPE_KEY, RequestInfo
from proxy.dialects.ollama.answers import StreamState, Timing, chat_answer
from proxy.dialects.ollama.routes import _streamed
from proxy.errors import UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk


def _completion(message: dict[str, Any], finish: str) -> ChatCompletion:
    return msgspec.convert(
        {
            "id": "x",
            "created": 0,
            "model": "up",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        ChatCompletion,
    )


def _call(ident: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return msgspec.convert(
        {"id": "x", "created": 0, "model": "up", "choices": [choice]}, ChatCompletionChunk
    )


def test_a_tool_call_cut_off_by_the_token_limit_is_dropped_with_done_reason_length() -> None:
    calls = [_call("c1", "f", '{"a": 1}'), _call("c2", "g", '{"b": "x')]
    completion = _completion(
        {"role": "assistant", "content": "Let me see.", "tool_calls": calls}, "length"
    )
    answer = chat_answer(completion, "m", 0, Timing(total_s=1.0))
    assert answer["message"] == {
        "role": "assistant",
        "content": "Let me see.",
        "tool_calls": [{"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
    }
    assert answer["done_reason"] == "length"


def test_a_lone_cut_off_tool_call_leaves_no_tool_calls_field() -> None:
    completion = _completion(
        {"role": "assistant", "content": None, "tool_calls": [_call("c", "f", '{"a')]}, "length"
    )
    answer = chat_answer(completion, "m", 0, Timing(total_s=1.0))
    assert answer["message"] == {"role": "assistant", "content": ""}
    assert answer["done_reason"] == "length"


def test_cut_off_arguments_on_a_normal_finish_are_still_the_models_error() -> None:
    completion = _completion(
        {"role": "assistant", "content": None, "tool_calls": [_call("c", "f", '{"a')]},
        "tool_calls",
    )
    with pytest.raises(UpstreamError):
        chat_answer(completion, "m", 0, Timing(total_s=1.0))


def test_stream_state_drops_a_call_cut_off_by_the_token_limit() -> None:
    state = StreamState()
    head = {"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": ""}}
    state.text_of(_chunk({"tool_calls": [head]}))
    state.text_of(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}))
    state.text_of(_chunk({}, "length"))
    assert state.tool_calls() == []


# --------------------------------------------------------------------- the stream


def _request() -> Any:
    return SimpleNamespace(scope={SCOPE_KEY: RequestInfo(request_id="r", started=0.0)})


async def _lines(items: list[Any]) -> list[dict[str, Any]]:
    kept: list[bool] = []

    async def chunks() -> AsyncIterator[ChatCompletionChunk]:
        for item in items:
            if isinstance(item, Exception):
                raise item
            yield item

    async def keep() -> None:
        kept.append(True)

    out = [
        json.loads(line)
        async for line in _streamed(_request(), chunks(), 0.0, "m", keep, chat=True)
    ]
    assert kept == [True]
    return out


async def test_a_streamed_call_cut_off_by_the_token_limit_ends_with_done_reason_length() -> None:
    head = {"index": 0, "id": "c0", "type": "function", "function": {"name": "f", "arguments": ""}}
    lines = await _lines(
        [
            _chunk({"role": "assistant", "content": "Hi"}),
            _chunk({"tool_calls": [head]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
            _chunk({}, "length"),
        ]
    )
    assert [line["done"] for line in lines] == [False, True]
    assert lines[0]["message"] == {"role": "assistant", "content": "Hi"}
    assert lines[1]["message"] == {"role": "assistant", "content": ""}
    assert lines[1]["done_reason"] == "length"


async def test_an_unexpected_exception_ends_the_stream_with_a_generic_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="proxy.dialects.ollama.routes"):
        lines = await _lines([_chunk({"content": "Hi"}), RuntimeError("secret detail")])
    assert lines[1:] == [{"error": "The stream failed unexpectedly."}]
    assert lines[0]["message"] == {"role": "assistant", "content": "Hi"}
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1
    assert str(failures[0].exc_info[1]) == "secret detail"  # type: ignore[index]
