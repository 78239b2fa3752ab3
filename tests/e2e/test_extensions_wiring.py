"""Extensions against the protocol-faithful fake upstream, whose recorded requests show
exactly what the model received: personas, the three ways of switching extensions on,
and server-side sessions (history, trimming, key isolation, the API).

The same extensions run against the real SmolLM2 model in ``test_extensions_local.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, status_fault
from tests.support.servers import RunningServer, serve_gateway

KEY_A = "sk-extension-tests-a"
KEY_B = "sk-extension-tests-b"
EDITOR_PROMPT_START = "You are a careful line editor."


@pytest.fixture(scope="module")
def ext_gateway(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir: Path = tmp_path_factory.mktemp("ext-data")
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY_A, KEY_B], "data_dir": str(data_dir)},
        "personas": {"default_model": "gpt-test"},
        "sessions": {"max_context_tokens": 400, "reserve_tokens": 50},
        "models": [
            model_entry("gpt-test", "upstream-gpt", fake_url),
            model_entry("flaky", "upstream-flaky", fake_url),
        ],
    }
    with serve_gateway(config) as running:
        yield running


def client_for(server: RunningServer, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=15)


def ask(client: openai.OpenAI, text: str, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=kw.pop("model", "gpt-test"), messages=[{"role": "user", "content": text}], **kw
    )


# ----------------------------------------------------------------- personas


def test_persona_prompt_and_sampling_defaults_reach_the_model(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    reply = ask(
        client_for(ext_gateway),
        "Fix: me and him goes.",
        extra_headers={"X-Switchyard-Persona": "editor"},
    )
    assert reply.choices[0].message.content.startswith("Hello! You said:")
    body = fake.last("/v1/chat/completions").body
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith(EDITOR_PROMPT_START)
    assert body["messages"][1] == {"role": "user", "content": "Fix: me and him goes."}
    assert body["temperature"] == 0.6
    assert body["max_tokens"] == 800
    assert "switchyard" not in body


def test_request_values_override_persona_defaults(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    ask(
        client_for(ext_gateway),
        "Draft a scene.",
        temperature=0.1,
        max_completion_tokens=50,
        extra_body={"switchyard": {"persona": "writer"}},
    )
    body = fake.last("/v1/chat/completions").body
    assert body["temperature"] == 0.1
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body


def test_character_sheet_fills_the_persona_prompt(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    sheet = "Captain Mara Vey, smuggler, dry humour, afraid of deep water."
    ask(
        client_for(ext_gateway),
        "Who are you?",
        extra_body={
            "switchyard": {"persona": "character", "variables": {"character_sheet": sheet}}
        },
    )
    system = fake.last("/v1/chat/completions").body["messages"][0]["content"]
    assert sheet in system
    assert "{character_sheet}" not in system


def test_rater_persona_asks_for_json_schema(ext_gateway: RunningServer, fake: FakeOpenAI) -> None:
    ask(client_for(ext_gateway), "Rate: The cat sat.", model="persona:rater")
    body = fake.last("/v1/chat/completions").body
    assert body["model"] == "upstream-gpt"  # the persona's default model
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "rating"
    assert body["temperature"] == 0.7


def test_personas_are_listed_as_models(ext_gateway: RunningServer) -> None:
    ids = {m.id for m in client_for(ext_gateway).models.list().data}
    assert {"persona:writer", "persona:editor", "persona:character", "persona:rater"} <= ids
    assert "gpt-test" in ids


# ------------------------------------------------------- three activation ways


@pytest.mark.parametrize(
    "how",
    [
        {"extra_headers": {"X-Switchyard-Persona": "editor"}},
        {"extra_body": {"switchyard": {"persona": "editor"}}},
        {"model": "gpt-test+persona:editor"},
    ],
    ids=["header", "body", "model-suffix"],
)
def test_three_activation_ways_are_equivalent(
    ext_gateway: RunningServer, fake: FakeOpenAI, how: dict[str, Any]
) -> None:
    ask(client_for(ext_gateway), "Tighten this.", **how)
    body = fake.last("/v1/chat/completions").body
    assert body["model"] == "upstream-gpt"
    assert body["messages"][0]["content"].startswith(EDITOR_PROMPT_START)
    assert body["temperature"] == 0.6
    assert "switchyard" not in body


@pytest.mark.parametrize(
    ("how", "param", "named"),
    [
        ({"extra_headers": {"X-Switchyard-Persona": "poet"}}, "persona", "poet"),
        ({"model": "gpt-test+persona:poet"}, "persona", "poet"),
        ({"extra_body": {"switchyard": {"tools": ["teleport"]}}}, "tools", "teleport"),
        ({"model": "gpt-test+colour:blue"}, "model", "colour"),
        ({"extra_body": {"switchyard": {"mood": "happy"}}}, "switchyard", "mood"),
        ({"extra_headers": {"X-Switchyard-Session": "bad id with spaces"}}, "session", "Session"),
    ],
)
def test_unknown_names_are_400_naming_them(
    ext_gateway: RunningServer, fake: FakeOpenAI, how: dict[str, Any], param: str, named: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client_for(ext_gateway), "hello", **how)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert named in error["message"]
    assert fake.received("/v1/chat/completions") == []


def test_an_unknown_collection_in_chat_is_404_naming_it(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client_for(ext_gateway), "hello", extra_headers={"X-Switchyard-RAG": "nowhere"})
    assert caught.value.body == {
        "message": "Unknown RAG collection 'nowhere'.",
        "type": "invalid_request_error",
        "param": "rag",
        "code": None,
    }
    assert fake.received("/v1/chat/completions") == []


def test_streaming_with_a_persona_streams_and_applies_it(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    stream = client_for(ext_gateway).chat.completions.create(
        model="gpt-test+persona:writer",
        messages=[{"role": "user", "content": "Begin."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! You said: Begin."
    assert chunks[-1].usage is not None
    assert fake.last("/v1/chat/completions").body["max_tokens"] == 2000


# ------------------------------------------------------------------ sessions


def session_ask(server: RunningServer, session: str, text: str, key: str = KEY_A, **kw: Any) -> Any:
    return ask(client_for(server, key), text, extra_headers={"X-Switchyard-Session": session}, **kw)


def test_session_history_is_prepended_across_three_requests(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    session_ask(ext_gateway, "trip", "one")
    session_ask(ext_gateway, "trip", "two")
    session_ask(ext_gateway, "trip", "three")
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "one"),
        ("assistant", "Hello! You said: one"),
        ("user", "two"),
        ("assistant", "Hello! You said: two"),
        ("user", "three"),
    ]


def test_streamed_turns_are_stored_too(ext_gateway: RunningServer, fake: FakeOpenAI) -> None:
    client = client_for(ext_gateway)
    for text in ("first", "second"):
        list(
            client.chat.completions.create(
                model="gpt-test+session:streamed",
                messages=[{"role": "user", "content": text}],
                stream=True,
            )
        )
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert [m["content"] for m in sent] == ["first", "Hello! You said: first", "second"]


def test_failed_request_stores_nothing(ext_gateway: RunningServer, fake: FakeOpenAI) -> None:
    session_ask(ext_gateway, "fragile", "kept", model="flaky")
    fake.faults["upstream-flaky"] = status_fault(400, "bad thing")
    with pytest.raises(openai.BadRequestError):
        session_ask(ext_gateway, "fragile", "lost", model="flaky")
    fake.faults.clear()
    session_ask(ext_gateway, "fragile", "after", model="flaky")
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert [m["content"] for m in sent] == ["kept", "Hello! You said: kept", "after"]


def test_history_over_budget_drops_oldest_turns_keeps_system(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    client = client_for(ext_gateway)
    client.chat.completions.create(
        model="gpt-test",
        messages=[
            {"role": "system", "content": "Always be brief."},
            {"role": "user", "content": "turn 0 " + "word " * 60},
        ],
        extra_headers={"X-Switchyard-Session": "long"},
    )
    for turn in range(1, 6):
        session_ask(ext_gateway, "long", f"turn {turn} " + "word " * 60)
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert sent[0] == {"role": "system", "content": "Always be brief."}
    assert sent[-1]["content"].startswith("turn 5")
    users = [m["content"].split()[1] for m in sent if m["role"] == "user"]
    assert "0" not in users  # the oldest turn went first
    assert users == sorted(users)  # what is left is still in order
    total_chars = sum(len(m["content"]) for m in sent)
    assert total_chars // 4 < 400  # within the configured budget (estimated tokens)


def test_sessions_are_scoped_to_the_key(ext_gateway: RunningServer, fake: FakeOpenAI) -> None:
    session_ask(ext_gateway, "shared-name", "secret of A", key=KEY_A)
    session_ask(ext_gateway, "shared-name", "hello from B", key=KEY_B)
    sent = fake.last("/v1/chat/completions").body["messages"]
    assert [m["content"] for m in sent] == ["hello from B"]

    api = f"{ext_gateway.url}/v1/switchyard/sessions"
    as_a = {"Authorization": f"Bearer {KEY_A}"}
    as_b = {"Authorization": f"Bearer {KEY_B}"}
    a_session = httpx.get(f"{api}/shared-name", headers=as_a).json()
    assert a_session["messages"][0]["content"] == "secret of A"
    b_session = httpx.get(f"{api}/shared-name", headers=as_b).json()
    assert "secret of A" not in str(b_session)
    assert httpx.delete(f"{api}/shared-name", headers=as_b).status_code == 200
    assert httpx.get(f"{api}/shared-name", headers=as_a).status_code == 200  # A's survives


def test_session_api_lists_gets_and_deletes(ext_gateway: RunningServer, fake: FakeOpenAI) -> None:
    session_ask(ext_gateway, "api-demo", "hi", key=KEY_B)
    api = f"{ext_gateway.url}/v1/switchyard/sessions"
    headers = {"Authorization": f"Bearer {KEY_B}"}
    listed = httpx.get(api, headers=headers).json()
    assert "api-demo" in [s["id"] for s in listed["data"]]
    one = httpx.get(f"{api}/api-demo", headers=headers).json()
    assert one["message_count"] == 2
    assert one["messages"][1]["role"] == "assistant"
    assert httpx.delete(f"{api}/api-demo", headers=headers).json()["deleted"] is True
    missing = httpx.get(f"{api}/api-demo", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "session_id"
    assert httpx.get(api).status_code == 401


# ----------------------------------------------------------------- tool loop

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def tool_metric(server: RunningServer, tool: str, outcome: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(f'switchyard_tool_calls_total{{outcome="{outcome}",tool="{tool}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_server_tool_is_executed_and_the_loop_continues(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    before = tool_metric(ext_gateway, "web_fetch", "error")
    reply = ask(client_for(ext_gateway), "Read the page.", model="gpt-test+tools:web_fetch")
    message = reply.choices[0].message
    # The fake calls web_fetch with a url that is not a URL; the tool's error text went
    # back to the model, which answered with it: the loop ran two rounds.
    assert message.tool_calls is None
    assert message.content.startswith("The tool said: error:")
    rounds = fake.received("/v1/chat/completions")
    assert len(rounds) == 2
    assert rounds[0].body["tools"][0]["function"]["name"] == "web_fetch"
    tool_message = rounds[1].body["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"] == "call_fake_0"
    assert tool_metric(ext_gateway, "web_fetch", "error") == before + 1


def test_client_and_server_tools_in_one_request(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    client = client_for(ext_gateway)
    executed_before = tool_metric(ext_gateway, "web_fetch", "error")
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo, and read a page."}]
    first = client.chat.completions.create(
        model="gpt-test",
        messages=messages,
        tools=[WEATHER_TOOL],
        extra_headers={"X-Switchyard-Tools": "web_fetch"},
    )
    # Both were called; the server ran web_fetch and hands back only the client's call.
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"]
    sent = fake.received("/v1/chat/completions")
    assert len(sent) == 1
    assert {t["function"]["name"] for t in sent[0].body["tools"]} == {"get_weather", "web_fetch"}
    assert tool_metric(ext_gateway, "web_fetch", "error") == executed_before + 1

    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21 C"},
    ]
    second = client.chat.completions.create(
        model="gpt-test",
        messages=messages,
        tools=[WEATHER_TOOL],
        extra_headers={"X-Switchyard-Tools": "web_fetch"},
    )
    assert second.choices[0].message.content == "The tool said: Sunny, 21 C"


def test_streaming_client_gets_the_final_answer_streamed(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    stream = client_for(ext_gateway).chat.completions.create(
        model="gpt-test+tools:web_fetch",
        messages=[{"role": "user", "content": "Read the page."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("The tool said: error:")
    assert chunks[-1].usage is not None
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"


def stream_weather_and_page(server: RunningServer, **kw: Any) -> list[Any]:
    """The chunks of a streamed request the fake answers by calling both tools at once:
    the client's get_weather and the server's web_fetch."""
    return list(
        client_for(server).chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "Weather in Oslo, and read a page."}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            extra_headers={"X-Switchyard-Tools": "web_fetch"},
            stream=True,
            **kw,
        )
    )


def streamed_tool_calls(chunks: list[Any]) -> list[Any]:
    """Every tool-call delta of a stream, in order."""
    return [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]


def finish_reasons(chunks: list[Any]) -> list[str]:
    """The finish reasons a stream set, in order (chunks without one left out)."""
    return [c.choices[0].finish_reason for c in chunks if c.choices if c.choices[0].finish_reason]


def _fake_usage(body: dict[str, Any], completion_tokens: int) -> tuple[int, int]:
    """The fake's usage for one request: prompt words, and the given completion count."""
    words = sum(len(m["content"].split()) for m in body["messages"] if m.get("content"))
    return words, completion_tokens


def test_tool_loop_streams_the_answer_token_by_token(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    chunks = list(
        client_for(ext_gateway).chat.completions.create(
            model="gpt-test+tools:web_fetch",
            messages=[{"role": "user", "content": "Read the page."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    rounds = fake.received("/v1/chat/completions")
    assert len(rounds) == 2
    # Both rounds were streaming calls; the answer's deltas came through one by one.
    assert [r.body["stream"] for r in rounds] == [True, True]
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    answer = [text for text in contents if text]
    expected = "The tool said: " + rounds[1].body["messages"][-1]["content"]
    assert "".join(answer) == expected
    assert len(answer) == len(expected.split(" ")) > 1  # the fake's deltas, one per word
    assert [c.choices[0].delta.role for c in chunks if c.choices].count("assistant") == 1
    assert len({c.id for c in chunks}) == 1
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert finish_reasons(chunks) == ["stop"]
    # Usage counts both rounds (the first one called web_fetch: 5 tokens in the fake).
    first = _fake_usage(rounds[0].body, 5)
    second = _fake_usage(rounds[1].body, len(answer))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == first[0] + second[0]
    assert chunks[-1].usage.completion_tokens == first[1] + second[1]
    assert chunks[-1].usage.total_tokens == sum(first) + sum(second)


def test_tool_loop_stream_hands_back_the_clients_own_calls(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    chunks = stream_weather_and_page(ext_gateway)
    # The fake called both tools in one round: web_fetch ran here, get_weather goes back.
    assert len(fake.received("/v1/chat/completions")) == 1
    deltas = streamed_tool_calls(chunks)
    assert [(d.index, d.id, d.function.name if d.function else None) for d in deltas] == [
        (0, "call_fake_0", "get_weather")
    ]
    assert deltas[0].function is not None
    assert deltas[0].function.arguments == '{"city": "value of city"}'
    assert finish_reasons(chunks) == ["tool_calls"]
    assert chunks[-1].usage is None  # not asked for


def test_tool_loop_usage_counts_every_round(ext_gateway: RunningServer, fake: FakeOpenAI) -> None:
    reply = ask(client_for(ext_gateway), "Read the page.", model="gpt-test+tools:web_fetch")
    rounds = fake.received("/v1/chat/completions")
    answer = reply.choices[0].message.content
    first = _fake_usage(rounds[0].body, 5)
    second = _fake_usage(rounds[1].body, len(answer.split(" ")))
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        first[0] + second[0],
        first[1] + second[1],
    )


def test_tool_loop_stream_runs_a_forced_round_whole(
    ext_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    chunks = stream_weather_and_page(
        ext_gateway, tool_choice="required", stream_options={"include_usage": True}
    )
    rounds = fake.received("/v1/chat/completions")
    # A round that must call a tool cannot be the answer: it is asked for whole.
    assert [r.body.get("stream") for r in rounds] == [False]
    deltas = streamed_tool_calls(chunks)
    assert [(d.index, d.id) for d in deltas] == [(0, "call_fake_0")]
    assert finish_reasons(chunks) == ["tool_calls"]
    prompt, completion = _fake_usage(rounds[0].body, 10)  # two calls, 5 tokens each
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        prompt,
        completion,
    )
