"""Chat Completions requests translated into Messages API bodies (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.anthropic.request import (
    JSON_OBJECT_INSTRUCTION,
    to_count_tokens_body,
    to_messages_body,
)
from proxy.errors import InvalidRequest, UnsupportedCapability
from proxy.schemas.base import validated
from proxy.schemas.chat import ChatCompletionRequest

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    + "AAAABJRU5ErkJggg=="
)
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def translate(body: dict[str, Any], *, stream: bool = False, default: int = 4096) -> dict[str, Any]:
    body = {"model": "claude", **body}
    params = validated(body, ChatCompletionRequest)
    return to_messages_body(
        params, body, model="claude-upstream", default_max_tokens=default, stream=stream
    )


def test_a_plain_chat() -> None:
    out = translate({"messages": [{"role": "user", "content": "Hello"}]})

    assert out == {
        "model": "claude-upstream",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hello"}],
    }


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    out = translate(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "assistant", "content": "Salut"},
                {"role": "user", "content": "Again"},
            ]
        }
    )

    assert out["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]
    assert out["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": "Again"},
    ]


def test_one_system_message_is_a_string_and_cache_control_is_kept() -> None:
    alone = translate(
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}]}
    )
    cached_part = {"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}
    cached = translate(
        {
            "messages": [
                {"role": "system", "content": [cached_part]},
                {"role": "user", "content": "x"},
            ]
        }
    )

    assert alone["system"] == "Be brief."
    assert cached["system"] == [cached_part]


def test_parameters_map_to_their_anthropic_names() -> None:
    out = translate(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "max_completion_tokens": 64,
            "max_tokens": 999,
            "stop": "END",
            "temperature": 0.3,
            "top_p": 0.9,
            "user": "user-42",
            "top_k": 7,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "seed": 1,
            "presence_penalty": 0.5,
            "n": 1,
            "logprobs": False,
            "metadata": {"k": "v"},
            "store": True,
        },
        stream=True,
    )

    assert out == {
        "model": "claude-upstream",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
        "top_k": 7,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stream": True,
    }


def test_max_tokens_and_the_default() -> None:
    user = [{"role": "user", "content": "Hi"}]

    assert translate({"messages": user, "max_tokens": 12})["max_tokens"] == 12
    assert translate({"messages": user}, default=321)["max_tokens"] == 321
    assert translate({"messages": user, "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]


def test_a_neutral_top_p_is_left_out() -> None:
    user = [{"role": "user", "content": "Hi"}]
    out = translate({"messages": user, "temperature": 0.7, "top_p": 1})

    assert (out["temperature"], "top_p" in out) == (0.7, False)


def test_images_as_base64_and_url_sources() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What are these?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    ],
                }
            ]
        }
    )

    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What are these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]


def test_a_pdf_file_part_becomes_a_document() -> None:
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    }
    out = translate({"messages": [{"role": "user", "content": [part]}]})

    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        }
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}},
            "messages[0].content[0].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_bad_images_are_a_400_naming_the_part(part: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate({"messages": [{"role": "user", "content": [part]}]})

    assert caught.value.http_status == 400
    assert caught.value.param == param


def test_audio_parts_are_unsupported() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(UnsupportedCapability) as caught:
        translate({"messages": [{"role": "user", "content": [part]}]})

    assert caught.value.param == "messages[0].content[0].type"


def test_a_tool_round_trip_history() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_2",
                    "content": [{"type": "text", "text": "Rainy"}],
                },
                {"role": "user", "content": "Thanks. Summarise."},
            ],
            "tools": [TOOL],
        }
    )

    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "Rainy"}],
                },
                {"type": "text", "text": "Thanks. Summarise."},
            ],
        },
    ]
    assert out["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "The weather in a city.",
        }
    ]


def test_an_assistant_turn_with_only_tool_calls_and_empty_arguments() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "Now?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "now", "arguments": ""},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "noon"},
            ]
        }
    )

    assert out["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "now", "input": {}}],
    }
    assert out["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "noon"}],
    }


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    with pytest.raises(InvalidRequest) as caught:
        translate({"messages": messages})

    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_consecutive_user_messages_are_merged() -> None:
    out = translate(
        {"messages": [{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}]}
    )

    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}],
        }
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}], "tools": [TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel

    assert translate(body)["tool_choice"] == expected


def test_no_tool_choice_without_tools_or_without_one_given() -> None:
    user = [{"role": "user", "content": "x"}]

    assert "tool_choice" not in translate({"messages": user, "tools": [TOOL]})
    assert "tool_choice" not in translate({"messages": user, "tool_choice": "required"})


def test_strict_tools_stay_strict_and_parameterless_tools_get_an_empty_schema() -> None:
    tools = [
        {"type": "function", "function": {"name": "ping", "strict": True}},
    ]
    out = translate({"messages": [{"role": "user", "content": "x"}], "tools": tools})

    assert out["tools"] == [
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}, "strict": True}
    ]


def test_response_format_json_schema_becomes_output_config() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    out = translate(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "place", "schema": schema, "strict": True},
            },
        }
    )

    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in out


def test_response_format_json_object_asks_in_the_system_prompt() -> None:
    out = translate(
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "x"},
            ],
            "response_format": {"type": "json_object"},
        }
    )

    assert out["system"] == [
        {"type": "text", "text": "Be kind."},
        {"type": "text", "text": JSON_OBJECT_INSTRUCTION},
    ]
    assert "output_config" not in out


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "custom", "function": {"name": "x"}}]}, "tools[0].type"),
        ({"tool_choice": {"type": "allowed_tools"}, "tools": [TOOL]}, "tool_choice"),
    ],
)
def test_what_anthropic_cannot_do_is_a_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedCapability) as caught:
        translate({"messages": [{"role": "user", "content": "x"}], **body})

    assert caught.value.http_status == 400
    assert caught.value.param == param


def test_only_system_messages_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate({"messages": [{"role": "system", "content": "Rules"}]})

    assert caught.value.param == "messages"


def test_a_tool_message_without_its_call_id_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(
            {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}
        )

    assert caught.value.param == "messages[1].tool_call_id"


def test_foreign_tool_call_ids_are_made_acceptable_on_both_sides() -> None:
    call = {"id": "call:1/a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call:1/a", "content": "done"},
            ]
        }
    )

    assert out["messages"][1]["content"][0]["id"] == "call_1_a"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "call_1_a"


def test_a_token_count_body_has_only_what_count_tokens_takes() -> None:
    body = {
        "model": "claude",
        "messages": [{"role": "system", "content": "Rules"}, {"role": "user", "content": "Hi"}],
        "tools": [TOOL],
        "tool_choice": "required",
    }
    params = validated(body, ChatCompletionRequest)

    assert to_count_tokens_body(None, params, body, model="claude-upstream") == {
        "model": "claude-upstream",
        "messages": [{"role": "user", "content": "Hi"}],
        "system": "Rules",
        "tools": [
            {
                "name": "get_weather",
                "input_schema": TOOL["function"]["parameters"],  # type: ignore[index]
                "description": "The weather in a city.",
            }
        ],
        "tool_choice": {"type": "any"},
    }
    assert to_count_tokens_body("Some text", None, {}, model="c") == {
        "model": "c",
        "messages": [{"role": "user", "content": "Some text"}],
    }
