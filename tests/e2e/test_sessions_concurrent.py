"""Twenty clients taking turns on one session at once, through the running server.

Every turn must succeed (streamed or not) and be stored whole: forty messages, each
user message directly followed by the answer to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-concurrent-sessions"
TURNS = 20
SESSION = "busy"


@pytest.fixture(scope="module")
def session_gateway(
    fake_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data_dir: Path = tmp_path_factory.mktemp("sessions-concurrent")
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY], "data_dir": str(data_dir)},
        "models": [model_entry("gpt-test", "upstream-gpt", fake_url)],
    }
    with serve_gateway(config) as running:
        yield running


async def _turn(client: openai.AsyncOpenAI, number: int) -> str:
    text = f"turn {number}"
    headers = {"X-Switchyard-Session": SESSION}
    messages: Any = [{"role": "user", "content": text}]
    if number % 2:
        stream = await client.chat.completions.create(
            model="gpt-test", messages=messages, stream=True, extra_headers=headers
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        return "".join(parts)
    reply = await client.chat.completions.create(
        model="gpt-test", messages=messages, extra_headers=headers
    )
    return reply.choices[0].message.content or ""


async def _all_turns(server: RunningServer) -> list[str | BaseException]:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=30
    ) as client:
        return await asyncio.gather(
            *(_turn(client, n) for n in range(TURNS)), return_exceptions=True
        )


def test_twenty_concurrent_turns_on_one_session_are_all_stored_in_order(
    session_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    replies = asyncio.run(_all_turns(session_gateway))
    assert [r for r in replies if not isinstance(r, str)] == []
    assert replies == [f"Hello! You said: turn {n}" for n in range(TURNS)]

    stored = httpx.get(
        f"{session_gateway.url}/v1/switchyard/sessions/{SESSION}",
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    messages = stored["messages"]
    assert stored["message_count"] == 2 * TURNS
    numbers = []
    for user, answer in zip(messages[::2], messages[1::2], strict=True):
        assert user["role"] == "user"
        number = int(user["content"].removeprefix("turn "))
        assert answer == {"role": "assistant", "content": f"Hello! You said: turn {number}"}
        numbers.append(number)
    assert sorted(numbers) == list(range(TURNS))
