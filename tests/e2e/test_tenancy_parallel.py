"""A key's ``max_parallel`` through the running gateway: a slot taken when a request is
admitted is given back however the request ends, on both state engines.

Each test holds a key with ``max_parallel: 1``. A request that fails after it was
admitted (the upstream answers 500, refuses the connection, the model has no deployment,
the client walks away mid-stream) must leave the slot free: the key's next request is
answered. A slot that leaked would refuse every later request of the key for good.

The slot is given back once the response has been sent, so the client can be a moment
ahead of it: ``answered_within`` retries a refused request for a few seconds, which a
leaked slot never passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fake_openai import FakeOpenAI, Fault, status_fault, wait_until
from tests.support.servers import RunningServer, free_port, serve_gateway
from tests.support.tenancy import Admin, ask, chat_model, sdk, tenancy_config

SLOT_BACK_S = 5.0
"""How long a freed slot may take to be seen free (it is given back after the last byte)."""


@pytest.fixture
def gateway(engine: dict[str, Any], fake_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    models = [
        chat_model("gpt-test", "upstream-gpt", fake_url),
        chat_model("broken", "upstream-broken", fake_url),
        chat_model("dead", "upstream-dead", closed),
        chat_model("dripper", "upstream-dripper", fake_url),
        chat_model("held", "upstream-held", fake_url),
    ]
    with serve_gateway(tenancy_config(tmp_path, models, state=engine)) as running:
        yield running


@pytest.fixture
def secret(gateway: RunningServer) -> str:
    """A key that may run one request at a time (and has an RPM limit, so that the rate
    limiter's reservation is part of what a finished request settles)."""
    with Admin(gateway) as admin:
        team = admin.team("parallel-team")
        return str(admin.key(team["id"], "one-at-a-time", max_parallel=1, rpm_limit=50)["key"])


def answered_within(client: openai.OpenAI, limit_s: float = SLOT_BACK_S) -> Any:
    """The key's next plain request, retried while it is refused for its slot."""
    began = time.monotonic()
    while True:
        try:
            return ask(client, "next one")
        except openai.RateLimitError as refused:
            if time.monotonic() - began > limit_s:
                raise AssertionError(f"the slot was still taken after {limit_s} s") from refused
        time.sleep(0.02)


def assert_answered(client: openai.OpenAI) -> None:
    answer = answered_within(client)
    assert answer.choices[0].message.content == "Hello! You said: next one"


def test_a_second_request_is_refused_while_the_first_runs_then_let_through(
    gateway: RunningServer, secret: str, fake: FakeOpenAI
) -> None:
    """The premise of the others: the slot is really held while a request runs."""
    hold = Fault("hold", after=2)
    fake.faults["upstream-held"] = hold
    with sdk(gateway, secret) as client:
        stream = client.chat.completions.create(
            model="held", messages=[{"role": "user", "content": "wait for it"}], stream=True
        )
        chunks = iter(stream)
        next(chunks)
        try:
            with pytest.raises(openai.RateLimitError) as refused:
                ask(client)
        finally:
            hold.release.set()
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.endswith("wait for it")
        assert_answered(client)
    assert refused.value.status_code == 429
    assert "in flight" in refused.value.message
    assert len(fake.received("/v1/chat/completions")) == 2  # the refused one never went up


def test_an_upstream_500_gives_the_slot_back(
    gateway: RunningServer, secret: str, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-broken"] = status_fault(500, "internal meltdown")
    with sdk(gateway, secret) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            ask(client, model="broken")
        assert failed.value.status_code == 502
        assert_answered(client)
    assert len(fake.received(model="upstream-broken")) == 1


def test_a_refused_upstream_connection_gives_the_slot_back(
    gateway: RunningServer, secret: str
) -> None:
    with sdk(gateway, secret) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            ask(client, model="dead")
        assert failed.value.status_code == 502
        assert_answered(client)


def test_a_model_without_deployments_gives_the_slot_back(
    gateway: RunningServer, secret: str
) -> None:
    """Admitted first (the key may use any model), then found to have no deployment."""
    with sdk(gateway, secret) as client:
        with pytest.raises(openai.NotFoundError):
            ask(client, model="no-such-model")
        assert_answered(client)


def test_a_client_leaving_mid_stream_gives_the_slot_back(
    gateway: RunningServer, secret: str, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-dripper"] = Fault("drip", seconds=0.02)
    with sdk(gateway, secret) as client:
        stream = client.chat.completions.create(
            model="dripper", messages=[{"role": "user", "content": "go on"}], stream=True
        )
        chunks = iter(stream)
        for _ in range(3):
            next(chunks)
        stream.close()
        seen = fake.last("/v1/chat/completions")
        assert wait_until(lambda: seen.disconnected_at is not None)
        assert not seen.completed
        assert_answered(client)
