"""The Ollama API (``/api``) against the protocol-faithful fake OpenAI upstream, driven
by the official ``ollama`` package: chat (streamed and whole), tools, ``format``,
generate, embeddings, the model listings, errors in Ollama's shape, and extensions.

The fake's recorded requests show exactly what the translated request was; its
answers are deterministic (``Hello! You said: ...``, a call of every offered tool,
usage counted in words), so every assertion is exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import (
    DEFAULT_DIMENSIONS,
    FakeOpenAI,
    Fault,
    embedding_vector,
    status_fault,
)
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenants import seed_keys

KEY = "sk-ollama-dialect-tests"
LIMITED = "sk-ollama-dialect-embeddings-only"
ONE_A_MINUTE = "sk-ollama-dialect-one-a-minute"
EDITOR_PROMPT_START = "You are a careful line editor."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
#: The smallest valid PNG (1x1), as a client would read it from a file.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def server(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir: Path = tmp_path_factory.mktemp("ollama-data")
    seed_keys(
        data_dir,
        {LIMITED: "team_embed", ONE_A_MINUTE: "team_slow"},
        teams={"team_embed": {"allowed_models": ["embed*"]}, "team_slow": {"rpm_limit": 1}},
    )
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY], "data_dir": str(data_dir)},
        "personas": {"default_model": "gpt-test"},
        "models": [
            model_entry("gpt-test", "upstream-gpt", fake_url),
            model_entry("embed-test", "upstream-embed", fake_url),
            model_entry("broken", "upstream-broken", fake_url),
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> ollama.Client:
    return ollama.Client(host=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def _post(server: RunningServer, path: str, body: Any, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers["content-type"] = "application/json"
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)


ASK = [{"role": "user", "content": "How are you today"}]


# ---------------------------------------------------------------------------- chat


def test_chat_whole_answer(client: ollama.Client, fake: FakeOpenAI) -> None:
    reply = client.chat(model="gpt-test", messages=ASK, stream=False)

    assert reply.message.role == "assistant"
    assert reply.message.content == "Hello! You said: How are you today"
    assert reply.done is True
    assert reply.done_reason == "stop"
    assert reply.model == "gpt-test"
    assert reply.prompt_eval_count == 4  # the fake counts words
    assert reply.eval_count == 7
    assert reply.total_duration is not None and reply.total_duration > 0
    sent = fake.last("/v1/chat/completions").body
    assert sent["messages"] == ASK
    assert sent["model"] == "upstream-gpt"
    assert "stream" not in sent


def test_chat_streams_ndjson_by_default(server: RunningServer, fake: FakeOpenAI) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/api/chat",
        json={"model": "gpt-test", "messages": ASK},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]

    pieces = [line["message"]["content"] for line in lines[:-1]]
    assert pieces == ["Hello!", " You", " said:", " How", " are", " you", " today"]
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert (final["prompt_eval_count"], final["eval_count"]) == (4, 7)
    assert final["total_duration"] >= final["eval_duration"] > 0
    sent = fake.last("/v1/chat/completions").body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_chat_stream_through_the_client(client: ollama.Client) -> None:
    parts = list(client.chat(model="gpt-test:latest", messages=ASK, stream=True))

    assert "".join(p.message.content or "" for p in parts) == "Hello! You said: How are you today"
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == 7


def test_options_are_mapped(client: ollama.Client, fake: FakeOpenAI) -> None:
    client.chat(
        model="gpt-test",
        messages=ASK,
        options={
            "num_predict": 12, "temperature": 0.25, "top_p": 0.5, "top_k": 7, "seed": 42,
            "stop": ["\n\n"], "repeat_penalty": 1.3, "num_gpu": 3, "mirostat": 1,
        },
        keep_alive="5m",
        think=False,
    )  # fmt: skip
    sent = fake.last("/v1/chat/completions").body
    assert {k: v for k, v in sent.items() if k not in ("messages", "model")} == {
        "max_tokens": 12,
        "temperature": 0.25,
        "top_p": 0.5,
        "top_k": 7,
        "seed": 42,
        "stop": ["\n\n"],
        "repeat_penalty": 1.3,
    }


def test_images_become_data_url_parts(client: ollama.Client, fake: FakeOpenAI) -> None:
    client.chat(
        model="gpt-test",
        messages=[{"role": "user", "content": "What is this", "images": [PNG]}],
    )
    import base64

    sent = fake.last("/v1/chat/completions").body["messages"][0]
    data = base64.b64encode(PNG).decode()
    assert sent == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        ],
    }


# --------------------------------------------------------------------------- tools


def test_tool_call_arrives_with_arguments_as_an_object(client: ollama.Client) -> None:
    reply = client.chat(model="gpt-test", messages=ASK, tools=[WEATHER])

    calls = reply.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "value of city"}
    assert reply.done_reason == "stop"


def test_streamed_tool_call_comes_whole(server: RunningServer) -> None:
    response = _post(
        server, "/api/chat", {"model": "gpt-test", "messages": ASK, "tools": [WEATHER]}
    )
    lines = [json.loads(line) for line in response.text.splitlines()]

    assert len(lines) == 2
    call = lines[0]["message"]["tool_calls"]
    assert call == [
        {
            "id": "call_fake_0",
            "function": {"index": 0, "name": "get_weather", "arguments": {"city": "value of city"}},
        }
    ]
    assert lines[1]["done"] is True and lines[1]["done_reason"] == "stop"


def test_a_tool_call_cut_off_by_the_token_limit_is_done_reason_length(
    client: ollama.Client, fake: FakeOpenAI
) -> None:
    reply = client.chat(model="gpt-test", messages=ASK, tools=[WEATHER], options={"num_predict": 3})
    assert fake.last("/v1/chat/completions").body["max_tokens"] == 3
    assert reply.message.tool_calls is None
    assert reply.message.content == ""
    assert (reply.done, reply.done_reason, reply.eval_count) == (True, "length", 3)

    parts = list(
        client.chat(
            model="gpt-test", messages=ASK, tools=[WEATHER], options={"num_predict": 3},
            stream=True,
        )
    )  # fmt: skip
    assert len(parts) == 1
    assert parts[0].message.tool_calls is None
    assert (parts[0].done, parts[0].done_reason, parts[0].eval_count) == (True, "length", 3)


def test_tool_round_trip(client: ollama.Client, fake: FakeOpenAI) -> None:
    first = client.chat(model="gpt-test", messages=ASK, tools=[WEATHER])
    messages = [
        *ASK,
        first.message,
        {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"},
    ]
    second = client.chat(model="gpt-test", messages=messages, tools=[WEATHER])

    assert second.message.content == "The tool said: sunny, 21 C"
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1_0",  # the ollama package drops ids: one is given per message
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "value of city"}'},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "content": "sunny, 21 C", "tool_call_id": "call_1_0"}


# -------------------------------------------------------------------------- format


def test_format_json_and_schema(client: ollama.Client, fake: FakeOpenAI) -> None:
    client.chat(model="gpt-test", messages=ASK, format="json")
    assert fake.last("/v1/chat/completions").body["response_format"] == {"type": "json_object"}

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    client.chat(model="gpt-test", messages=ASK, format=schema)
    assert fake.last("/v1/chat/completions").body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "format", "schema": schema},
    }


# ------------------------------------------------------------------------ generate


def test_generate_whole_and_streamed(client: ollama.Client, fake: FakeOpenAI) -> None:
    reply = client.generate(model="gpt-test", prompt="Tell me more", system="Be brief")
    assert reply.response == "Hello! You said: Tell me more"
    assert reply.done is True and reply.done_reason == "stop"
    assert reply.eval_count == 6
    assert fake.last("/v1/chat/completions").body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Tell me more"},
    ]

    parts = list(client.generate(model="gpt-test", prompt="Tell me more", stream=True))
    assert "".join(p.response or "" for p in parts) == "Hello! You said: Tell me more"
    assert parts[-1].done is True and parts[-1].response == ""
    assert parts[-1].eval_count == 6


def test_generate_raw_uses_completions(client: ollama.Client, fake: FakeOpenAI) -> None:
    reply = client.generate(
        model="gpt-test", prompt="def f():", raw=True, options={"num_predict": 5}
    )
    assert reply.response == " and so on"
    sent = fake.last("/v1/completions").body
    assert sent == {"model": "upstream-gpt", "prompt": "def f():", "max_tokens": 5}


def test_generate_suffix_is_fill_in_the_middle(client: ollama.Client, fake: FakeOpenAI) -> None:
    reply = client.generate(model="gpt-test", prompt="def f(", suffix="    return x")
    assert reply.response == " and so on [until     return x]"
    assert fake.last("/v1/completions").body["suffix"] == "    return x"


# ---------------------------------------------------------------------- embeddings


def test_embed_equals_v1_embeddings(client: ollama.Client, server: RunningServer) -> None:
    reply = client.embed(model="embed-test", input=["first text", "second"])
    v1 = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": "embed-test", "input": ["first text", "second"]},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()

    assert [list(e) for e in reply.embeddings] == [d["embedding"] for d in v1["data"]]
    assert [list(e) for e in reply.embeddings] == [
        embedding_vector("first text", DEFAULT_DIMENSIONS),
        embedding_vector("second", DEFAULT_DIMENSIONS),
    ]
    assert reply.prompt_eval_count == 3


def test_embed_one_string_dimensions_and_legacy(client: ollama.Client) -> None:
    one = client.embed(model="embed-test", input="alone", dimensions=4)
    assert [list(e) for e in one.embeddings] == [embedding_vector("alone", 4)]
    legacy = client.embeddings(model="embed-test", prompt="alone")
    assert list(legacy.embedding) == embedding_vector("alone", DEFAULT_DIMENSIONS)


# -------------------------------------------------------------------------- models


def test_list_show_version(client: ollama.Client, server: RunningServer) -> None:
    listed = client.list()
    v1 = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    ids = [m["id"] for m in v1.json()["data"]]
    assert ids[:3] == ["gpt-test", "embed-test", "broken"]
    # personas are models too ("persona:editor"): a name with a tag keeps it
    assert [m.model for m in listed.models] == [i if ":" in i else f"{i}:latest" for i in ids]
    assert all(m.size == 0 and m.details.family == "" for m in listed.models)
    assert all(len(m.digest) == 64 for m in listed.models)
    assert len({m.digest for m in listed.models}) == len(ids)

    shown = client.show("gpt-test:latest")
    # an OpenAI-compatible upstream may serve every endpoint: its adapter says so
    assert shown.capabilities == ["completion", "tools", "embedding"]
    assert shown.modelinfo == {}
    assert shown.details is not None and shown.details.format == ""
    persona = client.show("persona:editor")  # listed: an extension serves it through chat
    assert persona.capabilities == ["completion", "tools"]

    assert client.ps().models == []
    version = httpx.get(f"{server.url}/api/version", headers={"Authorization": f"Bearer {KEY}"})
    assert version.json() == {"version": "0.32.15"}


def test_root_answers_as_ollama_does(server: RunningServer) -> None:
    assert httpx.get(server.url).text == "Ollama is running"
    head = httpx.head(server.url)
    assert head.status_code == 200


# -------------------------------------------------------------------------- errors


def test_no_key_is_a_401_response_error(server: RunningServer) -> None:
    anonymous = ollama.Client(host=server.url)
    with pytest.raises(ollama.ResponseError) as raised:
        anonymous.chat(model="gpt-test", messages=ASK)
    assert raised.value.status_code == 401
    for path in ("/api/tags", "/api/version", "/api/ps"):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 401
        assert list(response.json()) == ["error"]
    assert _post(server, "/api/embed", {"model": "embed-test"}, key="sk-wrong").status_code == 401


def test_unknown_model_is_404_in_ollama_words(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model="nope", messages=ASK)
    assert (raised.value.status_code, raised.value.error) == (404, "model 'nope' not found")
    with pytest.raises(ollama.ResponseError) as raised:
        client.show("nope:latest")
    assert (raised.value.status_code, raised.value.error) == (404, "model 'nope:latest' not found")


def test_upstream_failure_before_the_stream_is_its_status(
    client: ollama.Client, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-broken"] = status_fault(503, "the upstream is down")
    with pytest.raises(ollama.ResponseError) as whole:
        client.chat(model="broken", messages=ASK)
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat(model="broken", messages=ASK, stream=True))
    for raised in (whole, streamed):
        assert raised.value.status_code == 502
        assert raised.value.error == "Upstream error 503: the upstream is down"


def test_failure_after_the_stream_began_is_an_error_line(
    server: RunningServer, client: ollama.Client, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-broken"] = Fault("truncate", after=3)
    response = _post(server, "/api/chat", {"model": "broken", "messages": ASK})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200
    assert [line["message"]["content"] for line in lines[:-1]] == ["Hello!", " You"]
    assert lines[-1] == {"error": "The upstream for 'broken' ended the stream before [DONE]."}

    with pytest.raises(ollama.ResponseError) as raised:
        list(client.chat(model="broken", messages=ASK, stream=True))
    assert raised.value.error == "The upstream for 'broken' ended the stream before [DONE]."


def test_model_management_is_a_clear_501(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        client.pull("llama3")
    assert raised.value.status_code == 501
    assert raised.value.error == (
        "/api/pull is not supported: the models Switchyard serves come from its "
        "configuration, not from pulls, pushes or copies"
    )
    with pytest.raises(ollama.ResponseError) as raised:
        client.delete("gpt-test")
    assert raised.value.status_code == 501


def test_a_key_sees_and_uses_only_its_allowed_models(server: RunningServer) -> None:
    limited = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {LIMITED}"})
    assert [m.model for m in limited.list().models] == ["embed-test:latest"]
    with pytest.raises(ollama.ResponseError) as raised:
        limited.chat(model="gpt-test", messages=ASK)
    assert (raised.value.status_code, raised.value.error) == (404, "model 'gpt-test' not found")
    with pytest.raises(ollama.ResponseError) as raised:
        limited.show("gpt-test")
    assert raised.value.status_code == 404
    reply = limited.embed(model="embed-test", input="allowed")
    assert [list(e) for e in reply.embeddings] == [embedding_vector("allowed", DEFAULT_DIMENSIONS)]


def test_load_and_unload_requests_are_admitted_like_model_calls(server: RunningServer) -> None:
    slow = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {ONE_A_MINUTE}"})
    loaded = slow.chat(model="gpt-test", messages=[])
    assert (loaded.done, loaded.done_reason) == (True, "load")
    for again in (
        lambda: slow.chat(model="gpt-test", messages=[]),
        lambda: slow.generate(model="gpt-test", prompt="", keep_alive=0),
    ):
        with pytest.raises(ollama.ResponseError) as raised:
            again()
        assert raised.value.status_code == 429
        assert raised.value.error.startswith("Rate limit reached for requests per minute (RPM) on ")
        assert "limit 1, used 1, requested 1." in raised.value.error


def test_a_forbidden_model_cannot_be_loaded_either(server: RunningServer) -> None:
    limited = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {LIMITED}"})
    for request in (
        lambda: limited.chat(model="gpt-test", messages=ASK),
        lambda: limited.chat(model="gpt-test", messages=[]),
        lambda: limited.generate(model="gpt-test", prompt=""),
        lambda: limited.generate(model="gpt-test", prompt="", keep_alive=0),
    ):
        with pytest.raises(ollama.ResponseError) as raised:
            request()
        assert (raised.value.status_code, raised.value.error) == (404, "model 'gpt-test' not found")


BAD = [
    ("/api/chat", b"", "missing request body"),
    ("/api/chat", {"messages": ASK}, "model is required"),
    ("/api/chat", {"model": "gpt-test", "messages": "hi"}, None),
    ("/api/chat", {"model": "gpt-test", "messages": ASK, "options": {"temperature": "hot"}},
     'option "temperature" must be of type float32'),
    ("/api/chat", {"model": "gpt-test", "messages": ASK, "options": {"num_predict": "x"}},
     'option "num_predict" must be of type integer'),
    ("/api/chat", {"model": "gpt-test", "messages": ASK, "options": {"stop": "x"}},
     'option "stop" must be of type array'),
    ("/api/chat", {"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]},
     "messages[0].role: unknown role 'wizard' (system, user, assistant or tool)"),
    ("/api/chat", {"model": "gpt-test", "messages": ASK, "keep_alive": "soon"},
     'time: invalid duration "soon"'),
    ("/api/chat", {"model": "gpt-test", "messages": ASK, "format": "xml"},
     "invalid format 'xml': use \"json\" or a JSON schema"),
    ("/api/chat", {"model": "gpt-test", "messages": [{"role": "user", "content": "x",
                                                       "images": ["not base64!"]}]},
     "messages[0].images: an image is not valid base64"),
    ("/api/generate", {"model": "gpt-test", "prompt": "x", "raw": True, "system": "s"},
     "raw mode does not support template, system, or context"),
    ("/api/generate", {"model": "gpt-test", "prompt": "x", "template": "{{ .Prompt }}"},
     "template is not supported: the model's own chat template is always used"),
    ("/api/embed", {"model": "embed-test", "input": [1, 2]}, "invalid input type"),
    ("/api/show", {}, "model is required"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "message"), BAD)
def test_bad_input_is_a_400_in_ollama_shape(
    server: RunningServer, path: str, body: Any, message: str | None
) -> None:
    response = _post(server, path, body)
    assert response.status_code == 400
    error = response.json()
    assert list(error) == ["error"] and isinstance(error["error"], str)
    if message is not None:
        assert error["error"] == message


# ---------------------------------------------------------------------- extensions


def _system_of_last(fake: FakeOpenAI) -> str:
    return str(fake.last("/v1/chat/completions").body["messages"][0]["content"])


def test_persona_by_body_field_header_and_suffix(
    client: ollama.Client, fake: FakeOpenAI, server: RunningServer
) -> None:
    body = {
        "model": "gpt-test",
        "messages": ASK,
        "stream": False,
        "switchyard": {"persona": "editor"},
    }
    assert _post(server, "/api/chat", body).status_code == 200
    assert _system_of_last(fake).startswith(EDITOR_PROMPT_START)
    assert "switchyard" not in fake.last("/v1/chat/completions").body

    with_header = ollama.Client(
        host=server.url,
        headers={"Authorization": f"Bearer {KEY}", "X-Switchyard-Persona": "editor"},
    )
    with_header.chat(model="gpt-test", messages=ASK)
    assert _system_of_last(fake).startswith(EDITOR_PROMPT_START)

    for name in ("gpt-test+persona:editor", "gpt-test:latest+persona:editor",
                 "gpt-test+persona:editor:latest", "persona:editor"):  # fmt: skip
        fake.clear()
        reply = client.chat(model=name, messages=ASK)
        assert reply.message.content == "Hello! You said: How are you today"
        assert _system_of_last(fake).startswith(EDITOR_PROMPT_START)
        assert fake.last("/v1/chat/completions").body["model"] == "upstream-gpt"
