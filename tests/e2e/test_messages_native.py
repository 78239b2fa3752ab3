"""``native: [messages]``: a Claude deployment gets the Messages request as the client sent
it, through the real gateway, driven by the official ``anthropic`` package.

The upstream is the fake Anthropic API (tests/support/fake_anthropic.py). Each test
compares the gateway's answer with the fake's own answer to the same body, asked
directly, so a translation on the way (there should be none) shows as a difference;
and it checks what reached the fake: the client's body, only the model id changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.fake_anthropic import API_KEY, FakeAnthropic, running_fake_anthropic
from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-messages-native"
MASTER = "sk-messages-native-master"
ASK: Any = [{"role": "user", "content": "Say something about harbours."}]
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


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
    data: Path = tmp_path_factory.mktemp("messages-native") / "data"
    entry = {
        "adapter": "anthropic",
        "base_url": served[1],
        "api_key": API_KEY,
        "timeout_s": 10,
        "price": {"input_per_1m": 3.0, "output_per_1m": 15.0},
    }
    config: dict[str, Any] = {
        "server": {"master_key": MASTER, "api_keys": [KEY], "data_dir": str(data)},
        "models": [
            {"name": "claude-native", "model": "claude-up", "native": ["messages"], **entry},
            {"name": "claude-translated", "model": "claude-up", **entry},
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0, timeout=15) as sdk:
        yield sdk


def direct(served: tuple[FakeAnthropic, str]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served[1], api_key=API_KEY, max_retries=0, timeout=15)


def test_the_body_passes_unchanged_and_the_answer_is_the_upstreams(
    client: anthropic.Anthropic, fake: FakeAnthropic, served: tuple[FakeAnthropic, str]
) -> None:
    message = client.messages.create(
        model="claude-native", max_tokens=64, messages=ASK, extra_body={"thinking": THINKING}
    )
    sent = fake.last().body
    assert sent == {"model": "claude-up", "max_tokens": 64, "messages": ASK, "thinking": THINKING}

    fake.clear()  # the same message id again
    with direct(served) as upstream:
        own = upstream.messages.create(
            model="claude-up", max_tokens=64, messages=ASK, extra_body={"thinking": THINKING}
        )
    assert message.model_dump() == own.model_dump()
    assert message.usage.output_tokens > 0


def test_a_stream_is_the_upstreams_own_events(
    client: anthropic.Anthropic, fake: FakeAnthropic, served: tuple[FakeAnthropic, str]
) -> None:
    with client.messages.stream(model="claude-native", max_tokens=64, messages=ASK) as stream:
        events = [(e.type, getattr(e, "index", None)) for e in stream]
        final = stream.get_final_message()
    assert fake.last().body == {
        "model": "claude-up",
        "max_tokens": 64,
        "messages": ASK,
        "stream": True,
    }
    fake.clear()
    with (
        direct(served) as upstream,
        upstream.messages.stream(model="claude-up", max_tokens=64, messages=ASK) as own,
    ):
        own_events = [(e.type, getattr(e, "index", None)) for e in own]
        own_final = own.get_final_message()
    assert events == own_events
    assert events[0] == ("message_start", None) and events[-1] == ("message_stop", None)
    assert final.model_dump() == own_final.model_dump()


@pytest.mark.parametrize(
    "activation",
    [
        {"extra_headers": {"X-Switchyard-Persona": "editor"}},
        {"extra_body": {"switchyard": {"persona": "editor"}}},
        {"model": "claude-native+persona:editor"},
    ],
)
def test_a_persona_turns_translation_on_for_that_request(
    client: anthropic.Anthropic, fake: FakeAnthropic, activation: dict[str, Any]
) -> None:
    client.messages.create(**{"model": "claude-native", **activation}, max_tokens=64, messages=ASK)
    sent = fake.last().body
    # Translated: chat request -> the anthropic adapter, which puts the persona's prompt
    # in ``system``; the client's body had none.
    assert sent["model"] == "claude-up"
    assert "careful line editor" in str(sent["system"])
    assert sent["messages"] == ASK
    assert "switchyard" not in sent


def test_an_upstream_error_is_an_anthropic_error_for_the_client(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model="claude-native", max_tokens=64, messages=[])
    body: Any = raised.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert fake.last().body["messages"] == []  # the upstream judged it, not the gateway


def test_usage_and_cost_are_recorded_for_a_passed_through_request(
    client: anthropic.Anthropic, fake: FakeAnthropic, gateway: RunningServer
) -> None:
    message = client.messages.with_raw_response.create(
        model="claude-native", max_tokens=64, messages=ASK
    )
    request_id = message.headers["x-request-id"]
    parsed = message.parse()
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not rows and time.monotonic() < deadline:  # usage rows are written in batches
        page = httpx.get(
            f"{gateway.url}/v1/switchyard/admin/usage/requests",
            headers={"Authorization": f"Bearer {MASTER}"},
        ).json()["data"]
        rows = [r for r in page if r["request_id"] == request_id]
        time.sleep(0.05)
    assert len(rows) == 1, "no usage row for the passed-through request"
    row = rows[0]
    assert (row["model"], row["route"], row["status"]) == ("claude-native", "messages", 200)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        parsed.usage.input_tokens,
        parsed.usage.output_tokens,
    )
    expected = (parsed.usage.input_tokens * 3.0 + parsed.usage.output_tokens * 15.0) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)


WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}


def test_count_tokens_passes_through_with_a_server_tool(
    client: anthropic.Anthropic, fake: FakeAnthropic, served: tuple[FakeAnthropic, str]
) -> None:
    # What Claude Code sends: a server tool the translated path refuses.
    raw = client.messages.with_raw_response.count_tokens(
        model="claude-native",
        messages=ASK,
        tools=[WEB_SEARCH],
        extra_headers={"anthropic-beta": "web-search-2025-03-05"},
    )
    sent = fake.last("/v1/messages/count_tokens")
    assert sent.body == {"model": "claude-up", "messages": ASK, "tools": [WEB_SEARCH]}
    assert sent.headers["anthropic-beta"] == "web-search-2025-03-05"
    assert raw.headers["x-switchyard-token-count"] == "exact"
    fake.clear()
    with direct(served) as upstream:
        own = upstream.messages.count_tokens(model="claude-up", messages=ASK, tools=[WEB_SEARCH])
    # four words and one tool, as the upstream counts them
    assert raw.parse().model_dump() == own.model_dump() == {"input_tokens": 5}

    fake.clear()
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.count_tokens(model="claude-translated", messages=ASK, tools=[WEB_SEARCH])
    assert raised.value.status_code == 400
    assert fake.received("/v1/messages/count_tokens") == []


def test_a_native_count_tokens_error_is_the_upstreams(
    client: anthropic.Anthropic, fake: FakeAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.count_tokens(model="claude-native", messages=[])
    body: Any = raised.value.body
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "messages: at least one message is required",
    }
    assert fake.last("/v1/messages/count_tokens").body == {"model": "claude-up", "messages": []}
