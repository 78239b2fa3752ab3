"""Cooldowns shared through a real Redis: routers over real OpenAI adapters (upstreams
faked at the transport layer, as in ``test_router``), each with its own upstream fake,
so that what reaches B's upstream shows whether B skipped a deployment A cooled.

Each test uses its own key prefix and channel: channels are server-wide in Redis, not
per database. Waiting for a broadcast to arrive polls with a deadline; nothing asserts
a duration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis

from proxy.cooldowns import SharedCooldowns
from proxy.errors import RateLimited
from proxy.router import Router
from tests.support.servers import free_port
from tests.unit.proxy.test_router import Upstream, build_router, chat, ok, status

LABEL = "openai:a/m-on-a"


async def until(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def replicas(
    fresh_redis_url: str, redis_key_prefix: str
) -> AsyncIterator[Callable[[Upstream], object]]:
    """``await make(upstream)``: a router on model ``m`` (hosts a, b) sharing cooldowns."""
    async with AsyncExitStack() as stack:

        async def make(upstream: Upstream) -> Router:
            router, _ = build_router(upstream, {"m": ["a", "b"]})
            publisher = aioredis.Redis.from_url(fresh_redis_url)
            subscriber = aioredis.Redis.from_url(fresh_redis_url)
            stack.push_async_callback(publisher.aclose)
            stack.push_async_callback(subscriber.aclose)
            shared = SharedCooldowns(
                [d for found in router.deployments.values() for d in found],
                redis=publisher,
                subscriber=subscriber,
                prefix=f"{redis_key_prefix}cooldown:",
                channel=f"{redis_key_prefix}cooldowns",
            )
            await shared.start()
            stack.push_async_callback(shared.aclose)
            router.shared = shared
            return router

        yield make


def deployment(router: Router, host: str) -> object:
    [found] = [d for d in router.deployments["m"] if d.label == f"openai:{host}/m-on-{host}"]
    return found


async def test_a_retry_after_seen_through_a_makes_b_skip_the_deployment(replicas) -> None:
    seen_by_a = Upstream(a=status(429, {"retry-after": "30"}), b=ok)
    seen_by_b = Upstream(a=ok, b=ok)
    a, b = await replicas(seen_by_a), await replicas(seen_by_b)
    while seen_by_a.count("a") == 0:  # rotation: until A has tried host a once
        assert await chat(a) == "b"
    cooled = deployment(b, "a")
    await until(lambda: cooled.cooling(time.monotonic()))
    assert cooled.binding is True
    assert 15 < cooled.cooldown_until - time.monotonic() <= 30  # Retry-After's 30 s
    assert {await chat(b) for _ in range(6)} == {"b"}
    assert seen_by_b.count("a") == 0


async def test_a_replica_started_later_reads_the_stored_cooldown(replicas) -> None:
    seen_by_a = Upstream(a=status(429, {"retry-after": "30"}), b=status(429, {"retry-after": "30"}))
    a = await replicas(seen_by_a)
    with pytest.raises(RateLimited):
        await chat(a)  # both deployments answer 429: both are cooled
    await until(lambda: all(d.cooling(time.monotonic()) for d in a.deployments["m"]))
    await asyncio.sleep(0)  # the writes run as tasks
    late_upstream = Upstream(a=ok, b=ok)
    late = await replicas(late_upstream)
    await until(lambda: all(d.cooling(time.monotonic()) for d in late.deployments["m"]), 2)
    with pytest.raises(RateLimited) as caught:
        await chat(late)
    assert "Every deployment of 'm' is rate limited upstream." in caught.value.message
    assert late_upstream.hosts == []


async def test_a_deployment_that_answers_again_is_released_everywhere(replicas) -> None:
    seen_by_a = Upstream(a=status(503), b=ok)
    a, b = await replicas(seen_by_a), await replicas(Upstream(a=ok, b=ok))
    while seen_by_a.count("a") == 0:
        await chat(a)
    a_on_b, b_on_b = deployment(b, "a"), deployment(b, "b")
    await until(lambda: a_on_b.cooling(time.monotonic()))
    assert a_on_b.binding is False  # a 5xx without Retry-After: tried after healthy ones
    # Now b fails and a answers: A tries b (healthy) first, then the cooling a.
    seen_by_a.behaviours.update(a=ok, b=status(503))
    assert await chat(a) == "a"
    await until(lambda: not a_on_b.cooling(time.monotonic()) and b_on_b.cooling(time.monotonic()))


async def test_without_redis_cooldowns_stay_local_and_requests_still_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    upstream = Upstream(a=status(429, {"retry-after": "30"}), b=ok)
    router, _ = build_router(upstream, {"m": ["a", "b"]})
    publisher = aioredis.Redis.from_url(dead, socket_connect_timeout=1)
    shared = SharedCooldowns(
        [d for found in router.deployments.values() for d in found],
        redis=publisher,
        subscriber=aioredis.Redis.from_url(dead, socket_connect_timeout=1),
    )
    router.shared = shared  # not started: the subscription could not be made either
    caplog.set_level(logging.WARNING, logger="switchyard.cooldowns")
    try:
        answers = [await chat(router) for _ in range(4)]
        assert answers == ["b"] * 4  # host a was tried once, cooled, then skipped
        assert upstream.count("a") == 1
        await shared.aclose()  # waits for the failed write
    finally:
        await publisher.aclose()
    assert "stays local to this replica" in caplog.text


def test_a_cooldown_that_arrives_is_never_longer_than_this_router_would_set() -> None:
    """A message on the channel (anyone with access to Redis can publish one) saying
    1e18 s must not take the deployment out of every replica for good."""
    router, _ = build_router(Upstream(a=ok), {"m": ["a"]})
    (deployment,) = router.deployments["m"]
    shared = SharedCooldowns(
        [deployment], redis=None, subscriber=None, channel="test", longest_s=60
    )
    event = {"deployment": deployment.label, "seconds": 1e18, "binding": True, "origin": "x"}
    before = time.monotonic()
    shared._received(json.dumps(event).encode())
    assert before + 59 < deployment.cooldown_until <= time.monotonic() + 60
