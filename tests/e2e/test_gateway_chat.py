"""Chat completions through the gateway, driven by the official SDK (sync and async)."""

from __future__ import annotations

import json
from typing import Any

import openai

from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, async_sdk
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import RunningServer

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_chat_non_stream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-test", messages=USER)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello! You said: What is the weather in Paris?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 6
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    seen = fake.last("/v1/chat/completions")
    assert seen.body["model"] == "upstream-gpt"  # the configured upstream id, not the name
    assert seen.body["messages"] == USER


def test_upstream_gets_its_own_key_never_the_clients(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    client.chat.completions.create(model="gpt-test", messages=USER)

    headers = fake.last("/v1/chat/completions").headers
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(headers)


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! You said: What is the weather in Paris?"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    # The usage chunk comes last, with no choices.
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 6
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_has_no_usage_chunk_but_is_counted(
    client: openai.OpenAI, fake: FakeOpenAI, gateway: RunningServer
) -> None:
    """The gateway asks the upstream for usage (budgets and TPM count every stream) and
    keeps the usage chunk from a client that did not ask for it."""
    import httpx

    me = f"{gateway.url}/v1/switchyard/me"
    auth = {"Authorization": f"Bearer {client.api_key}"}
    before = httpx.get(me, headers=auth).json()["usage_this_period"]
    chunks = list(client.chat.completions.create(model="gpt-test", messages=USER, stream=True))

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake.last("/v1/chat/completions").body["stream_options"] == {"include_usage": True}
    after = httpx.get(me, headers=auth).json()["usage_this_period"]
    assert after["completion_tokens"] > before["completion_tokens"]
    assert after["prompt_tokens"] > before["prompt_tokens"]


async def test_async_chat_and_stream(gateway: RunningServer, fake: FakeOpenAI) -> None:
    async with async_sdk(gateway) as client:
        completion = await client.chat.completions.create(model="gpt-test", messages=USER)
        assert completion.choices[0].message.content == (
            "Hello! You said: What is the weather in Paris?"
        )
        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == completion.choices[0].message.content
    assert len(pieces) > 3  # it really arrived as several deltas


def _tool_round_trip_messages(call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "18 degrees and sunny"},
    ]


def test_tool_call_round_trip_non_stream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    first = client.chat.completions.create(
        model="gpt-test", messages=USER, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "value of city", "unit": "value of unit"}

    second = client.chat.completions.create(
        model="gpt-test",
        messages=_tool_round_trip_messages(call.id, call.function.name, call.function.arguments),
        tools=[WEATHER_TOOL],
    )

    assert second.choices[0].message.content == "The tool said: 18 degrees and sunny"
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}


def _reassemble_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """What every SDK user does: merge tool-call deltas by index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"call_id": "", "name": "", "arguments": ""})
                if delta.id:
                    call["call_id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    return calls


def test_tool_call_round_trip_stream(client: openai.OpenAI) -> None:
    second_tool = {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    }
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=USER, tools=[WEATHER_TOOL, second_tool], stream=True
        )
    )

    argument_deltas = [
        d
        for c in chunks
        for ch in c.choices
        for d in ch.delta.tool_calls or []
        if d.function and d.function.arguments
    ]
    assert len(argument_deltas) > 4  # arguments really came in pieces
    calls = _reassemble_tool_calls(chunks)
    assert sorted(calls) == [0, 1]
    assert calls[0]["name"] == "get_weather"
    assert calls[1]["name"] == "get_time"
    assert json.loads(calls[0]["arguments"]) == {"city": "value of city", "unit": "value of unit"}
    assert json.loads(calls[1]["arguments"]) == {"zone": "value of zone"}
    assert calls[0]["call_id"] and calls[0]["call_id"] != calls[1]["call_id"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    answer = client.chat.completions.create(
        model="gpt-test", messages=_tool_round_trip_messages(**calls[0]), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    assert text == "The tool said: 18 degrees and sunny"


def test_every_standard_parameter_and_unknown_fields_reach_the_upstream(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
            ],
            "cache_control": {"type": "ephemeral"},  # unknown field inside a message
        },
    ]
    schema = {
        "name": "answer",
        "strict": True,
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
    }
    params: dict[str, Any] = {
        "temperature": 0.25,
        "top_p": 0.9,
        "n": 2,
        "stop": ["\n\n", "END"],
        "max_tokens": 64,
        "max_completion_tokens": 80,
        "seed": 1234,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "user": "user-42",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    unknown = {"top_k": 40, "repetition_penalty": 1.1, "provider_options": {"route": ["a", "b"]}}

    completion = client.chat.completions.create(
        model="gpt-test", messages=messages, extra_body=unknown, **params
    )

    assert len(completion.choices) == 2  # n=2 came back as two choices
    sent = fake.last("/v1/chat/completions").body
    assert sent == {"model": "upstream-gpt", "messages": messages, **params, **unknown}


def test_stream_options_reach_the_upstream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    list(
        client.chat.completions.create(
            model="gpt-test",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"unknown_stream_flag": [1, 2]},
        )
    )

    sent = fake.last("/v1/chat/completions").body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["unknown_stream_flag"] == [1, 2]
