"""The two cache backends: bounds, expiry, scopes, flushing and statistics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from proxy.cache.backends import ENTRY_OVERHEAD_BYTES, MemoryBackend, RedisBackend


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def size_of(key: str, value: bytes) -> int:
    return len(value) + len(key) + ENTRY_OVERHEAD_BYTES


async def test_memory_backend_stays_within_its_bytes_evicting_least_recently_used() -> None:
    value = b"x" * 1000
    one = size_of("k0", value)
    cache = MemoryBackend(max_bytes=3 * one)
    for name in ("k0", "k1", "k2"):
        await cache.put(("t", "m"), name, value, 60, None)
    assert cache.bytes == 3 * one
    assert await cache.get("k0") == value  # k0 is now the most recently used
    await cache.put(("t", "m"), "k3", value, 60, None)
    assert cache.bytes == 3 * one
    assert await cache.get("k1") is None  # the least recently used went
    assert [await cache.get(k) for k in ("k0", "k2", "k3")] == [value] * 3
    await cache.put(("t", "m"), "big", b"y" * (4 * one), 60, None)  # larger than the bound
    assert await cache.get("big") is None and cache.bytes == 3 * one
    stats = await cache.stats()
    assert (stats["m"].entries, stats["m"].bytes) == (3, 3 * one)


async def test_memory_backend_never_serves_an_expired_entry() -> None:
    clock = Clock()
    cache = MemoryBackend(max_bytes=10**6, clock=clock)
    await cache.put(("t", "m"), "short", b"a", 10, b"v1")
    await cache.put(("t", "m"), "long", b"b", 100, b"v2")
    clock.now += 10
    assert await cache.get("short") is None
    assert await cache.get("long") == b"b"
    assert await cache.vectors(("t", "m"), 10) == [("long", b"v2")]
    assert (await cache.stats())["m"].entries == 1
    clock.now += 90
    assert await cache.get("long") is None
    assert "m" not in await cache.stats()  # no entries, nothing counted
    assert cache.bytes == 0


async def test_memory_backend_flushes_by_team_and_model_and_counts() -> None:
    cache = MemoryBackend(max_bytes=10**6)
    await cache.put(("a", "m1"), "1", b"x", 60, None)
    await cache.put(("a", "m2"), "2", b"x", 60, None)
    await cache.put(("b", "m1"), "3", b"x", 60, None)
    assert await cache.flush(team="a", model="m1") == 1
    assert await cache.get("1") is None and await cache.get("2") == b"x"
    assert await cache.flush(team=None, model="m1") == 1
    assert await cache.get("3") is None
    assert await cache.flush(team=None, model=None) == 1
    assert cache.bytes == 0
    await cache.count("m1", "hit")
    await cache.count("m1", "miss")
    await cache.count("m1", "hit")
    stats = (await cache.stats())["m1"]
    assert (stats.hits, stats.misses, stats.entries) == (2, 1, 0)


async def test_memory_backend_vectors_are_per_scope_newest_first() -> None:
    cache = MemoryBackend(max_bytes=10**6)
    for n in range(5):
        await cache.put(("a", "m"), f"k{n}", b"x", 60, f"v{n}".encode())
    await cache.put(("b", "m"), "other", b"x", 60, b"vb")
    await cache.put(("a", "m"), "novec", b"x", 60, None)
    assert await cache.vectors(("a", "m"), 3) == [("k4", b"v4"), ("k3", b"v3"), ("k2", b"v2")]
    assert await cache.vectors(("b", "m"), 3) == [("other", b"vb")]


@pytest.fixture
async def redis_backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    client = Redis.from_url(redis_url)
    prefix = f"test:{uuid.uuid4().hex[:12]}:cache:"
    try:
        yield RedisBackend(client, prefix)
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_redis_backend_stores_indexes_flushes_and_counts(
    redis_backend: RedisBackend,
) -> None:
    cache = redis_backend
    await cache.put(("a", "m1"), "1", b"one", 60, b"vec1")
    await cache.put(("a", "m2"), "2", b"two", 60, None)
    await cache.put(("b", "m1"), "3", b"three", 60, b"vec3")
    assert [await cache.get(k) for k in ("1", "2", "3", "4")] == [b"one", b"two", b"three", None]
    assert await cache.vectors(("a", "m1"), 10) == [("1", b"vec1")]
    assert await cache.vectors(("a", "m2"), 10) == []
    await cache.count("m1", "hit")
    await cache.count("m1", "miss")
    await cache.count("m1", "miss")
    stats = await cache.stats()
    assert (stats["m1"].entries, stats["m1"].bytes) == (2, len(b"one") + 4 + len(b"three") + 4)
    assert (stats["m1"].hits, stats["m1"].misses) == (1, 2)
    assert stats["m2"].entries == 1
    assert await cache.flush(team="b", model=None) == 1
    assert await cache.get("3") is None and await cache.get("1") == b"one"
    assert await cache.flush(team=None, model="m1") == 1
    assert await cache.flush(team=None, model=None) == 1
    assert [await cache.get(k) for k in ("1", "2")] == [None, None]
    assert (await cache.stats())["m1"].entries == 0  # counted: listed, with no entries


async def test_redis_backend_entries_expire(redis_backend: RedisBackend) -> None:
    cache = redis_backend
    await cache.put(("a", "m"), "short", b"x", 0.05, b"v")
    await cache.put(("a", "m"), "long", b"y", 60, b"w")
    for _ in range(100):
        if await cache.get("short") is None:
            break
        await asyncio.sleep(0.02)
    assert await cache.get("short") is None
    assert await cache.vectors(("a", "m"), 10) == [("long", b"w")]
    assert (await cache.stats())["m"].entries == 1
    # A later write prunes the expired entry from the scope's index.
    await cache.put(("a", "m"), "later", b"z", 60, None)
    index, _, _ = cache._scope_keys(("a", "m"))
    assert sorted(await cache.redis.zrange(index, 0, -1)) == [b"later", b"long"]
