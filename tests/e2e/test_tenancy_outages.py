"""When Redis or PostgreSQL goes away under a running gateway: a clear 503 with
``Retry-After`` (never a 500 or a hang), and readiness says so. Each test has its own
throwaway server, stopped mid-test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_openai import running_fake
from tests.support.servers import serve_gateway
from tests.support.services import start_redis
from tests.support.tenancy import MASTER_KEY, Admin, chat_model, sdk, tenancy_config

ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture
def fake_url() -> Iterator[str]:
    with running_fake() as (_, url):
        yield url


def _ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health/ready", headers={"Authorization": f"Bearer {MASTER_KEY}"})


def _not_ready(url: str) -> httpx.Response:
    """Readiness once it has looked again (it checks its dependencies once a second)."""
    deadline = time.monotonic() + 5
    while (answer := _ready(url)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return answer


def test_redis_going_away_is_a_503_and_not_ready(tmp_path: Path, fake_url: str) -> None:
    redis = start_redis()
    try:
        config = tenancy_config(
            tmp_path, [chat_model("gpt-x", "upstream-x", fake_url)], state={"redis_url": redis.url}
        )
        with serve_gateway(config) as gateway, Admin(gateway) as admin:
            team = admin.team("ops", rpm_limit=1000)
            secret = admin.key(team["id"])["key"]
            client = sdk(gateway, secret)
            assert client.chat.completions.create(model="gpt-x", messages=ASK).choices
            assert _ready(gateway.url).status_code == 200
            redis.stop()

            started = time.monotonic()
            with pytest.raises(openai.InternalServerError) as failed:
                client.chat.completions.create(model="gpt-x", messages=ASK)
            assert time.monotonic() - started < 10  # bounded by the socket timeouts
            response: Any = failed.value.response
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "state_unavailable"
            assert response.headers["retry-after"] == "1"
            not_ready = _not_ready(gateway.url)
            assert not_ready.status_code == 503
            assert "redis unreachable" in not_ready.json()["reasons"]
    finally:
        redis.stop()


def test_postgresql_going_away_is_a_503_for_a_key_not_yet_cached(
    tmp_path: Path, fake_url: str
) -> None:
    from tests.support.services import start_postgres

    postgres = start_postgres()
    try:
        database = postgres.url.rstrip("/") + "/postgres"
        config = tenancy_config(
            tmp_path, [chat_model("gpt-x", "upstream-x", fake_url)], state={"database": database}
        )
        with serve_gateway(config) as gateway, Admin(gateway) as admin:
            team = admin.team("ops")
            secret = admin.key(team["id"])["key"]
            postgres.stop()
            started = time.monotonic()
            with pytest.raises(openai.InternalServerError) as failed:
                sdk(gateway, secret).chat.completions.create(model="gpt-x", messages=ASK)
            assert time.monotonic() - started < 20
            response: Any = failed.value.response
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "state_unavailable"
            listed = httpx.get(
                f"{gateway.url}/v1/switchyard/admin/teams",
                headers={"Authorization": f"Bearer {MASTER_KEY}"},
                timeout=30,
            )
            assert listed.status_code == 503
            not_ready = _not_ready(gateway.url)
            assert not_ready.status_code == 503
            assert "state database unreachable" in not_ready.json()["reasons"]
    finally:
        postgres.stop()
