"""ScriptBatcher against a real Redis: calls of one loop turn share a round trip, and
each caller gets its own result or its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from proxy.tenancy.redis_batch import ScriptBatcher

ECHO_OR_FAIL = """
if ARGV[1] == 'fail' then
  return redis.error_reply('asked to fail')
end
return redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
"""


class CountingRedis:
    """The real client, counting the pipelines it sends."""

    def __init__(self, inner: Redis) -> None:
        self.inner = inner
        self.pipelines = 0

    def pipeline(self, **kw: Any) -> Any:
        self.pipelines += 1
        return self.inner.pipeline(**kw)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_concurrent_calls_share_one_pipeline_and_get_their_own_results(
    redis: Redis, redis_key_prefix: str
) -> None:
    counting = CountingRedis(redis)
    batcher = ScriptBatcher(counting)
    script = redis.register_script(ECHO_OR_FAIL)
    key = redis_key_prefix + "n"

    results = await asyncio.gather(*(batcher.call(script, [key], [i]) for i in range(1, 51)))

    assert counting.pipelines == 1
    assert results == [sum(range(1, i + 1)) for i in range(1, 51)]  # in call order
    await redis.delete(key)


async def test_one_failing_call_fails_alone(redis: Redis, redis_key_prefix: str) -> None:
    batcher = ScriptBatcher(redis)
    script = redis.register_script(ECHO_OR_FAIL)
    key = redis_key_prefix + "m"

    ok, failed, after = await asyncio.gather(
        batcher.call(script, [key], [2]),
        batcher.call(script, [key], ["fail"]),
        batcher.call(script, [key], [3]),
        return_exceptions=True,
    )

    assert (ok, after) == (2, 5)
    assert isinstance(failed, ResponseError) and "asked to fail" in str(failed)
    await redis.delete(key)


async def test_calls_after_a_flush_start_the_next_one(redis: Redis, redis_key_prefix: str) -> None:
    counting = CountingRedis(redis)
    batcher = ScriptBatcher(counting)
    script = redis.register_script(ECHO_OR_FAIL)
    key = redis_key_prefix + "k"
    assert await batcher.call(script, [key], [1]) == 1
    assert await batcher.call(script, [key], [1]) == 2
    await batcher.drain()
    assert counting.pipelines == 2
    await redis.delete(key)


async def test_an_unreachable_redis_fails_every_queued_call() -> None:
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    batcher = ScriptBatcher(client)
    script = client.register_script(ECHO_OR_FAIL)
    outcomes = await asyncio.gather(
        *(batcher.call(script, ["k"], [1]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, Exception) for o in outcomes)
    await client.aclose()
