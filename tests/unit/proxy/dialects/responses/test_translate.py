"""Responses request -> chat body, and chat completion -> response object (pure)."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

from proxy.dialects.responses.schemas import ResponsesRequest, input_items, tool_params
from proxy.dialects.responses.translate import (
    chat_body,
    input_item_records,
    output_messages,
    response_shell,
    to_response,
)
from proxy.errors import InvalidRequest
from proxy.schemas.chat import ChatCompletion


def ids() -> Any:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def translate(
    body: dict[str, Any], history: list[dict[str, Any]] | None = None, reasoning: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    request = msgspec.convert(body, ResponsesRequest)
    return chat_body(
        request,
        input_items(request),
        tool_params(request),
        client_body=body,
        history=history or [],
        takes_reasoning=reasoning,
    )


def test_a_string_input_with_instructions_is_a_system_then_a_user_message() -> None:
    chat, turn, warnings = translate(
        {"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 9}
    )
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 9,
    }
    assert turn == [{"role": "user", "content": "Hi"}]
    assert warnings == []


def test_items_become_messages_tool_calls_and_tool_results_after_the_history() -> None:
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}]
    chat, turn, _ = translate(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "Rule."}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Look"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAA"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "id": "msg_1",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Calling.", "annotations": []}],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": "two"},
            ],
        },
        history=history,
    )
    expected_turn = [
        {"role": "developer", "content": "Rule."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAA", "detail": "auto"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert turn == expected_turn
    assert chat["messages"] == [*history, *expected_turn]


def test_tools_tool_choice_format_and_sampling_are_mapped() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    chat, _, _ = translate(
        {
            "model": "m",
            "input": "x",
            "tools": [
                {"type": "function", "name": "f", "description": "d", "parameters": schema,
                 "strict": True},
                {"type": "web_search_preview"},
                {"type": "file_search", "vector_store_ids": ["docs", "notes"]},
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "parallel_tool_calls": False,
            "temperature": 0.5,
            "top_p": 0.9,
            "user": "u1",
            "text": {"format": {"type": "json_schema", "name": "out", "schema": schema,
                                "strict": True}},
            "stream": True,
            "switchyard": {"persona": "editor", "tools": "web_fetch"},
        }
    )  # fmt: skip
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": schema, "strict": True},
        }
    ]
    assert chat["switchyard"] == {
        "persona": "editor",
        "tools": ["web_fetch", "web_search", "rag_search"],
        "rag": ["docs", "notes"],
    }
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert (chat["parallel_tool_calls"], chat["temperature"], chat["top_p"]) == (False, 0.5, 0.9)
    assert chat["user"] == "u1"
    assert (chat["stream"], chat["stream_options"]) == (True, {"include_usage": True})


def test_reasoning_goes_upstream_or_is_ignored_with_a_warning() -> None:
    body = {"model": "m", "input": "x", "reasoning": {"effort": "low"}}
    chat, _, warnings = translate(body)
    assert chat["reasoning_effort"] == "low" and warnings == []
    chat, _, warnings = translate(body, reasoning=False)
    assert "reasoning_effort" not in chat
    assert warnings == ["reasoning is not supported by model 'm'; ignored"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "x", "tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "x", "tool_choice": {"type": "mcp"}}, "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
    ],
)
def test_bad_items_and_tools_are_400s_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        translate({"model": "m", **body})
    assert raised.value.param == param
    assert raised.value.http_status == 400


COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "f", "arguments": '{"a":1}'}},
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
}  # fmt: skip


def shell(**body: Any) -> Any:
    full = {"model": "m", "input": "x", **body}
    return response_shell(msgspec.convert(full, ResponsesRequest), full, "resp_1", 100)


def test_a_completion_becomes_a_message_and_function_call_items_with_usage() -> None:
    completion = msgspec.convert(COMPLETION, ChatCompletion)
    response = msgspec.to_builtins(to_response(completion, shell(metadata={"a": "b"}), ids()))
    assert response["output"] == [
        {
            "id": "msg_0",
            "content": [
                {"text": "Let me look.", "annotations": [], "logprobs": [], "type": "output_text"}
            ],
            "status": "completed",
            "role": "assistant",
            "type": "message",
        },
        {
            "id": "fc_1",
            "call_id": "call_1",
            "name": "f",
            "arguments": '{"a":1}',
            "status": "completed",
            "type": "function_call",
        },
    ]
    assert response["status"] == "completed"
    assert response["incomplete_details"] is None
    assert response["usage"] == {
        "input_tokens": 7,
        "output_tokens": 5,
        "total_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert (response["id"], response["object"], response["metadata"]) == (
        "resp_1",
        "response",
        {"a": "b"},
    )


def test_a_length_finish_is_incomplete_for_max_output_tokens() -> None:
    body = {**COMPLETION, "choices": [{"index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": "cut"}}]}  # fmt: skip
    response = to_response(msgspec.convert(body, ChatCompletion), shell(), ids())
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"


def test_output_and_input_items_for_storage() -> None:
    response = to_response(msgspec.convert(COMPLETION, ChatCompletion), shell(), ids())
    assert output_messages(response) == [
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a":1}'},
                }
            ],
        }
    ]
    request = msgspec.convert(
        {"model": "m", "input": [{"role": "user", "content": "hi"},
         {"type": "function_call_output", "call_id": "c", "output": "r"}]},
        ResponsesRequest,
    )  # fmt: skip
    assert input_item_records(input_items(request), ids()) == [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}], "type": "message",
         "id": "msg_0", "status": "completed"},
        {"call_id": "c", "output": "r", "type": "function_call_output", "id": "fco_1",
         "status": "completed"},
    ]  # fmt: skip
