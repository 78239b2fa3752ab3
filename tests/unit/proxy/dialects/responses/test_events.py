"""Chat chunks -> Responses events (pure): order, sequence numbers, the final response."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from proxy.dialects.bridge import StreamFailed
from proxy.dialects.responses.events import EventWriter, NativeEvents, translate_stream
from proxy.dialects.responses.schemas import ResponsesRequest
from proxy.dialects.responses.translate import response_shell
from proxy.errors import ErrorBody, SwitchyardError, UpstreamTimeout
from proxy.schemas.chat import ChatCompletionChunk


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ChatCompletionChunk:
    return msgspec.convert(
        {
            "id": "c",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        },
        ChatCompletionChunk,
    )


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def usage_chunk() -> ChatCompletionChunk:
    return msgspec.convert(
        {"id": "c", "created": 1, "model": "m", "choices": [], "usage": USAGE},
        ChatCompletionChunk,
    )


async def _iterate(chunks: list[Any]) -> AsyncIterator[ChatCompletionChunk]:
    for item in chunks:
        if isinstance(item, Exception):
            raise item
        yield item


async def run(chunks: list[Any]) -> tuple[list[dict[str, Any]], EventWriter]:
    body = {"model": "m", "input": "x"}
    shell = response_shell(msgspec.convert(body, ResponsesRequest), body, "resp_1", 100)
    counter = itertools.count()
    writer = EventWriter(shell, lambda prefix: f"{prefix}_{next(counter)}")
    return [e async for e in translate_stream(_iterate(chunks), writer)], writer


async def test_text_stream_has_the_full_event_sequence_and_final_response() -> None:
    events, writer = await run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            usage_chunk(),
        ]
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(10))
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    assert events[2]["item"] == {
        "id": "msg_0", "content": [], "status": "in_progress", "role": "assistant",
        "type": "message",
    }  # fmt: skip
    assert [e["delta"] for e in events[4:6]] == ["Hel", "lo"]
    assert events[6]["text"] == "Hello"
    assert events[8]["item"]["content"][0]["text"] == "Hello"
    assert events[8]["item"]["status"] == "completed"
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 2
    assert final["output"] == [events[8]["item"]]
    assert writer.response.status == "completed"


async def test_tool_calls_become_function_call_items_with_argument_deltas() -> None:
    head = {"index": 0, "id": "call_a", "type": "function",
            "function": {"name": "f", "arguments": ""}}  # fmt: skip
    events, _ = await run(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"tool_calls": [head]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}
                    ]
                }
            ),
            chunk({}, "tool_calls"),
        ]
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"] == {
        "id": "fc_0", "call_id": "call_a", "name": "f", "arguments": "",
        "status": "in_progress", "type": "function_call",
    }  # fmt: skip
    assert events[5]["arguments"] == '{"a":1}'
    assert (events[7]["output_index"], events[7]["item"]["call_id"]) == (1, "call_b")
    output = events[-1]["response"]["output"]
    assert [(o["call_id"], o["arguments"], o["status"]) for o in output] == [
        ("call_a", '{"a":1}', "completed"),
        ("call_b", "{}", "completed"),
    ]
    assert events[-1]["response"]["usage"] is None


async def test_a_length_finish_ends_with_response_incomplete() -> None:
    events, _ = await run([chunk({"content": "cut"}), chunk({}, "length"), usage_chunk()])
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


async def test_a_failure_after_the_start_ends_with_response_failed() -> None:
    failure = StreamFailed(
        ErrorBody(message="upstream broke", type="server_error", code="upstream_error")
    )
    events, writer = await run([chunk({"content": "par"}), failure])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.failed",
    ]
    assert events[-1]["sequence_number"] == 5
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "upstream broke"}
    assert writer.response.status == "failed"


# -- a native upstream's stream

BLOCKS = [
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n',
    # Two events in one block; a delta quoting the field's name does not count.
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"delta":"\\"sequence_number\\": 99","sequence_number":1}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"delta":"x","sequence_number": 2}\n\n',
]


async def native_run(error: Exception | None) -> tuple[list[bytes], list[SwitchyardError], int]:
    async def blocks() -> AsyncIterator[bytes]:
        for block in BLOCKS:
            yield block
        if error is not None:
            raise error

    failures: list[SwitchyardError] = []
    native = NativeEvents(blocks(), failures.append)
    out = [block async for block in native.stream()]
    return out, failures, native.next_sequence


async def test_a_native_stream_is_forwarded_unchanged() -> None:
    out, failures, next_sequence = await native_run(None)
    assert (out, failures, next_sequence) == (BLOCKS, [], 3)


async def test_a_native_failure_ends_with_the_error_event_after_the_last_number() -> None:
    timeout = UpstreamTimeout("The upstream for 'm' timed out.")
    out, failures, _ = await native_run(timeout)
    assert out[:-1] == BLOCKS
    assert failures == [timeout]
    assert out[-1] == (
        b'event: error\ndata: {"type":"error","code":"upstream_timeout",'
        b'"message":"The upstream for \'m\' timed out.","param":null,"sequence_number":3}\n\n'
    )


async def test_an_unexpected_native_failure_is_an_upstream_error() -> None:
    out, failures, _ = await native_run(KeyError("x"))
    assert [(f.error_code, f.message) for f in failures] == [
        ("upstream_error", "The stream failed unexpectedly.")
    ]
    assert out[-1] == (
        b'event: error\ndata: {"type":"error","code":"upstream_error",'
        b'"message":"The stream failed unexpectedly.","param":null,"sequence_number":3}\n\n'
    )


def shutdown(sequence_number: int) -> bytes:
    return (
        b'event: error\ndata: {"type":"error","code":"server_shutting_down","message":'
        b'"The server is shutting down; the stream was ended before it finished.",'
        b'"param":null,"sequence_number":' + str(sequence_number).encode() + b"}\n\n"
    )


async def test_the_native_shutdown_frame_follows_the_events_sent() -> None:
    async def blocks() -> AsyncIterator[bytes]:
        for block in BLOCKS:
            yield block

    native = NativeEvents(blocks(), lambda failure: None)
    assert native.shutdown_frame() == shutdown(0)
    stream = native.stream()
    assert await anext(stream) == BLOCKS[0]
    assert native.shutdown_frame() == shutdown(1)
    assert [block async for block in stream] == BLOCKS[1:]
    assert native.shutdown_frame() == shutdown(3)
