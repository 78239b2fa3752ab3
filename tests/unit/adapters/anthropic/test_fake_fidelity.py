"""The fake Anthropic API read by Anthropic's own SDK: if the SDK parses its answers,
streams and errors as it parses the real API's, the adapter's tests against the fake
test the real protocol."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
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

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeAnthropic, str]]:
    with running_fake_anthropic() as running:
        yield running


@pytest.fixture
def sdk(served: tuple[FakeAnthropic, str]) -> Iterator[anthropic.Anthropic]:
    served[0].clear()
    with anthropic.Anthropic(base_url=served[1], api_key=API_KEY, max_retries=0) as client:
        yield client


def test_a_message(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(
        model="claude-fake-1",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi there"}],
    )

    assert message.id == "msg_fake1"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Hello! You said: Hi there")
    ]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 5)


def test_a_stream_accumulates_into_the_same_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-fake-1", max_tokens=50, messages=[{"role": "user", "content": "Hi there"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()

    assert texts == ["Hello!", " You", " said:", " Hi", " there"]
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hello! You said: Hi there"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)


def test_a_streamed_tool_use_accumulates_its_input(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-fake-1",
        max_tokens=50,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": f"Please {TOOL_TRIGGER}"}],
    ) as stream:
        final = stream.get_final_message()

    block = final.content[0]
    assert block.type == "tool_use"
    assert (block.id, block.name, block.input) == (
        "toolu_fake1_0",
        "get_weather",
        {"city": "value of city"},
    )
    assert final.stop_reason == "tool_use"


def test_errors_are_the_sdks_typed_errors(
    sdk: anthropic.Anthropic, served: tuple[FakeAnthropic, str]
) -> None:
    fake = served[0]
    ask: Any = {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    fake.faults["limited"] = rate_limited("3")
    fake.faults["busy"] = status_fault(529, "Overloaded")

    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk.messages.create(model="limited", **ask)
    with pytest.raises(anthropic.OverloadedError):
        sdk.messages.create(model="busy", **ask)
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(
            model="claude-fake-1",
            max_tokens=5,
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        )

    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "Number of request tokens has exceeded your per-minute rate limit",
        },
        "request_id": "req_fake",
    }
    assert "roles must alternate" in bad.value.message


def test_an_error_event_mid_stream_is_raised_by_the_sdk(
    sdk: anthropic.Anthropic, served: tuple[FakeAnthropic, str]
) -> None:
    served[0].faults["claude-fake-1"] = Fault("error_event", message="Overloaded", after=4)

    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(
            model="claude-fake-1", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        ) as stream,
    ):
        list(stream.text_stream)

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_a_wrong_key_is_a_401(served: tuple[FakeAnthropic, str]) -> None:
    with (
        anthropic.Anthropic(base_url=served[1], api_key="sk-ant-wrong", max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError),
    ):
        sdk.messages.create(
            model="claude-fake-1", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
