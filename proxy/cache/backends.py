"""Where cached answers live: this process (bounded in bytes) or Redis (shared).

Both keep, per entry, the encoded answer and, for semantic caching, its prompt's vector
(float32 bytes); per (team, model) scope an index, for the semantic search, flushing and
statistics; per model the hit and miss counts. Entry keys are digests that already name
the team (``proxy.cache.keys``), so the index is only needed to find a scope's entries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

Scope = tuple[str, str]
"""(team id, model)."""

ENTRY_OVERHEAD_BYTES = 256
"""What an in-process entry costs beyond its answer and vector (the key, the record)."""


@dataclass(slots=True)
class ModelStats:
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0


class CacheBackend(Protocol):
    name: str
    """Shown by the admin API (``memory``, ``redis``)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(
        self, scope: Scope, key: str, value: bytes, ttl_s: float, vector: bytes | None
    ) -> None: ...

    async def vectors(self, scope: Scope, limit: int) -> list[tuple[str, bytes]]:
        """The newest ``limit`` live entries of ``scope`` that have a vector."""
        ...

    async def count(self, model: str, result: str) -> None:
        """Count a ``hit`` or a ``miss`` for ``model``."""
        ...

    async def stats(self) -> dict[str, ModelStats]: ...

    async def flush(self, *, team: str | None, model: str | None) -> int:
        """Remove the entries of the matching scopes; return how many were live."""
        ...


@dataclass(slots=True)
class _Entry:
    scope: Scope
    value: bytes
    vector: bytes | None
    expires: float
    size: int


class MemoryBackend:
    """Least recently used entries go first once ``max_bytes`` would be exceeded; an
    expired entry is never served (it is dropped when met, or when evicted)."""

    name = "memory"

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._scopes: dict[Scope, dict[str, None]] = {}
        self._counts: dict[str, ModelStats] = {}

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        members = self._scopes.get(entry.scope)
        if members is not None:
            members.pop(key, None)
            if not members:
                del self._scopes[entry.scope]

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def put(
        self, scope: Scope, key: str, value: bytes, ttl_s: float, vector: bytes | None
    ) -> None:
        size = len(value) + len(vector or b"") + len(key) + ENTRY_OVERHEAD_BYTES
        if key in self._entries:
            self._drop(key)
        if size > self.max_bytes:
            return
        while self.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = _Entry(scope, value, vector, self._clock() + ttl_s, size)
        self._scopes.setdefault(scope, {})[key] = None
        self.bytes += size

    async def vectors(self, scope: Scope, limit: int) -> list[tuple[str, bytes]]:
        now = self._clock()
        found: list[tuple[str, bytes]] = []
        for key in reversed(list(self._scopes.get(scope, ()))):
            entry = self._entries[key]
            if entry.vector is not None and entry.expires > now:
                found.append((key, entry.vector))
                if len(found) == limit:
                    break
        return found

    async def count(self, model: str, result: str) -> None:
        stats = self._counts.get(model)
        if stats is None:
            stats = self._counts[model] = ModelStats()
        if result == "hit":
            stats.hits += 1
        else:
            stats.misses += 1

    async def stats(self) -> dict[str, ModelStats]:
        now = self._clock()
        found = {
            model: ModelStats(hits=c.hits, misses=c.misses) for model, c in self._counts.items()
        }
        for key, entry in list(self._entries.items()):
            if entry.expires <= now:
                self._drop(key)
                continue
            stats = found.setdefault(entry.scope[1], ModelStats())
            stats.entries += 1
            stats.bytes += entry.size
        return found

    async def flush(self, *, team: str | None, model: str | None) -> int:
        now = self._clock()
        removed = 0
        for scope in [s for s in self._scopes if _matches(s, team, model)]:
            for key in list(self._scopes.get(scope, ())):
                removed += self._entries[key].expires > now
                self._drop(key)
        return removed


def _matches(scope: Scope, team: str | None, model: str | None) -> bool:
    return (team is None or scope[0] == team) and (model is None or scope[1] == model)


class RedisBackend:
    """Entries as ``SET EX`` keys; per scope a sorted set (key -> expiry time) and hashes of
    sizes and vectors; a set of scopes; a hash of hit and miss counts. Redis's own
    ``maxmemory`` policy bounds it (``max_bytes`` is the in-process bound)."""

    name = "redis"

    def __init__(self, redis: Any, prefix: str = "switchyard:cache:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._scopes_key = prefix + "scopes"
        self._stats_key = prefix + "stats"

    def _scope_keys(self, scope: Scope) -> tuple[str, str, str]:
        name = f"{scope[0]}\t{scope[1]}"
        return (self.prefix + "i:" + name, self.prefix + "s:" + name, self.prefix + "v:" + name)

    def _entry_key(self, key: str) -> str:
        return self.prefix + "e:" + key

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(self._entry_key(key))
        return value if value is None else bytes(value)

    async def put(
        self, scope: Scope, key: str, value: bytes, ttl_s: float, vector: bytes | None
    ) -> None:
        index, sizes, vectors = self._scope_keys(scope)
        now = time.time()
        expired = await self.redis.zrangebyscore(index, "-inf", now, start=0, num=100)
        ttl_ms = max(1, int(ttl_s * 1000))
        pipe = self.redis.pipeline(transaction=False)
        if expired:
            pipe.zrem(index, *expired)
            pipe.hdel(sizes, *expired)
            pipe.hdel(vectors, *expired)
        pipe.set(self._entry_key(key), value, px=ttl_ms)
        pipe.zadd(index, {key: now + ttl_s})
        pipe.hset(sizes, key, len(value) + len(vector or b""))
        if vector is not None:
            pipe.hset(vectors, key, vector)
        for name in (index, sizes, vectors):
            pipe.pexpire(name, ttl_ms)
        pipe.sadd(self._scopes_key, f"{scope[0]}\t{scope[1]}")
        await pipe.execute()

    async def vectors(self, scope: Scope, limit: int) -> list[tuple[str, bytes]]:
        index, _, vectors = self._scope_keys(scope)
        keys = await self.redis.zrevrangebyscore(index, "+inf", time.time(), start=0, num=limit)
        if not keys:
            return []
        found = await self.redis.hmget(vectors, keys)
        return [(_text(k), bytes(v)) for k, v in zip(keys, found, strict=True) if v is not None]

    async def count(self, model: str, result: str) -> None:
        await self.redis.hincrby(self._stats_key, f"{model}\t{result}", 1)

    async def _scopes(self) -> list[Scope]:
        members = await self.redis.smembers(self._scopes_key)
        scopes = []
        for member in members:
            team, _, model = _text(member).partition("\t")
            scopes.append((team, model))
        return scopes

    async def stats(self) -> dict[str, ModelStats]:
        found: dict[str, ModelStats] = {}
        counts = await self.redis.hgetall(self._stats_key)
        for field, value in counts.items():
            model, _, result = _text(field).rpartition("\t")
            stats = found.setdefault(model, ModelStats())
            if result == "hit":
                stats.hits += int(value)
            else:
                stats.misses += int(value)
        now = time.time()
        for scope in await self._scopes():
            index, sizes, _ = self._scope_keys(scope)
            live = await self.redis.zrangebyscore(index, now, "+inf")
            if not live:
                continue
            stats = found.setdefault(scope[1], ModelStats())
            stats.entries += len(live)
            stats.bytes += sum(int(s) for s in await self.redis.hmget(sizes, live) if s is not None)
        return found

    async def flush(self, *, team: str | None, model: str | None) -> int:
        removed = 0
        now = time.time()
        for scope in await self._scopes():
            if not _matches(scope, team, model):
                continue
            index, sizes, vectors = self._scope_keys(scope)
            members = await self.redis.zrangebyscore(index, "-inf", "+inf", withscores=True)
            removed += sum(1 for _, expires in members if expires > now)
            pipe = self.redis.pipeline(transaction=False)
            if members:
                pipe.delete(*(self._entry_key(_text(k)) for k, _ in members))
            pipe.delete(index, sizes, vectors)
            pipe.srem(self._scopes_key, f"{scope[0]}\t{scope[1]}")
            await pipe.execute()
        return removed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
