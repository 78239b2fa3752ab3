"""Anthropic messages and event streams translated into chat completions and chunks."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from adapters.anthropic.response import ChunkTranslator, to_chat_completion
from adapters.anthropic.wire import decode_event, decode_message
from proxy.errors import RateLimited, UpstreamError, UpstreamRejected
from tests.support.fake_anthropic import Answer, stream_events


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> Any:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 4, **usage},
    }
    return decode_message(json.dumps(body).encode())


def as_dict(value: Any) -> Any:
    return msgspec.to_builtins(value)


def test_text_blocks_are_joined_into_the_content() -> None:
    completion = to_chat_completion(
        message([{"type": "text", "text": "Hello"}, {"type": "text", "text": ", world"}]),
        created=123,
    )

    assert as_dict(completion) == {
        "id": "msg_1",
        "created": 123,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, world", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "object": "chat.completion",
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
    }


def test_tool_use_blocks_become_tool_calls() -> None:
    completion = to_chat_completion(
        message(
            [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            ],
            "tool_use",
        ),
        created=1,
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert as_dict(choice.message.tool_calls) == [
        {
            "id": "toolu_1",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            "type": "function",
        },
        {"id": "toolu_2", "function": {"name": "now", "arguments": "{}"}, "type": "function"},
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    completion = to_chat_completion(
        message([{"type": "text", "text": "x"}], stop_reason), created=1
    )

    assert completion.choices[0].finish_reason == finish


def test_cached_input_tokens_count_as_prompt_tokens() -> None:
    completion = to_chat_completion(
        message(
            [{"type": "text", "text": "x"}],
            cache_creation_input_tokens=100,
            cache_read_input_tokens=1000,
        ),
        created=1,
    )

    assert as_dict(completion.usage) == {
        "prompt_tokens": 1110,
        "completion_tokens": 4,
        "total_tokens": 1114,
    }


# ----------------------------------------------------------------------------- streams


def run(events: list[dict[str, Any]], *, include_usage: bool = False) -> list[dict[str, Any]]:
    translator = ChunkTranslator(created=7, include_usage=include_usage)
    chunks = []
    for event in events:
        chunks += [as_dict(c) for c in translator.feed(decode_event(json.dumps(event).encode()))]
    assert translator.done
    return chunks


def chunk(
    delta: dict[str, Any], finish: str | None = None, model: str = "claude-x"
) -> dict[str, Any]:
    return {
        "id": "msg_fake1",
        "created": 7,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "object": "chat.completion.chunk",
    }


BODY = {"model": "claude-x", "max_tokens": 100, "messages": []}


def test_a_text_stream() -> None:
    reply = Answer([{"type": "text", "text": "Hi there you"}], "end_turn", None, 12, 0, 3)

    chunks = run(stream_events(BODY, "fake1", reply), include_usage=True)

    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}),
        chunk({"content": " there"}),
        chunk({"content": " you"}),
        chunk({}, "stop"),
        {
            "id": "msg_fake1",
            "created": 7,
            "model": "claude-x",
            "choices": [],
            "object": "chat.completion.chunk",
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        },
    ]


def test_a_tool_use_stream_numbers_the_calls_from_zero() -> None:
    uses: list[dict[str, Any]] = [
        {"type": "text", "text": "Looking"},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
    ]
    reply = Answer(uses, "tool_use", None, 5, 0, 10)

    chunks = run(stream_events(BODY, "fake1", reply))

    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    def arguments(index: int, piece: str) -> dict[str, Any]:
        return call(index, function={"arguments": piece})

    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Looking"}),
        call(0, id="toolu_a", type="function", function={"name": "get_weather", "arguments": ""}),
        arguments(0, '{"city'),
        arguments(0, '": "Pa'),
        arguments(0, 'ris"}'),
        call(1, id="toolu_b", type="function", function={"name": "now", "arguments": ""}),
        arguments(1, "{}"),
        chunk({}, "tool_calls"),
    ]


def test_a_tool_whose_input_never_streamed_gets_empty_arguments() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_fake1", "model": "claude-x", "usage": {}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "now", "input": {}},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]

    chunks = run(events)

    assert chunks[2] == chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})


def test_usage_and_stop_reason_come_from_message_delta() -> None:
    translator = ChunkTranslator(created=7, include_usage=False)
    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "model": "c",
            "usage": {"input_tokens": 3, "cache_read_input_tokens": 20, "output_tokens": 1},
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        # Newer API versions repeat input_tokens here; a field left out keeps its value.
        "usage": {"input_tokens": 3, "output_tokens": 9},
    }
    translator.feed(decode_event(json.dumps(start).encode()))
    assert (translator.usage.prompt_tokens, translator.usage.output) == (23, 1)
    assert translator.feed(decode_event(json.dumps(delta).encode())) == []

    finish = translator.feed(decode_event(b'{"type": "message_stop"}'))

    assert (translator.usage.prompt_tokens, translator.usage.output) == (23, 9)
    assert [as_dict(c)["choices"][0]["finish_reason"] for c in finish] == ["length"]


def test_thinking_ping_and_unknown_events_produce_nothing() -> None:
    translator = ChunkTranslator(created=7, include_usage=False)
    events = [
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hm"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "s"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "some_future_event", "whatever": [1]},
    ]

    for event in events:
        assert translator.feed(decode_event(json.dumps(event).encode())) == []


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        ({"type": "overloaded_error", "message": "Overloaded"}, UpstreamError, 503),
        ({"type": "api_error", "message": "Internal"}, UpstreamError, 502),
        ({"type": "rate_limit_error", "message": "Slow down"}, RateLimited, 429),
        ({"type": "invalid_request_error", "message": "Bad"}, UpstreamRejected, 400),
    ],
)
def test_an_error_event_raises_its_typed_error(
    error: dict[str, str], kind: type[Exception], status: int
) -> None:
    translator = ChunkTranslator(created=7, include_usage=False)
    event = decode_event(json.dumps({"type": "error", "error": error}).encode())

    with pytest.raises(kind) as caught:
        translator.feed(event)

    assert type(caught.value) is kind
    assert caught.value.http_status == status  # type: ignore[attr-defined]
    assert error["message"] in caught.value.message  # type: ignore[attr-defined]
