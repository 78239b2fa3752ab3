"""A Messages request as the internal chat request: the translation rules, one by one."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.dialects.anthropic.request import chat_body, count_body
from proxy.dialects.anthropic.wire import CountTokensRequest, MessagesRequest
from proxy.errors import InvalidRequest
from proxy.schemas.base import convert_request

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 16, **fields}
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    envelope = convert_request(body, MessagesRequest)
    return chat_body(envelope.params, envelope.body)


def bad(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        translate(**fields)
    return raised.value


def test_a_plain_request_keeps_model_messages_and_max_tokens() -> None:
    assert translate() == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 16,
    }


def test_max_tokens_is_required() -> None:
    with pytest.raises(InvalidRequest) as raised:
        convert_request({"model": "m", "messages": []}, MessagesRequest)
    assert raised.value.param == "max_tokens"
    assert "max_tokens" in raised.value.message


def test_system_text_blocks_are_joined_and_cache_control_is_ignored() -> None:
    system = [
        {"type": "text", "text": "You are a CLI.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
    ]
    body = translate(system=system)
    assert body["messages"][0] == {"role": "system", "content": "You are a CLI.\n\nBe brief."}
    assert translate(system="Plain.")["messages"][0] == {"role": "system", "content": "Plain."}


def test_images_become_image_url_parts() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    body = translate(messages=[{"role": "user", "content": content}])
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


def test_a_tool_use_round_trip_becomes_tool_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Let me look.", "signature": "s"},
                {"type": "text", "text": "Looking it up."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "no city"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    body = translate(messages=messages)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Looking it up.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no city"},
        {"role": "user", "content": "Thanks"},
    ]


def test_an_assistant_turn_of_tool_calls_only_has_null_content() -> None:
    messages = [
        {"role": "user", "content": "Go"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]
    chat = translate(messages=messages)["messages"]
    assert chat[1]["content"] is None
    assert chat[2] == {"role": "tool", "tool_call_id": "t", "content": ""}


def test_an_image_a_tool_returned_follows_the_tool_message() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "text", "text": "shot"}, image],
    }
    chat = translate(messages=[{"role": "user", "content": [result]}])["messages"]
    assert chat == [
        {"role": "tool", "tool_call_id": "t", "content": "shot"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        },
    ]


def test_tools_and_tool_choice_map_to_chat_functions() -> None:
    body = translate(
        tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True}
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather in a city",
            },
        }
    ]
    assert body["tool_choice"] == "required"
    assert body["parallel_tool_calls"] is False
    assert translate(tools=[WEATHER], tool_choice={"type": "auto"})["tool_choice"] == "auto"
    assert translate(tools=[WEATHER], tool_choice={"type": "none"})["tool_choice"] == "none"
    named = translate(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "parallel_tool_calls" not in named


def test_sampling_stop_metadata_and_stream_options() -> None:
    body = translate(
        stop_sequences=["END", "\n\n"],
        temperature=0.2,
        top_p=0.9,
        top_k=5,
        metadata={"user_id": "u-1"},
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 1024},
        switchyard={"persona": "pirate"},
    )
    assert body["stop"] == ["END", "\n\n"]
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 5)
    assert body["user"] == "u-1"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["switchyard"] == {"persona": "pirate"}
    assert "thinking" not in body


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}
                ]
            },
            "messages[0].content[0]",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"name": "f"}]}, "tools[0]"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(fields: dict[str, Any], param: str) -> None:
    assert bad(**fields).param == param


def test_an_output_format_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = translate(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert "response_format" not in translate(output_config={"effort": "high"})


def test_count_body_has_the_messages_and_tools_only() -> None:
    params = convert_request(
        {
            "model": "m",
            "system": "S",
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [WEATHER],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
        CountTokensRequest,
    ).params
    body = count_body(params)
    assert body["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Hi"},
    ]
    assert body["tool_choice"] == "auto"
    assert set(body) == {"model", "messages", "tools", "tool_choice"}
