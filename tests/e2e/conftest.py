"""End-to-end fixtures: a real fake upstream and a real gateway, both on free ports.

One fake upstream serves the whole session; each test gets it with its recorded
requests and faults cleared. One shared gateway (``gateway``) serves the functional
tests; tests that change router state (cooldowns, faults) start their own with
``start_gateway`` so nothing leaks between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI, running_fake
from tests.support.servers import RunningServer, serve_gateway

CLIENT_KEY = "sk-client-key-for-tests"
UPSTREAM_KEY = "sk-upstream-secret"
#: Configured (client-facing) name -> upstream model id, on the shared gateway.
UPSTREAM_IDS = {
    "gpt-test": "upstream-gpt",
    "embed-test": "upstream-embed",
    "picky": "upstream-picky",
}


def model_entry(name: str, upstream: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "adapter": "openai",
        "model": upstream,
        "base_url": base_url,
        "api_key": UPSTREAM_KEY,
        "timeout_s": 5,
        **extra,
    }


@pytest.fixture(scope="session")
def fake_server() -> Iterator[tuple[FakeOpenAI, str]]:
    with running_fake() as running:
        yield running


@pytest.fixture(scope="session")
def fake_url(fake_server: tuple[FakeOpenAI, str]) -> str:
    """The fake upstream's OpenAI root (``http://127.0.0.1:PORT/v1``)."""
    return fake_server[1]


@pytest.fixture
def fake(fake_server: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    """The fake upstream, with no recorded requests and no faults."""
    server = fake_server[0]
    server.clear()
    server.faults.clear()
    yield server
    server.faults.clear()


@pytest.fixture(scope="session")
def gateway(fake_url: str) -> Iterator[RunningServer]:
    config = {
        "server": {"api_keys": [CLIENT_KEY], "max_body_mb": 1},
        "models": [model_entry(n, u, fake_url) for n, u in UPSTREAM_IDS.items()],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., RunningServer]]:
    """Start a dedicated gateway: ``start_gateway(models, **server_options)``."""
    with ExitStack() as stack:

        def start(models: list[dict[str, Any]], **server: Any) -> RunningServer:
            config = {"server": server, "models": models}
            return stack.enter_context(serve_gateway(config))

        yield start


def sdk(server: RunningServer, key: str = CLIENT_KEY, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=15, **options
    )


def async_sdk(server: RunningServer, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=15)


@pytest.fixture
def client(gateway: RunningServer, fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with sdk(gateway) as c:
        yield c


@pytest.fixture
def raw(gateway: RunningServer, fake: FakeOpenAI) -> Iterator[httpx.Client]:
    """Plain HTTP to the shared gateway, for what the SDK cannot send."""
    with httpx.Client(base_url=gateway.url, timeout=15) as c:
        yield c


AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture(params=["sqlite", "postgres+redis"])
def engine(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``state:`` section of one engine, for the tenancy tests that run on both: the
    embedded SQLite, or a fresh PostgreSQL database with a fresh Redis database."""
    if request.param == "sqlite":
        return {}
    return {
        "database": request.getfixturevalue("fresh_postgres_url"),
        "redis_url": request.getfixturevalue("fresh_redis_url"),
    }
