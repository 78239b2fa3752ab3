"""The Anthropic Messages dialect through the official ``anthropic`` package, against the
protocol-faithful fake OpenAI upstream (so what the model received is recorded).

The same dialect runs against the real SmolLM2 model in ``test_dialect_messages_local.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenants import seed_keys

MASTER = "sk-messages-master"
KEY = "sk-messages-user"
LIMITED = "sk-messages-one-a-minute"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
REPLY = "Hello! You said: What is the weather in Paris?"
EDITOR_PROMPT_START = "You are a careful line editor."
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def gateway(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("messages") / "data"
    seed_keys(
        data,
        {KEY: "team_messages", LIMITED: "team_limited"},
        teams={"team_limited": {"rpm_limit": 1}},
    )
    config: dict[str, Any] = {
        "server": {"master_key": MASTER, "data_dir": str(data), "max_body_mb": 1},
        "models": [
            model_entry("claude-fake", "upstream-claude", fake_url),
            model_entry("claude-broken", "upstream-broken", fake_url),
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningServer, fake: FakeOpenAI) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0, timeout=15) as sdk:
        yield sdk


def chat_request(fake: FakeOpenAI) -> dict[str, Any]:
    body: dict[str, Any] = fake.last("/v1/chat/completions").body
    return body


# ------------------------------------------------------------------------ messages.create


def test_create_answers_a_message_with_the_upstreams_usage(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    message = client.messages.create(model="claude-fake", max_tokens=64, messages=ASK)

    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "claude-fake"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", REPLY)]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    # The fake counts prompt words (6) and answers one token per word (9).
    assert (message.usage.input_tokens, message.usage.output_tokens) == (6, 9)
    seen = chat_request(fake)
    assert seen["model"] == "upstream-claude"
    assert seen["messages"] == ASK
    assert seen["max_tokens"] == 64
    assert "stream" not in seen


def test_parameters_reach_the_upstream_translated(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    client.messages.create(
        model="claude-fake",
        max_tokens=32,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=ASK,
        metadata={"user_id": "user-42"},
        # Sampling parameters the current SDK no longer offers (older clients send them).
        extra_body={"temperature": 0.3, "top_p": 0.8, "top_k": 7},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    seen = chat_request(fake)
    assert seen["messages"] == [{"role": "system", "content": "Be brief."}, *ASK]
    assert (seen["temperature"], seen["top_p"], seen["top_k"]) == (0.3, 0.8, 7)
    assert seen["user"] == "user-42"


# ------------------------------------------------------------------------ messages.stream


def test_a_stream_has_anthropics_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(model="claude-fake", max_tokens=64, messages=ASK, stream=True)
    )
    words = len(REPLY.split(" "))
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * words,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]
    assert start.type == "message_start"
    assert start.message.content == [] and start.message.stop_reason is None
    delta = events[-2]
    assert delta.type == "message_delta"
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("end_turn", None)
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (6, words)


def test_every_event_is_named_and_ping_follows_the_first_block(gateway: RunningServer) -> None:
    body = {"model": "claude-fake", "max_tokens": 64, "messages": ASK, "stream": True}
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/messages", json=body, headers=headers, timeout=15
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    names = []
    for event in text.strip().split("\n\n"):
        name_line, data_line = event.split("\n")
        names.append(name_line.removeprefix("event: "))
        assert json.loads(data_line.removeprefix("data: "))["type"] == names[-1]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_the_streams_final_message_equals_the_non_streamed_one(
    client: anthropic.Anthropic,
) -> None:
    created = client.messages.create(model="claude-fake", max_tokens=64, messages=ASK)
    with client.messages.stream(model="claude-fake", max_tokens=64, messages=ASK) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(texts) == REPLY
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in created.content]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        created.stop_reason,
        created.usage.input_tokens,
        created.usage.output_tokens,
    )


# ------------------------------------------------------------------------------ tool use


def test_a_tool_use_round_trip(client: anthropic.Anthropic, fake: FakeOpenAI) -> None:
    first = client.messages.create(
        model="claude-fake", max_tokens=64, messages=ASK, tools=[WEATHER]
    )
    assert first.stop_reason == "tool_use"
    assert [b.model_dump(exclude_none=True) for b in first.content] == [
        {
            "type": "tool_use",
            "id": "call_fake_0",
            "name": "get_weather",
            "input": {"city": "value of city"},
        }
    ]
    assert chat_request(fake)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather for a city",
            },
        }
    ]

    result = {"type": "tool_result", "tool_use_id": "call_fake_0", "content": "Sunny, 21 C"}
    final = client.messages.create(
        model="claude-fake",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            *ASK,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert final.stop_reason == "end_turn"
    assert [b.model_dump(exclude_none=True) for b in final.content] == [
        {"type": "text", "text": "The tool said: Sunny, 21 C"}
    ]
    assert chat_request(fake)["messages"] == [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"value of city"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_fake_0", "content": "Sunny, 21 C"},
    ]


def test_tool_choice_maps_and_a_streamed_tool_call_accumulates_its_input(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    time_tool = {**WEATHER, "name": "get_time"}
    with client.messages.stream(
        model="claude-fake",
        max_tokens=64,
        messages=ASK,
        tools=[WEATHER, time_tool],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ) as stream:
        kinds = [e.type for e in stream if e.type in ("content_block_start", "message_delta")]
        final = stream.get_final_message()

    seen = chat_request(fake)
    assert (seen["tool_choice"], seen["parallel_tool_calls"]) == ("required", False)
    assert kinds == ["content_block_start", "message_delta"]
    assert final.stop_reason == "tool_use"
    assert [b.model_dump(exclude_none=True) for b in final.content] == [
        {
            "type": "tool_use",
            "id": "call_fake_0",
            "name": "get_weather",
            "input": {"city": "value of city"},
        }
    ]


def test_a_tool_call_cut_off_by_max_tokens_is_a_max_tokens_message_not_a_5xx(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    # The SDK's default retries are on: a 5xx would run the model three times.
    fake.clear()
    with anthropic.Anthropic(base_url=gateway.url, api_key=KEY, timeout=15) as sdk:
        message = sdk.messages.create(
            model="claude-fake", max_tokens=3, messages=ASK, tools=[WEATHER]
        )
    assert len(fake.received("/v1/chat/completions")) == 1
    assert chat_request(fake)["max_tokens"] == 3
    assert (message.stop_reason, message.stop_sequence) == ("max_tokens", None)
    assert message.content == []
    assert message.usage.output_tokens == 3


def test_a_streamed_tool_call_cut_off_by_max_tokens_ends_with_max_tokens(
    client: anthropic.Anthropic,
) -> None:
    events = list(
        client.messages.create(
            model="claude-fake", max_tokens=3, messages=ASK, tools=[WEATHER], stream=True
        )
    )
    # (the SDK drops ``ping``; no ``error`` event)
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[1].content_block  # type: ignore[union-attr]
    assert (start.type, start.id, start.name) == ("tool_use", "call_fake_0", "get_weather")
    # Half of '{"city": "value of city"}', as the upstream cut it, in 6-character pieces.
    pieces = [e.delta.partial_json for e in events[2:4]]  # type: ignore[union-attr]
    assert pieces == ['{"city', '": "va']
    delta = events[5]
    assert delta.type == "message_delta"
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("max_tokens", None)
    assert delta.usage.output_tokens == 3


# ------------------------------------------------------------------------ stop sequences


def test_a_stop_sequence_cuts_the_answer_and_is_named(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    message = client.messages.create(
        model="claude-fake", max_tokens=64, messages=ASK, stop_sequences=["never", "weather"]
    )
    # The fake does not apply ``stop``: the dialect finds the sequence in the output.
    assert chat_request(fake)["stop"] == ["never", "weather"]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "weather")
    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "text", "text": "Hello! You said: What is the "}
    ]
    assert message.usage.output_tokens == 9  # what the upstream reported generating

    with client.messages.stream(
        model="claude-fake", max_tokens=64, messages=ASK, stop_sequences=["weather"]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == "Hello! You said: What is the "
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "weather")


# ---------------------------------------------------------------------------- count_tokens


def test_count_tokens_estimates_for_a_remote_model(gateway: RunningServer) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0) as sdk:
        raw = sdk.messages.with_raw_response.count_tokens(
            model="claude-fake", system="Be brief.", messages=ASK, tools=[WEATHER]
        )
    counted = raw.parse()
    messages = [{"role": "system", "content": "Be brief."}, *ASK]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather for a city",
            },
        }
    ]
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    characters = len(json.dumps(messages, **compact)) + len(json.dumps(tools, **compact))  # type: ignore[arg-type]
    assert counted.input_tokens == characters // 4 + 1
    assert raw.headers["x-switchyard-token-count"] == "estimate"


def test_count_tokens_ignores_extension_suffixes(client: anthropic.Anthropic) -> None:
    plain = client.messages.count_tokens(model="claude-fake", messages=ASK)
    suffixed = client.messages.count_tokens(model="claude-fake+persona:editor", messages=ASK)
    assert suffixed.input_tokens == plain.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="claude-nope", messages=ASK)


# -------------------------------------------------------------------------------- errors


def test_a_bad_key_is_an_authentication_error(gateway: RunningServer) -> None:
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0)
    with sdk, pytest.raises(anthropic.AuthenticationError) as raised:
        sdk.messages.create(model="claude-fake", max_tokens=8, messages=ASK)
    assert raised.value.status_code == 401
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "authentication_error"


def test_missing_max_tokens_is_a_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.post(
            "/v1/messages",
            body={"model": "claude-fake", "messages": ASK},
            cast_to=anthropic.types.Message,
        )
    assert raised.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid request: Object missing required field `max_tokens`",
        },
    }


def test_an_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(model="claude-nope", max_tokens=8, messages=ASK)
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model 'claude-nope' does not exist."},
    }


def test_a_rate_limit_is_a_rate_limit_error_with_retry_after(
    gateway: RunningServer, fake: FakeOpenAI
) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key=LIMITED, max_retries=0) as sdk:
        sdk.messages.create(model="claude-fake", max_tokens=8, messages=ASK)
        with pytest.raises(anthropic.RateLimitError) as raised:
            sdk.messages.create(model="claude-fake", max_tokens=8, messages=ASK)
    assert raised.value.status_code == 429
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert int(raised.value.response.headers["retry-after"]) >= 1


def test_a_body_over_the_limit_is_request_too_large(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.ContentTooLargeError) as raised:
        client.messages.create(
            model="claude-fake", max_tokens=8, system="x" * 2_000_000, messages=ASK
        )
    assert raised.value.status_code == 413
    assert raised.value.body == {
        "type": "error",
        "error": {
            "type": "request_too_large",
            "message": "The request body is larger than the limit of 1 MiB.",
        },
    }


def test_a_failure_after_the_stream_began_is_an_error_event(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-broken"] = Fault("truncate", after=3)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        for event in client.messages.create(
            model="claude-broken", max_tokens=8, messages=ASK, stream=True
        ):
            seen.append(event.type)
    # The fake sent its role chunk and two words before the stream broke.
    assert seen == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]
    assert raised.value.body == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "The upstream for 'claude-broken' ended the stream before [DONE].",
        },
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "messages: at least one message is required."),
        (
            {"messages": [{"role": "system", "content": "hi"}]},
            "messages[0].role: the roles are 'user' and 'assistant' (a system prompt goes in "
            "the top-level 'system' field); Invalid request: Invalid enum value 'system' - at "
            "`$.messages[0].role`",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type: this content block type is not supported here (the "
            "types are: text, image, tool_use, tool_result, thinking, redacted_thinking); "
            "Invalid request: Invalid value 'document' - at `$.messages[0].content[0].type`",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]},
                ]
            },
            "messages[1].content[0]: a 'tool_result' block cannot appear in a message of role "
            "'assistant'.",
        ),
        (
            {"tools": [{"type": "bash_20250124", "name": "bash"}]},
            "tools[0].type: the server tool type 'bash_20250124' is not supported here; only "
            "client tools (name, description, input_schema) are.",
        ),
        (
            {"tool_choice": {"type": "tool"}, "tools": [WEATHER]},
            "tool_choice.name: Field required for tool_choice type 'tool'.",
        ),
        ({"max_tokens": "many"}, "Invalid request: Expected `int`, got `str` - at `$.max_tokens`"),
    ],
)
def test_bad_input_is_an_anthropic_400(
    gateway: RunningServer, body: dict[str, Any], message: str
) -> None:
    request = {"model": "claude-fake", "max_tokens": 8, "messages": ASK, **body}
    response = httpx.post(
        f"{gateway.url}/v1/messages", json=request, headers={"x-api-key": KEY}, timeout=15
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
    }


# ------------------------------------------------------------------------------ personas


@pytest.mark.parametrize(
    "activation",
    [
        {"extra_headers": {"X-Switchyard-Persona": "editor"}},
        {"extra_body": {"switchyard": {"persona": "editor"}}},
        {"model": "claude-fake+persona:editor"},
    ],
)
def test_a_persona_activates_through_this_dialect(
    client: anthropic.Anthropic, fake: FakeOpenAI, activation: dict[str, Any]
) -> None:
    options = {"model": "claude-fake", **activation}
    message = client.messages.create(max_tokens=64, messages=ASK, **options)

    assert [b.model_dump(exclude_none=True) for b in message.content] == [
        {"type": "text", "text": REPLY}
    ]
    seen = chat_request(fake)
    assert seen["messages"][0]["role"] == "system"
    assert seen["messages"][0]["content"].startswith(EDITOR_PROMPT_START)
    assert seen["messages"][1:] == ASK
    assert "switchyard" not in seen


# --------------------------------------------------------------------- Claude Code shapes


def test_a_claude_code_shaped_request_streams_against_a_remote_model(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    system: Any = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Rules. " * 6000, "cache_control": {"type": "ephemeral"}},
    ]
    tools: Any = [
        {
            "name": f"Tool{i}",
            "description": f"Tool number {i}. " * 20,
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["path"],
                "additionalProperties": False,
                "$schema": "http://json-schema.org/draft-07/schema#",
            },
            **({"cache_control": {"type": "ephemeral"}} if i == 39 else {}),
        }
        for i in range(40)
    ]
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": "Read the file."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_01", "name": "Tool3", "input": {"path": "/x"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "is_error": True,
                    "content": [{"type": "text", "text": "File does not exist."}],
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]
    with client.messages.stream(
        model="claude-fake",
        max_tokens=32000,
        system=system,
        tools=tools,
        messages=messages,
        metadata={"user_id": "user_abc_account_session"},
        extra_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
    ) as stream:
        final = stream.get_final_message()

    seen = chat_request(fake)
    assert len(seen["tools"]) == 40
    assert seen["stream"] is True
    assert seen["messages"][0]["content"].startswith("You are Claude Code")
    assert seen["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "toolu_01",
        "content": "Error: File does not exist.",
    }
    assert final.stop_reason == "end_turn"
    assert [b.model_dump(exclude_none=True) for b in final.content] == [
        {"type": "text", "text": "The tool said: Error: File does not exist."}
    ]
