"""Two gateways on one Redis share their deployment cooldowns: a 429 with Retry-After
that reaches the client through A makes B skip that deployment. The fake upstream
records each request's ``x-request-id``, so it shows which gateway sent what."""

from __future__ import annotations

import time

import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, rate_limited, wait_until
from tests.support.servers import serve_gateway

USER = [{"role": "user", "content": "hi"}]


def test_a_429_through_a_makes_b_skip_the_deployment(
    fake: FakeOpenAI, fake_url: str, fresh_redis_url: str
) -> None:
    fake.faults["upstream-limited"] = rate_limited(retry_after="30")
    config = {
        "server": {"api_keys": [CLIENT_KEY]},
        "state": {"redis_url": fresh_redis_url},
        "models": [model_entry("m", "upstream-limited", fake_url)],
    }
    with serve_gateway(config) as a, serve_gateway(config) as b:
        with sdk(a) as client, pytest.raises(openai.RateLimitError) as through_a:
            client.chat.completions.create(model="m", messages=USER)
        [sent] = fake.received("/v1/chat/completions")
        assert sent.headers["x-request-id"] == through_a.value.response.headers["x-request-id"]

        [on_b] = b.app.app.state.switchyard.router.deployments["m"]
        assert wait_until(lambda: on_b.cooling(time.monotonic()))
        with sdk(b) as client, pytest.raises(openai.RateLimitError) as through_b:
            client.chat.completions.create(model="m", messages=USER)
    assert "Every deployment of 'm' is rate limited upstream." in through_b.value.message
    assert 15 < float(through_b.value.response.headers["retry-after"]) <= 30
    assert len(fake.received("/v1/chat/completions")) == 1  # B never sent it upstream
