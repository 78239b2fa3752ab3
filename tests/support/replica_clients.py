"""What the replica steps (tests/e2e/test_replicas.py) do as clients of a cluster
(tests/support/replicas.py): session turns, stored histories, the model calls the fake
upstream recorded for a turn, and a client that retries a turn until it is acknowledged."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from tests.support.fake_openai import Recorded
from tests.support.replicas import CHAT_MODEL, SLOW_CHAT_MODEL, Cluster
from tests.support.servers import Addressable
from tests.support.tenancy import ok, sdk


def reply_to(text: str) -> str:
    """What the fake upstream answers to a last user message ``text``."""
    return f"Hello! You said: {text}"


def calls_for(cluster: Cluster, text: str) -> list[Recorded]:
    """Every chat request that reached the model with ``text`` as its last message."""
    found = []
    for record in cluster.upstream.received("/v1/chat/completions"):
        messages = (record.body or {}).get("messages") or []
        if messages and messages[-1].get("content") == text:
            found.append(record)
    return found


def sent_for(cluster: Cluster, text: str) -> list[list[dict[str, Any]]]:
    """The messages of every chat request that reached the model with ``text`` last."""
    return [record.body["messages"] for record in calls_for(cluster, text)]


def session_turn(
    client: openai.OpenAI, session: str, text: str, *, stream: bool, model: str = CHAT_MODEL
) -> tuple[str, httpx.Headers]:
    """One session turn; the reply text and the response headers."""
    headers = {"X-Switchyard-Session": session}
    messages: Any = [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=stream, extra_headers=headers
    )
    if not stream:
        return raw.parse().choices[0].message.content or "", raw.headers
    parts = [c.choices[0].delta.content or "" for c in raw.parse() if c.choices]
    return "".join(parts), raw.headers


def stored_history(target: Addressable, key: str, session: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{target.url}/v1/switchyard/sessions/{session}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
    )
    return ok(response)["messages"]  # type: ignore[no-any-return]


def turn_pairs(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A stored history as (user text, answer text) turns; each user message must be
    followed by its answer."""
    assert len(messages) % 2 == 0, messages
    turns = []
    for user, answer in zip(messages[::2], messages[1::2], strict=True):
        assert (user["role"], answer["role"]) == ("user", "assistant"), (user, answer)
        turns.append((user["content"], answer["content"]))
    return turns


@dataclass
class Ack:
    text: str
    began: float
    """When its successful attempt began (``time.time()``)."""
    served_by: str


@dataclass
class LoadClient:
    """One client taking turns on its own session through nginx, retrying a turn until
    it is acknowledged (a 200 read whole): what a client of a fleet does."""

    cluster: Cluster
    session: str
    stream: bool
    acknowledged: list[Ack] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """The turn of each failed (and retried) attempt."""
    wrong: list[str] = field(default_factory=list)
    """Answers that were not the reply to the turn, or 4xx: never acceptable."""

    def run(self, key: str, stop: threading.Event) -> None:
        with sdk(self.cluster.lb, key) as client:
            n = 0
            while not stop.is_set():
                n += 1
                self._until_acknowledged(client, f"{self.session} turn {n}")

    def _until_acknowledged(self, client: openai.OpenAI, text: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            began = time.time()
            try:
                reply, headers = session_turn(
                    client, self.session, text, stream=self.stream, model=SLOW_CHAT_MODEL
                )
            except openai.APIStatusError as exc:
                if exc.status_code < 500:
                    self.wrong.append(f"{text}: {exc.status_code} {exc.message}")
                    return
                self.failed.append(text)
            except (openai.APIConnectionError, httpx.HTTPError):
                self.failed.append(text)
            else:
                if reply != reply_to(text):
                    self.wrong.append(f"{text}: answered {reply!r}")
                    return
                self.acknowledged.append(Ack(text, began, self.cluster.served_by(headers)))
                return
            time.sleep(0.05)
        self.wrong.append(f"{text}: not acknowledged in 30 s")


def wait_for(predicate: Any, what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``predicate`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)
    return value
