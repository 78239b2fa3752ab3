"""The adapter against the fake Anthropic API over real HTTP, on both transports:
chat, chat streams, the native Messages pass-through, headers, errors and the probe."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from adapters.anthropic import AnthropicAdapter
from adapters.base import CallStats, Resources
from proxy.errors import RateLimited, UpstreamError, UpstreamRejected, UpstreamUnavailable
from proxy.http_client import build_http_client, build_json_transport
from proxy.schemas.base import NativeRequest, decode_request
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.tokenize import TokenizeRequest
from proxy.settings import settings_from_mapping
from proxy.telemetry.current import bind, unbind
from tests.support.fake_anthropic import (
    API_KEY,
    TOOL_TRIGGER,
    FakeAnthropic,
    Fault,
    answer,
    rate_limited,
    running_fake_anthropic,
    sse,
    status_fault,
    stream_events,
)
from tests.support.servers import free_port

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
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


@pytest.fixture(params=["httpx", "aiohttp"])
async def adapter(
    request: pytest.FixtureRequest, served: tuple[FakeAnthropic, str]
) -> AsyncIterator[AnthropicAdapter]:
    entry = {
        "name": "claude",
        "adapter": "anthropic",
        "model": "claude-fake-1",
        "base_url": served[1].replace("127.0.0.1", "localhost") + "/v1/",
        "api_key": API_KEY,
        "headers": {"anthropic-beta": "fake-beta-1"},
        "timeout_s": 10,
    }
    settings = settings_from_mapping({"http": {"transport": request.param}, "models": [entry]})
    # The lifespan's own builders: the shared client and the hot path's transport.
    async with build_http_client(settings.http) as http:
        upstream = build_json_transport(settings.http, http)
        resources = Resources(settings=settings, http=http, upstream=upstream)
        yield AnthropicAdapter(settings.models[0], resources)
        await upstream.aclose()


def chat(**fields: Any) -> Any:
    body = {"model": "claude", "messages": [{"role": "user", "content": "Hi there"}], **fields}
    return decode_request(json.dumps(body).encode(), ChatCompletionRequest)


def native(**fields: Any) -> Any:
    body = {
        "model": "claude",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hi there"}],
        **fields,
    }
    return decode_request(json.dumps(body).encode(), NativeRequest)


async def test_chat_sends_the_translated_request_with_anthropic_headers(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    stats = CallStats()

    completion = await adapter.chat(chat(max_tokens=20), stats)

    assert completion.choices[0].message.content == "Hello! You said: Hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert (stats.prompt_tokens, stats.completion_tokens) == (2, 5)
    sent = fake.last()
    assert sent.path == "/v1/messages"
    assert sent.body == {
        "model": "claude-fake-1",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "Hi there"}],
    }
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "fake-beta-1"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers


async def test_chat_stream_yields_chunks_and_records_usage(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    stats = CallStats()
    chunks = [
        msgspec.to_builtins(c)
        async for c in adapter.chat_stream(
            chat(stream=True, stream_options={"include_usage": True}), stats
        )
    ]

    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello!"},
        {"content": " You"},
        {"content": " said:"},
        {"content": " Hi"},
        {"content": " there"},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert (stats.prompt_tokens, stats.completion_tokens) == (2, 5)
    assert fake.last().body["stream"] is True


async def test_chat_stream_without_include_usage_has_no_usage_chunk(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    stats = CallStats()
    chunks = [c async for c in adapter.chat_stream(chat(stream=True), stats)]

    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (stats.prompt_tokens, stats.completion_tokens) == (2, 5)


async def test_a_tool_call_stream(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    request = chat(
        stream=True,
        tools=[WEATHER],
        parallel_tool_calls=False,
        messages=[{"role": "user", "content": f"Please {TOOL_TRIGGER} for Paris"}],
    )

    chunks = [c async for c in adapter.chat_stream(request, CallStats())]

    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    first = calls[0][0]
    assert (first.index, first.id, first.function.name) == (0, "toolu_fake1_0", "get_weather")
    arguments = "".join(c[0].function.arguments for c in calls)
    assert json.loads(arguments) == {"city": "value of city"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert fake.last().body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_an_error_event_mid_stream_raises(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    fake.faults["claude-fake-1"] = Fault("error_event", message="Overloaded", after=4)
    seen = []

    with pytest.raises(UpstreamError) as caught:
        async for chunk in adapter.chat_stream(chat(stream=True), CallStats()):
            seen.append(chunk)

    assert caught.value.http_status == 503
    assert caught.value.error_code == "upstream_overloaded"
    assert [c.choices[0].delta.content for c in seen] == ["", "Hello!"]


async def test_a_stream_cut_before_message_stop_is_an_error(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    fake.faults["claude-fake-1"] = Fault("truncate", after=5)

    with pytest.raises(UpstreamError) as caught:
        async for _ in adapter.chat_stream(chat(stream=True), CallStats()):
            pass

    assert "ended the stream before message_stop" in caught.value.message


async def test_statuses_become_typed_errors(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    fake.faults["claude-fake-1"] = rate_limited("9")
    with pytest.raises(RateLimited) as limited:
        await adapter.chat(chat(), CallStats())
    fake.faults["claude-fake-1"] = status_fault(529, "Overloaded")
    with pytest.raises(UpstreamError) as overloaded:
        async for _ in adapter.chat_stream(chat(stream=True), CallStats()):
            pass

    assert limited.value.retry_after_s == 9.0
    assert overloaded.value.http_status == 503


async def test_a_wrong_key_is_the_deployments_401(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    adapter._headers["x-api-key"] = "sk-ant-wrong"

    with pytest.raises(UpstreamRejected) as caught:
        await adapter.chat(chat(), CallStats())

    assert caught.value.http_status == 401
    assert caught.value.error_type == "authentication_error"


async def test_probe_lists_models_with_the_key(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    await adapter.probe()

    sent = fake.last("/v1/models")
    assert (sent.method, sent.headers["x-api-key"]) == ("GET", API_KEY)
    adapter._headers["x-api-key"] = "sk-ant-wrong"
    with pytest.raises(UpstreamRejected):
        await adapter.probe()


# ------------------------------------------------------------------- native pass-through


async def test_native_forwards_the_body_with_only_the_model_replaced(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    stats = CallStats()
    request = native(top_k=3, metadata={"user_id": "u1"}, system="Be brief.")

    answer = await adapter.native("messages", request, stats)

    assert fake.last().body == {**request.body, "model": "claude-fake-1"}
    message = json.loads(answer.content)
    assert message["type"] == "message"
    assert message["content"] == [{"type": "text", "text": "Hello! You said: Hi there"}]
    assert message["usage"]["input_tokens"] == 4
    assert (stats.prompt_tokens, stats.completion_tokens) == (4, 5)


async def test_native_stream_forwards_the_events_unchanged(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    stats = CallStats()
    request = native(stream=True)

    received = b"".join(
        [block async for block in adapter.native_stream("messages", request, stats)]
    )

    sent = fake.last().body
    assert sent == {**request.body, "model": "claude-fake-1"}
    expected = b"".join(sse(e) for e in stream_events(sent, "fake1", answer(sent, "fake1")))
    assert received == expected
    assert (stats.prompt_tokens, stats.completion_tokens) == (2, 5)


async def test_native_count_tokens_posts_the_clients_body_to_count_tokens(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    body = {"model": "claude", "messages": [{"role": "user", "content": "Hi there"}],
            "tools": [server_tool]}  # fmt: skip
    request = decode_request(json.dumps(body).encode(), NativeRequest)

    answer = await adapter.native_count_tokens("messages", request, CallStats())

    assert fake.last("/v1/messages/count_tokens").body == {**body, "model": "claude-fake-1"}
    assert json.loads(answer.content) == {"input_tokens": 3}  # two words, one tool


async def test_native_errors_keep_anthropics_type(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await adapter.native("messages", native(max_tokens=0), CallStats())

    assert (caught.value.http_status, caught.value.error_type) == (400, "invalid_request_error")
    assert caught.value.message == "max_tokens: Field required"


async def test_native_stream_raises_an_error_event(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    fake.faults["claude-fake-1"] = Fault("error_event", error_type="api_error", after=2)
    blocks = []

    with pytest.raises(UpstreamError):
        async for block in adapter.native_stream("messages", native(stream=True), CallStats()):
            blocks.append(block)

    forwarded = b"".join(blocks)
    assert forwarded.startswith(b"event: message_start\n")
    assert b"event: error" not in forwarded


async def test_no_cookie_is_kept_on_either_transport(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    # The fake sets a cookie on every answer; upstreams are addressed by name, not IP
    # (aiohttp's jar would refuse cookies from a bare IP and hide a real jar).
    await adapter.chat(chat(), CallStats())
    async for _ in adapter.chat_stream(chat(stream=True), CallStats()):
        pass
    await adapter.native("messages", native(), CallStats())

    assert [r.headers.get("cookie") for r in fake.received()] == [None, None, None]


@dataclass
class _Request:
    """The served request, as ``proxy.telemetry.current`` sees it."""

    headers: list[tuple[bytes, bytes]]
    request_id: str = "req-test"
    tracing: Any = None
    key_id: str | None = None
    team_id: str = "default"


async def test_native_passes_the_clients_version_and_betas(
    adapter: AnthropicAdapter, fake: FakeAnthropic
) -> None:
    asked = [
        (b"anthropic-version", b"2026-10-21"),
        (b"anthropic-beta", b"interleaved-thinking-2025-05-14"),
    ]
    token = bind(_Request(asked))
    try:
        await adapter.native("messages", native(), CallStats())
        async for _ in adapter.native_stream("messages", native(stream=True), CallStats()):
            pass
        await adapter.chat(chat(), CallStats())
    finally:
        unbind(token)
    token = bind(_Request([]))
    try:
        await adapter.native("messages", native(), CallStats())
    finally:
        unbind(token)

    sent = [
        (r.headers["anthropic-version"], r.headers.get("anthropic-beta")) for r in fake.received()
    ]
    assert sent == [
        ("2026-10-21", "fake-beta-1,interleaved-thinking-2025-05-14"),
        ("2026-10-21", "fake-beta-1,interleaved-thinking-2025-05-14"),
        ("2023-06-01", "fake-beta-1"),  # a translated request: the adapter's own
        ("2023-06-01", "fake-beta-1"),  # a client that sent neither
    ]
    assert fake.received()[0].headers["x-request-id"] == "req-test"


async def test_count_tokens_asks_anthropic(adapter: AnthropicAdapter, fake: FakeAnthropic) -> None:
    counted = await adapter.count_tokens(
        decode_request(b'{"model": "claude", "prompt": "three words here"}', TokenizeRequest),
        CallStats(),
    )
    body = {
        "model": "claude",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "tools": [WEATHER],
        "add_generation_prompt": True,
    }
    chat_counted = await adapter.count_tokens(
        decode_request(json.dumps(body).encode(), TokenizeRequest), CallStats()
    )

    assert (counted.count, chat_counted.count) == (3, 4)
    first, second = fake.received("/v1/messages/count_tokens")
    assert first.body == {
        "model": "claude-fake-1",
        "messages": [{"role": "user", "content": "three words here"}],
    }
    assert second.body["system"] == "Be brief."
    assert [t["name"] for t in second.body["tools"]] == ["get_weather"]
    assert "max_tokens" not in second.body


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_an_unreachable_upstream_is_upstream_unavailable(transport: str) -> None:
    entry = {
        "name": "claude",
        "adapter": "anthropic",
        "base_url": f"http://127.0.0.1:{free_port()}",
        "api_key": API_KEY,
    }
    settings = settings_from_mapping({"http": {"transport": transport}, "models": [entry]})
    async with build_http_client(settings.http) as http:
        upstream = build_json_transport(settings.http, http)
        adapter = AnthropicAdapter(
            settings.models[0], Resources(settings=settings, http=http, upstream=upstream)
        )
        try:
            with pytest.raises(UpstreamUnavailable):
                await adapter.chat(chat(), CallStats())
            with pytest.raises(UpstreamUnavailable):
                async for _ in adapter.chat_stream(chat(stream=True), CallStats()):
                    pass
            with pytest.raises(UpstreamUnavailable):
                await adapter.probe()
        finally:
            await upstream.aclose()
