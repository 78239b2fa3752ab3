"""Pub/sub channels are per Redis database (``proxy.state.channels``): a deployment on
one database of a Redis server never hears the key changes of one on another database;
and the one follower loop survives a lost subscription."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import redis.asyncio as redis_asyncio

from proxy.state.channels import follow_channel, scoped_channel
from proxy.tenancy.keys import KeyCache
from tests.conftest import fresh_redis_db


def test_a_channel_name_carries_the_database_number() -> None:
    names = [
        scoped_channel("switchyard:key-changes", redis_asyncio.Redis.from_url(url))
        for url in ("redis://127.0.0.1:1/3", "redis://127.0.0.1:1", "redis://127.0.0.1:1/12")
    ]
    assert names == [
        "switchyard:key-changes:db3",
        "switchyard:key-changes:db0",
        "switchyard:key-changes:db12",
    ]


async def test_key_changes_reach_replicas_on_the_same_database_only(
    redis_url: str, _redis_dbs: Iterator[int]
) -> None:
    with (
        fresh_redis_db(redis_url, _redis_dbs) as mine,
        fresh_redis_db(redis_url, _redis_dbs) as theirs,
    ):
        clients = [redis_asyncio.Redis.from_url(url) for url in (mine, mine, theirs)]
        source, same, other = caches = [KeyCache(None, None, ttl_s=1) for _ in clients]  # type: ignore[arg-type]
        try:
            for cache, client in zip(caches, clients, strict=True):
                await cache.listen(client, ttl_s=60)
            same_before, other_before = same._generation, other._generation
            await source.changed("key:k1")
            for _ in range(200):
                if same._generation > same_before:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # a message leaking to the other database would be in
            assert same._generation > same_before
            assert other._generation == other_before
        finally:
            for cache in caches:
                await cache.aclose()
            for client in clients:
                await client.aclose()


class FlakyPubSub:
    """A subscription whose first ``listen`` breaks, the way a dropped connection does."""

    def __init__(self) -> None:
        self.listens = 0
        self.subscribed: list[str] = []
        self.closed = False

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        self.listens += 1
        if self.listens == 1:
            raise ConnectionError("connection lost")
        yield {"type": "message", "data": b"after"}
        await asyncio.Event().wait()  # then nothing more, until cancelled

    async def subscribe(self, channel: str) -> None:
        self.subscribed.append(channel)

    async def aclose(self) -> None:
        self.closed = True


async def test_a_follower_resubscribes_after_a_lost_channel_and_catches_up() -> None:
    pubsub, seen, events = FlakyPubSub(), [], []

    async def on_message(data: Any) -> None:
        seen.append(data)

    async def on_resubscribed() -> None:
        events.append("resubscribed")

    task = asyncio.create_task(
        follow_channel(
            pubsub,
            "switchyard:test:db3",
            on_message,
            what="test",
            on_lost=lambda: events.append("lost"),
            on_resubscribed=on_resubscribed,
        )
    )
    for _ in range(300):
        if seen:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert seen == [b"after"]
    assert events == ["lost", "resubscribed"]
    assert pubsub.subscribed == ["switchyard:test:db3"]
    assert pubsub.closed
