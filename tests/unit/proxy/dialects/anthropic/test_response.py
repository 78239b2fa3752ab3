"""Chat completions and chunk streams as Messages ``message`` objects and events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from proxy.dialects.anthropic.response import StopCut, message_events, message_of, native_events
from proxy.dialects.anthropic.wire import encode
from proxy.dialects.bridge import StreamFailed
from proxy.errors import ErrorBody, UpstreamError
from proxy.schemas.chat import ChatCompletion, ChatCompletionChunk


def completion(message: dict[str, Any], finish: str, **choice: Any) -> ChatCompletion:
    raw = {
        "id": "chatcmpl-abc",
        "created": 1,
        "model": "upstream",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    return msgspec.convert(raw, ChatCompletion)


def as_json(value: Any) -> Any:
    return json.loads(encode(value))


def test_a_text_answer_is_a_message_with_end_turn_and_the_usage() -> None:
    message = message_of(completion({"role": "assistant", "content": "Hi!"}, "stop"), "claude", [])
    assert as_json(message) == {
        "id": "msg_abc",
        "model": "claude",
        "content": [{"type": "text", "text": "Hi!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 7},
        "type": "message",
        "role": "assistant",
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")],
)
def test_finish_reasons_map_to_stop_reasons(finish: str, stop_reason: str) -> None:
    message = message_of(completion({"role": "assistant", "content": "x"}, finish), "m", [])
    assert message.stop_reason == stop_reason


def test_tool_calls_become_tool_use_blocks_with_parsed_input() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    chat = completion(
        {"role": "assistant", "content": "Let me see.", "tool_calls": calls}, "tool_calls"
    )
    message = message_of(chat, "m", [])
    assert as_json(message)["content"] == [
        {"type": "text", "text": "Let me see."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    ]
    assert message.stop_reason == "tool_use"


def test_arguments_that_are_not_a_json_object_are_an_upstream_error() -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1"}}]
    with pytest.raises(UpstreamError):
        message_of(
            completion({"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"),
            "m",
            [],
        )


def test_a_stop_sequence_the_upstream_names_is_reported() -> None:
    chat = completion({"role": "assistant", "content": "one, two"}, "stop", stop_reason="END")
    message = message_of(chat, "m", ["END", "STOP"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    assert as_json(message)["content"] == [{"type": "text", "text": "one, two"}]


def test_a_named_stop_that_is_not_the_clients_is_end_turn() -> None:
    chat = completion({"role": "assistant", "content": "x"}, "stop", stop_reason="<eot>")
    assert message_of(chat, "m", ["END"]).stop_reason == "end_turn"


def test_a_stop_sequence_in_the_output_cuts_it_there() -> None:
    chat = completion({"role": "assistant", "content": "Hello! You said: stop here"}, "stop")
    message = message_of(chat, "m", ["said", "You said"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "You said")
    assert as_json(message)["content"] == [{"type": "text", "text": "Hello! "}]


def test_an_upstream_that_applies_stop_silently_gives_end_turn() -> None:
    chat = completion({"role": "assistant", "content": "Hello!"}, "stop")
    message = message_of(chat, "m", ["END"])
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


def test_stop_cut_holds_back_a_possible_start_of_a_sequence() -> None:
    cut = StopCut(["END"])
    assert cut.push("abc E") == "abc "
    assert cut.push("N") == ""
    assert cut.push("x") == "ENx"
    assert cut.push("..EN") == ".."
    assert cut.push("D tail") == ""
    assert cut.matched == "END"
    assert cut.push("more") == ""


# -------------------------------------------------------------------------- streaming


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ChatCompletionChunk:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    raw = {"id": "chatcmpl-s1", "created": 1, "model": "u", "choices": [choice]}
    return msgspec.convert(raw, ChatCompletionChunk)


USAGE = msgspec.convert(
    {
        "id": "chatcmpl-s1",
        "created": 1,
        "model": "u",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    },
    ChatCompletionChunk,
)


async def _iterate(items: list[Any]) -> AsyncIterator[ChatCompletionChunk]:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


async def events_of(items: list[Any], stop: list[str] | None = None) -> list[tuple[str, Any]]:
    out = []
    async for block in message_events(_iterate(items), "claude", stop or []):
        for event in block.decode().split("\n\n"):
            if not event:
                continue
            name_line, data_line = event.split("\n")
            assert name_line.startswith("event: ") and data_line.startswith("data: ")
            data = json.loads(data_line[6:])
            assert data["type"] == name_line[7:]
            out.append((data["type"], data))
    return out


async def test_a_text_stream_has_anthropics_event_sequence_and_usage() -> None:
    events = await events_of(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            USAGE,
        ]
    )
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_s1"
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    assert events[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 4, "input_tokens": 9},
    }


async def test_tool_call_deltas_become_tool_use_blocks_with_input_json_deltas() -> None:
    head = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    second = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "g", "arguments": ""},
    }
    events = await events_of(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Calling."}),
            chunk({"tool_calls": [head]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
            chunk({"tool_calls": [second]}),
            chunk({}, "tool_calls"),
            USAGE,
        ]
    )
    assert [(n, d.get("index")) for n, d in events] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("ping", None),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "f",
        "input": {},
    }
    assert [events[i][1]["delta"] for i in (6, 7)] == [
        {"type": "input_json_delta", "partial_json": '{"a":'},
        {"type": "input_json_delta", "partial_json": " 1}"},
    ]
    assert events[11][1]["delta"]["stop_reason"] == "tool_use"


async def test_a_stream_names_the_stop_sequence_and_never_shows_it() -> None:
    events = await events_of(
        [chunk({"content": "one E"}), chunk({"content": "ND two"}), chunk({}, "stop"), USAGE],
        stop=["END"],
    )
    texts = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert texts == ["one "]
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


async def test_a_stop_sequence_named_on_the_finish_chunk_is_reported() -> None:
    events = await events_of(
        [chunk({"content": "a"}), chunk({}, "stop", stop_reason="\n"), USAGE], stop=["\n"]
    )
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "\n"}


async def test_an_empty_stream_still_pings_and_ends() -> None:
    events = await events_of(
        [chunk({"role": "assistant", "content": ""}), chunk({}, "length"), USAGE]
    )
    assert [n for n, _ in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[2][1]["delta"]["stop_reason"] == "max_tokens"


async def test_a_failure_after_the_start_is_an_error_event() -> None:
    failure = StreamFailed(ErrorBody(message="upstream broke", type="server_error", code="x"))
    events = await events_of([chunk({"content": "a"}), failure])
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream broke"},
    }


# ------------------------------------------------------- output cut off by max_tokens


def test_a_tool_call_cut_off_by_max_tokens_is_dropped_and_the_stop_is_max_tokens() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": '{"b": "x'}},
    ]
    chat = completion(
        {"role": "assistant", "content": "Let me see.", "tool_calls": calls}, "length"
    )
    message = message_of(chat, "m", [])
    assert as_json(message)["content"] == [
        {"type": "text", "text": "Let me see."},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert message.stop_reason == "max_tokens"
    assert message.stop_sequence is None


def test_a_lone_cut_off_tool_call_leaves_an_empty_max_tokens_message() -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a'}}]
    chat = completion({"role": "assistant", "content": None, "tool_calls": calls}, "length")
    message = message_of(chat, "m", [])
    assert as_json(message)["content"] == []
    assert message.stop_reason == "max_tokens"


async def test_a_streamed_tool_call_cut_off_by_max_tokens_ends_with_max_tokens() -> None:
    head = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    piece = {"index": 0, "function": {"arguments": '{"a": '}}
    events = await events_of(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"tool_calls": [head]}),
            chunk({"tool_calls": [piece]}),
            chunk({}, "length"),
            USAGE,
        ]
    )
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[3][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a": '}
    assert events[5][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[5][1]["usage"]["output_tokens"] == 4


# ------------------------------------------------------------- unexpected failures


async def test_an_unexpected_exception_ends_the_stream_with_a_generic_error_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="proxy.dialects.anthropic.response"):
        events = await events_of([chunk({"content": "a"}), RuntimeError("secret detail")])
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "The stream failed unexpectedly."},
    }
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1
    assert str(failures[0].exc_info[1]) == "secret detail"  # type: ignore[index]


async def test_an_unexpected_exception_before_any_chunk_still_starts_then_errors() -> None:
    events = await events_of([ValueError("boom")])
    assert [n for n, _ in events] == ["message_start", "error"]
    assert events[1][1]["error"]["message"] == "The stream failed unexpectedly."


async def test_a_native_stream_that_raises_unexpectedly_ends_with_a_generic_error_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = b'event: ping\ndata: {"type": "ping"}\n\n'

    async def upstream() -> AsyncIterator[bytes]:
        yield first
        raise KeyError("secret detail")

    with caplog.at_level(logging.ERROR, logger="proxy.dialects.anthropic.response"):
        blocks = [b async for b in native_events(upstream())]
    assert blocks[0] == first
    assert len(blocks) == 2
    name, data = blocks[1].decode().strip().split("\n")
    assert name == "event: error"
    assert json.loads(data[6:]) == {
        "type": "error",
        "error": {"type": "api_error", "message": "The stream failed unexpectedly."},
    }
    assert len([r for r in caplog.records if r.exc_info]) == 1
