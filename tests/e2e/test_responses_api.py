"""The Responses API through the official ``openai`` package, against the fake OpenAI
upstream, translated into chat: create, stream, tools, chains, stored responses and
their owners, extensions, failures (the native pass-through: test_responses_native.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from extensions.personas import BUNDLED_DIR
from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, Fault
from tests.support.servers import RunningServer, serve_gateway

KEY_A = "sk-responses-owner-a"
KEY_B = "sk-responses-owner-b"
QUESTION = "What is the weather in Paris?"
REPLY = f"Hello! You said: {QUESTION}"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ESPRESSO = "The office espresso machine is descaled every Friday morning by Priya."
EDITOR_PROMPT = yaml.safe_load((BUNDLED_DIR / "editor.yaml").read_text())["system_prompt"]


@pytest.fixture(scope="module")
def gateway(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("responses")
    config = {
        "server": {"api_keys": [KEY_A, KEY_B], "data_dir": str(data)},
        "rag": {"embedding_model": "embed-test"},
        # Configured so that the tool exists; the fake upstream's arguments never let
        # it search (they are not what the tool takes), so nothing is contacted.
        "tools": {"web_search": {"provider": "searxng", "url": "http://127.0.0.1:9"}},
        "models": [
            model_entry("gpt-test", "upstream-gpt", fake_url),
            model_entry("embed-test", "upstream-embed", fake_url),
            model_entry("gpt-faulty", "upstream-faulty", fake_url),
        ],
    }
    with serve_gateway(config) as running:
        collections = f"{running.url}/v1/switchyard/rag/collections"
        auth = {"Authorization": f"Bearer {KEY_A}"}
        assert httpx.post(collections, json={"name": "docs"}, headers=auth).status_code == 201
        document = {"id": "espresso", "text": ESPRESSO, "source": "handbook/espresso.md"}
        added = httpx.post(
            f"{collections}/docs/documents", json={"documents": [document]}, headers=auth
        )
        assert added.status_code in (200, 201), added.text
        yield running


def sdk(server: RunningServer, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=15)


@pytest.fixture
def client(gateway: RunningServer, fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with sdk(gateway) as c:
        yield c


def upstream_messages(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return fake.last("/v1/chat/completions").body["messages"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ translated


def test_create_with_a_string_and_instructions(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    response = client.responses.create(
        model="gpt-test", input=QUESTION, instructions="Be brief.", max_output_tokens=50
    )
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == REPLY
    assert [item.type for item in response.output] == ["message"]
    message = response.output[0]
    assert message.role == "assistant" and message.status == "completed"  # type: ignore[union-attr]
    assert message.content[0].annotations == []  # type: ignore[union-attr]
    assert response.instructions == "Be brief."
    assert response.max_output_tokens == 50
    assert response.usage is not None
    # The fake counts words: "Be brief." and the six-word question.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (8, 9)
    assert response.usage.total_tokens == 17
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    seen = fake.last("/v1/chat/completions").body
    assert seen["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    assert seen["max_completion_tokens"] == 50
    assert seen["model"] == "upstream-gpt"


def test_create_with_items(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    response = client.responses.create(
        model="gpt-test",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        ],
    )
    assert response.output_text == "Hello! You said: Hi"
    assert upstream_messages(fake) == [
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": "Hi"},
    ]


def test_stream_sends_the_full_event_sequence(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with client.responses.stream(model="gpt-test", input=QUESTION) as stream:
        events = list(stream)
        final = stream.get_final_response()
    words = len(REPLY.split(" "))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * words,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == REPLY
    assert final.output_text == REPLY
    assert final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == words
    assert fake.last("/v1/chat/completions").body["stream_options"] == {"include_usage": True}
    # A streamed response is stored like any other.
    assert client.responses.retrieve(final.id).output_text == REPLY


def test_a_function_tool_round_trip(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    first = client.responses.create(model="gpt-test", input=QUESTION, tools=[WEATHER])  # type: ignore[list-item]
    assert [item.type for item in first.output] == ["function_call"]
    call = first.output[0]
    assert call.call_id == "call_fake_0"  # type: ignore[union-attr]
    assert (call.name, call.arguments) == ("get_weather", '{"city": "value of city"}')  # type: ignore[union-attr]
    assert fake.last("/v1/chat/completions").body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER["parameters"],
            },
        }
    ]
    second = client.responses.create(
        model="gpt-test",
        tools=[WEATHER],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": QUESTION},
            *[item.model_dump(exclude_none=True) for item in first.output],  # type: ignore[misc]
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},  # type: ignore[union-attr]
        ],
    )
    assert second.output_text == "The tool said: Sunny, 21 C"
    assert upstream_messages(fake) == [
        {"role": "user", "content": QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "value of city"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_fake_0", "content": "Sunny, 21 C"},
    ]


def test_a_streamed_function_call(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with client.responses.stream(
        model="gpt-test",
        input=QUESTION,
        tools=[WEATHER],
        tool_choice="required",  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    pieces = types.count("response.function_call_arguments.delta")
    assert pieces == 5  # the fake sends the arguments in 6-character pieces
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * pieces,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    call = final.output[0]
    assert (call.type, call.call_id, call.arguments) == (  # type: ignore[union-attr]
        "function_call",
        "call_fake_0",
        '{"city": "value of city"}',
    )
    assert fake.last("/v1/chat/completions").body["tool_choice"] == "required"


def test_previous_response_id_continues_the_chain(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    first = client.responses.create(model="gpt-test", input="My name is Ada.", instructions="A")
    second = client.responses.create(
        model="gpt-test", input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    chain = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello! You said: My name is Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    # The first turn's instructions are not carried along (as on OpenAI).
    assert upstream_messages(fake) == chain
    client.responses.delete(first.id)
    third = client.responses.create(
        model="gpt-test", input="And again?", previous_response_id=second.id, instructions="B"
    )
    assert third.output_text == "Hello! You said: And again?"
    assert upstream_messages(fake) == [
        {"role": "system", "content": "B"},
        *chain,
        {"role": "assistant", "content": "Hello! You said: What is my name?"},
        {"role": "user", "content": "And again?"},
    ]


def test_retrieve_input_items_and_delete(client: openai.OpenAI) -> None:
    created = client.responses.create(
        model="gpt-test",
        input=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
        metadata={"purpose": "test"},
    )
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert retrieved.metadata == {"purpose": "test"}
    items = client.responses.input_items.list(created.id)
    texts = [item.content[0].text for item in items.data]  # type: ignore[union-attr]
    assert texts == ["three", "two", "one"]  # newest first, as OpenAI lists them
    assert [item.type for item in items.data] == ["message"] * 3
    assert all(item.id for item in items.data)  # type: ignore[union-attr]
    first_page = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.content[0].text for i in first_page.data] == ["one", "two"]  # type: ignore[union-attr]
    assert first_page.has_more is True
    rest = client.responses.input_items.list(created.id, order="asc", after=first_page.last_id)
    assert [i.content[0].text for i in rest.data] == ["three"]  # type: ignore[union-attr]
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_another_key_cannot_see_use_or_delete_a_response(
    gateway: RunningServer, client: openai.OpenAI
) -> None:
    created = client.responses.create(model="gpt-test", input="secret")
    with sdk(gateway, KEY_B) as other:
        with pytest.raises(openai.NotFoundError) as seen:
            other.responses.retrieve(created.id)
        assert seen.value.body["message"] == f"Response with id '{created.id}' not found."  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(created.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError) as continued:
            other.responses.create(model="gpt-test", input="x", previous_response_id=created.id)
        assert continued.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert client.responses.retrieve(created.id).id == created.id


def test_store_false_keeps_nothing(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    created = client.responses.create(model="gpt-test", input="forget me", store=False)
    assert created.output_text == "Hello! You said: forget me"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-test", input="x", previous_response_id=created.id)


def test_text_format_reasoning_and_sampling_reach_the_upstream(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    response = client.responses.with_raw_response.create(
        model="gpt-test",
        input="x",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema}},
        reasoning={"effort": "low"},
        temperature=0.25,
        top_p=0.5,
        user="someone",
    )
    assert "x-switchyard-warning" not in response.headers
    seen = fake.last("/v1/chat/completions").body
    assert seen["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema},
    }
    assert (seen["reasoning_effort"], seen["temperature"], seen["top_p"]) == ("low", 0.25, 0.5)
    assert seen["user"] == "someone"


def test_a_failure_after_the_stream_began_is_response_failed(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-faulty"] = Fault("truncate", after=3)
    with client.responses.stream(model="gpt-faulty", input=QUESTION) as stream:
        events = list(stream)
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.failed",
    ]
    assert [e.sequence_number for e in events] == list(range(7))
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "server_error"
    assert "ended the stream before [DONE]" in failed.error.message


def test_a_chain_continues_on_another_replica_and_after_a_restart(
    fake_url: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = {
        "server": {"api_keys": [KEY_A], "data_dir": str(tmp_path)},
        "models": [model_entry("gpt-test", "upstream-gpt", fake_url)],
    }
    with serve_gateway(config) as one, serve_gateway(config) as two:
        first = sdk(one).responses.create(model="gpt-test", input="Remember 42.")
        second = sdk(two).responses.create(
            model="gpt-test", input="What number?", previous_response_id=first.id
        )
    with serve_gateway(config) as restarted:
        sdk(restarted).responses.create(
            model="gpt-test", input="Sure?", previous_response_id=second.id
        )
    assert upstream_messages(fake) == [
        {"role": "user", "content": "Remember 42."},
        {"role": "assistant", "content": "Hello! You said: Remember 42."},
        {"role": "user", "content": "What number?"},
        {"role": "assistant", "content": "Hello! You said: What number?"},
        {"role": "user", "content": "Sure?"},
    ]


# ------------------------------------------------------------------ extensions


@pytest.mark.parametrize("how", ["body", "header", "suffix"])
def test_a_persona_activates_through_this_dialect(
    client: openai.OpenAI, fake: FakeOpenAI, how: str
) -> None:
    options: dict[str, Any] = {
        "body": {"extra_body": {"switchyard": {"persona": "editor"}}},
        "header": {"extra_headers": {"X-Switchyard-Persona": "editor"}},
        "suffix": {},
    }[how]
    model = "gpt-test+persona:editor" if how == "suffix" else "gpt-test"
    response = client.responses.create(model=model, input="me and him goes home", **options)
    assert response.output_text == "Hello! You said: me and him goes home"
    messages = upstream_messages(fake)
    assert messages == [
        {"role": "system", "content": EDITOR_PROMPT},
        {"role": "user", "content": "me and him goes home"},
    ]
    assert "switchyard" not in fake.last("/v1/chat/completions").body


def test_file_search_is_rag_search_over_its_vector_stores(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    response = client.responses.create(
        model="gpt-test",
        input="Who descales the espresso machine?",
        tools=[{"type": "file_search", "vector_store_ids": ["docs"]}],
    )
    chats = fake.received("/v1/chat/completions")
    assert len(chats) == 2  # the tool loop: a rag_search call, then the answer
    first = chats[0].body
    assert [t["function"]["name"] for t in first["tools"]] == ["rag_search"]
    assert "switchyard" not in first
    assert ESPRESSO in json.dumps(first["messages"])  # the RAG extension's context for "docs"
    tool_message = chats[1].body["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"]) == ("tool", "call_fake_0")
    assert response.output_text == f"The tool said: {tool_message['content']}"
    # The server tool's call stays in the gateway: the client sees the answer only.
    assert [item.type for item in response.output] == ["message"]


def test_web_search_is_the_server_web_search_tool(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    response = client.responses.create(
        model="gpt-test", input="Latest news?", tools=[{"type": "web_search_preview"}]
    )
    chats = fake.received("/v1/chat/completions")
    assert len(chats) == 2
    assert [t["function"]["name"] for t in chats[0].body["tools"]] == ["web_search"]
    tool_message = chats[1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("error:")  # the fake's arguments are not valid
    assert response.output_text == f"The tool said: {tool_message['content']}"


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "gpt-test"}, "input"),
        ({"model": "gpt-test", "input": []}, "input"),
        ({"model": "gpt-test", "input": [{"type": "computer_call_output"}]}, "input[0].type"),
        ({"model": "gpt-test", "input": [{"role": "user", "content": 3}]}, "input[0].content"),
        (
            {"model": "gpt-test", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"model": "gpt-test", "input": "x", "tools": [{"type": "code_interpreter"}]},
            "tools[0].type",
        ),
        ({"model": "gpt-test", "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "gpt-test", "input": "x", "background": True}, "background"),
        ({"model": "gpt-test", "input": "x", "conversation": "conv_1"}, "conversation"),
        (
            {"model": "gpt-test", "input": "x", "text": {"format": {"type": "yaml"}}},
            "text.format.type",
        ),
    ],
)
def test_bad_input_is_an_openai_shaped_400(
    gateway: RunningServer, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY_A}"},
        timeout=15,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert isinstance(error["message"], str) and error["message"]


def test_an_unknown_tool_type_names_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(
            model="gpt-test",
            input="x",
            tools=[{"type": "image_generation"}],  # type: ignore[list-item]
        )
    assert raised.value.body["message"] == (  # type: ignore[index]
        "The 'image_generation' tool is not supported by this gateway "
        "(supported: function, web_search, file_search)."
    )


def test_no_key_is_a_401(gateway: RunningServer) -> None:
    response = httpx.post(f"{gateway.url}/v1/responses", json={"model": "gpt-test", "input": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
