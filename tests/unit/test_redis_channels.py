"""Pub/sub channels are per Redis database (``proxy.state.channels``): a deployment on
one database of a Redis server never hears the key changes of one on another database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import redis.asyncio as redis_asyncio

from proxy.state.channels import scoped_channel
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
