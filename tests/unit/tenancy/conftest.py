"""Fixtures for the limiter and spend tests: a movable clock and both backends.

Redis is the session's throwaway server (``redis_url`` in tests/conftest.py); every
Redis test gets its own key prefix, deleted after.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from proxy.tenancy.limits import InProcessLimiter, Limiter, RedisLimiter


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def move(self, seconds: float) -> None:
        self.now += seconds


#: 2026-01-01 00:00:00 UTC, an epoch minute's start.
T0 = 1767225600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@asynccontextmanager
async def redis_prefix(url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client and a key prefix of its own; the prefix's keys are deleted after."""
    client = Redis.from_url(url)
    prefix = f"switchyard-test:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    async with redis_prefix(redis_url) as pair:
        yield pair


@dataclass
class Backend:
    limiter: Limiter
    redis: Redis | None = None
    prefix: str = ""


@pytest.fixture(params=["memory", "redis"])
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, redis_url: str
) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend(InProcessLimiter(clock=clock))
        return
    async with redis_prefix(redis_url) as (client, prefix):
        limiter = RedisLimiter(client, prefix=prefix, clock=clock)
        yield Backend(limiter, client, prefix)
        await limiter.aclose()


@pytest.fixture
def limiter(backend: Backend) -> Limiter:
    return backend.limiter
