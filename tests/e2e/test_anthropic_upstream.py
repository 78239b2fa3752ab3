"""Claude models for OpenAI clients: the ``anthropic`` adapter behind the real gateway,
driven by the official ``openai`` package against the fake Anthropic API.

Each test asserts both ends: what the OpenAI client got (content, exact finish reasons,
usage equal to the fake's counts, tool calls, typed errors) and what reached the
Anthropic API (the translated body, alternating roles, tool_use / tool_result blocks
with matching ids, ``x-api-key`` and ``anthropic-version``, no cookies).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.support.fake_anthropic import (
    API_KEY,
    TOOL_TRIGGER,
    FakeAnthropic,
    Fault,
    rate_limited,
    running_fake_anthropic,
    status_fault,
)
from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-anthropic-e2e"
EDITOR_PROMPT_START = "You are a careful line editor."
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object"}},
}


def claude(name: str, upstream: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "adapter": "anthropic",
        "model": upstream,
        "base_url": base_url,
        "api_key": API_KEY,
        "timeout_s": 10,
        **extra,
    }


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeAnthropic, str]]:
    with running_fake_anthropic() as running:
        yield running


@pytest.fixture
def fake(served: tuple[FakeAnthropic, str]) -> Iterator[FakeAnthropic]:
    served[0].clear()
    yield served[0]
    served[0].clear()


@pytest.fixture(scope="module")
def gateway(
    served: tuple[FakeAnthropic, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # By name, not IP: aiohttp's cookie jar would refuse a bare IP's cookies anyway.
    url = served[1].replace("127.0.0.1", "localhost")
    data: Path = tmp_path_factory.mktemp("anthropic-e2e")
    config = {
        "server": {"api_keys": [KEY], "data_dir": str(data)},
        "personas": {"default_model": "claude"},
        "models": [
            claude("claude", "claude-fake-1", url, default_max_tokens=256),
            claude("claude-limited", "claude-rate-limited", url),
            claude("claude-overloaded", "claude-overloaded", url),
            claude("claude-picky", "claude-picky", url),
            claude("claude-misconfigured", "claude-fake-1", url, api_key="sk-ant-revoked"),
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=20) as sdk:
        yield sdk


USER: Any = [{"role": "user", "content": "Hi there"}]


def error_message(error: openai.APIError) -> Any:
    """The ``message`` of the error object (the SDK's own message adds a prefix)."""
    assert isinstance(error.body, dict)
    return error.body["message"]


# ------------------------------------------------------------------------------ text


def test_a_chat_completion(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    reply = client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        temperature=0.2,
        stop=["QUIT"],
    )

    assert reply.choices[0].message.content == "Hello! You said: Hi there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "claude-fake-1"
    assert reply.id == "msg_fake1"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 5)
    assert reply.usage.total_tokens == 9
    sent = fake.last()
    assert sent.body == {
        "model": "claude-fake-1",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi there"}],
        "system": "Be brief.",
        "stop_sequences": ["QUIT"],
        "temperature": 0.2,
    }
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers


def test_max_tokens_is_the_length_finish(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    reply = client.chat.completions.create(model="claude", messages=USER, max_completion_tokens=2)

    assert reply.choices[0].message.content == "Hello! You"
    assert reply.choices[0].finish_reason == "length"
    assert fake.last().body["max_tokens"] == 2


def test_a_stop_sequence_is_the_stop_finish(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    reply = client.chat.completions.create(model="claude", messages=USER, stop="said")

    assert reply.choices[0].message.content == "Hello! You "
    assert reply.choices[0].finish_reason == "stop"


def test_a_stream(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    stream = client.chat.completions.create(
        model="claude", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    deltas = [(c.choices[0].delta.role, c.choices[0].delta.content) for c in chunks[:-2]]
    assert deltas == [
        ("assistant", ""),
        (None, "Hello!"),
        (None, " You"),
        (None, " said:"),
        (None, " Hi"),
        (None, " there"),
    ]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks[:-2]] == [None] * 6
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (2, 5)
    assert {c.id for c in chunks} == {"msg_fake1"}
    assert fake.last().body["stream"] is True


def test_a_stream_without_usage_asked_has_no_usage_chunk(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    chunks = list(client.chat.completions.create(model="claude", messages=USER, stream=True))

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_an_image_reaches_anthropic_as_a_base64_block(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    content: Any = [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]

    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])

    assert fake.last().body["messages"][0]["content"] == [
        {"type": "text", "text": "What is it?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
    ]


class Place(pydantic.BaseModel):
    city: str
    country: str


def test_structured_output_through_parse(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    parsed = client.chat.completions.parse(
        model="claude", messages=[{"role": "user", "content": "Where?"}], response_format=Place
    )

    assert parsed.choices[0].message.parsed == Place(
        city="value of city", country="value of country"
    )
    output = fake.last().body["output_config"]
    assert output["format"]["type"] == "json_schema"
    assert output["format"]["schema"]["properties"] == {
        "city": {"title": "City", "type": "string"},
        "country": {"title": "Country", "type": "string"},
    }


def test_a_persona_reaches_anthropic_as_the_system_prompt(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Fix: me and him goes."}],
        extra_headers={"X-Switchyard-Persona": "editor"},
    )

    body = fake.last().body
    assert body["system"].startswith(EDITOR_PROMPT_START)
    assert body["messages"] == [{"role": "user", "content": "Fix: me and him goes."}]
    assert (body["temperature"], body["max_tokens"]) == (0.6, 800)
    assert "switchyard" not in body


# ----------------------------------------------------------------------------- tools


def test_a_tool_round_trip(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": f"Please {TOOL_TRIGGER}: Paris?"}]

    first = client.chat.completions.create(
        model="claude", messages=messages, tools=[WEATHER, CLOCK]
    )

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls: Any = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [
        ("toolu_fake1_0", "get_weather"),
        ("toolu_fake1_1", "get_time"),
    ]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "value of city"}, {}]
    assert fake.last().body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER["function"]["parameters"],
            "description": "The weather in a city.",
        },
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 24 C"})
    messages.append({"role": "tool", "tool_call_id": calls[1].id, "content": "12:00"})
    final = client.chat.completions.create(
        model="claude", messages=messages, tools=[WEATHER, CLOCK]
    )

    assert final.choices[0].message.content == "The tool said: Sunny, 24 C | 12:00"
    assert final.choices[0].finish_reason == "stop"
    assert fake.last().body["messages"] == [
        {"role": "user", "content": f"Please {TOOL_TRIGGER}: Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_fake1_0",
                    "name": "get_weather",
                    "input": {"city": "value of city"},
                },
                {"type": "tool_use", "id": "toolu_fake1_1", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_fake1_0", "content": "Sunny, 24 C"},
                {"type": "tool_result", "tool_use_id": "toolu_fake1_1", "content": "12:00"},
            ],
        },
    ]


def test_a_streamed_tool_call_accumulates_in_the_sdk(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    with client.chat.completions.stream(
        model="claude",
        messages=[{"role": "user", "content": "What's the weather in Rome?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    ) as stream:
        final = stream.get_final_completion()

    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls: Any = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("toolu_fake1_0", "get_weather", '{"city": "value of city"}')
    ]
    assert fake.last().body["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }


# ---------------------------------------------------------------------------- errors


def test_a_refused_upstream_key_is_a_401_about_the_deployment(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="claude-misconfigured", messages=USER)

    assert caught.value.status_code == 401
    assert error_message(caught.value) == (
        "The Anthropic upstream refused this deployment's API key: invalid x-api-key"
    )
    assert fake.last().headers["x-api-key"] == "sk-ant-revoked"


def test_a_429_is_a_rate_limit_with_a_binding_cooldown(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    fake.faults["claude-rate-limited"] = rate_limited("7")

    with pytest.raises(openai.RateLimitError) as first:
        client.chat.completions.create(model="claude-limited", messages=USER)
    with pytest.raises(openai.RateLimitError) as second:
        client.chat.completions.create(model="claude-limited", messages=USER, stream=True)

    assert first.value.response.headers["retry-after"] == "7"
    assert error_message(first.value).startswith("Upstream rate limit: Number of request tokens")
    assert (
        error_message(second.value)
        == "Every deployment of 'claude-limited' is rate limited upstream."
    )
    assert len(fake.received()) == 1  # the cooldown kept the second call from the upstream


def test_529_overloaded_is_a_503(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.faults["claude-overloaded"] = status_fault(529, "Overloaded")

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="claude-overloaded", messages=USER)

    assert caught.value.status_code == 503
    assert caught.value.code == "upstream_overloaded"
    assert error_message(caught.value) == "The Anthropic upstream is overloaded: Overloaded"


def test_an_upstream_400_is_passed_on(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.faults["claude-picky"] = status_fault(400, "temperature: range: 0..1")

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-picky", messages=USER, temperature=1.5)

    assert caught.value.status_code == 400
    assert error_message(caught.value) == "temperature: range: 0..1"
    assert len(fake.received()) == 1  # never retried


def test_an_error_event_mid_stream_ends_it_with_an_error(
    client: openai.OpenAI, fake: FakeAnthropic
) -> None:
    fake.faults["claude-fake-1"] = Fault("error_event", message="Overloaded", after=5)
    seen: list[str] = []

    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="claude", messages=USER, stream=True):
            seen.append(chunk.choices[0].delta.content or "")

    assert seen == ["", "Hello!", " You"]
    assert caught.value.message == "The Anthropic upstream is overloaded: Overloaded"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/bmp;base64,Qk0="},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{x"},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "system", "content": "Rules only"}]}, "messages"),
        ({"tools": [{"type": "custom", "function": {"name": "f"}}]}, "tools[0].type"),
    ],
)
def test_what_anthropic_cannot_take_is_a_400_before_the_upstream(
    gateway: RunningServer, fake: FakeAnthropic, body: dict[str, Any], param: str
) -> None:
    request = {"model": "claude", "messages": USER, **body}
    for stream in (False, True):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={**request, "stream": stream},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=20,
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == param
        assert error["type"] == "invalid_request_error"
    assert fake.received() == []


def test_the_gateway_keeps_no_upstream_cookie(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    for _ in range(2):
        client.chat.completions.create(model="claude", messages=USER)
    list(client.chat.completions.create(model="claude", messages=USER, stream=True))

    assert [r.headers.get("cookie") for r in fake.received()] == [None, None, None]


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_side_tool_loop_runs_on_a_claude_model(
    client: openai.OpenAI, fake: FakeAnthropic, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": f"Please {TOOL_TRIGGER} to read the page."}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="claude+tools:web_fetch", messages=messages, stream=True
            )
        )
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        reply = client.chat.completions.create(model="claude+tools:web_fetch", messages=messages)
        content, finish = reply.choices[0].message.content or "", reply.choices[0].finish_reason

    # The fake calls web_fetch with a url that is not one: the tool's error went back to
    # the model as a tool_result, and the model answered with it.
    assert content.startswith("The tool said: error:")
    assert finish == "stop"
    first, second = fake.received()
    assert [t["name"] for t in first.body["tools"]] == ["web_fetch"]
    use = second.body["messages"][1]["content"][0]
    assert (use["type"], use["id"], use["name"]) == ("tool_use", "toolu_fake1_0", "web_fetch")
    result = second.body["messages"][2]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", "toolu_fake1_0")
    assert [m["role"] for m in second.body["messages"]] == ["user", "assistant", "user"]


def test_tokens_count_is_anthropics_exact_count(
    gateway: RunningServer, fake: FakeAnthropic
) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=gateway.url, headers=auth, timeout=20) as http:
        counted = http.post(
            "/v1/tokens/count", json={"model": "claude", "messages": USER, "tools": [WEATHER]}
        )
        tokenized = http.post("/v1/tokenize", json={"model": "claude", "prompt": "Hi there"})

    assert counted.status_code == 200
    assert counted.json() == {"count": 3}  # two words and one tool, as the fake counts
    assert fake.last("/v1/messages/count_tokens").body == {
        "model": "claude-fake-1",
        "messages": [{"role": "user", "content": "Hi there"}],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": WEATHER["function"]["parameters"],
                "description": "The weather in a city.",
            }
        ],
    }
    assert tokenized.status_code == 400
    assert tokenized.json()["error"]["code"] == "unsupported_capability"


def test_langchains_chat_openai_talks_to_claude(
    gateway: RunningServer, fake: FakeAnthropic
) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    llm = ChatOpenAI(
        model="claude",
        base_url=f"{gateway.url}/v1",
        api_key=SecretStr(KEY),
        max_retries=0,
    )
    reply = llm.invoke("Hi there")
    streamed: Any = None
    for chunk in llm.bind_tools([get_weather]).stream(f"Please {TOOL_TRIGGER} for Paris"):
        streamed = chunk if streamed is None else streamed + chunk

    assert reply.content == "Hello! You said: Hi there"
    assert reply.response_metadata["finish_reason"] == "stop"
    assert reply.usage_metadata is not None
    assert (reply.usage_metadata["input_tokens"], reply.usage_metadata["output_tokens"]) == (2, 5)
    assert streamed.tool_calls == [
        {
            "name": "get_weather",
            "args": {"city": "value of city"},
            "id": "toolu_fake2_0",
            "type": "tool_call",
        }
    ]
    assert fake.last().body["tools"][0]["input_schema"]["required"] == ["city"]
