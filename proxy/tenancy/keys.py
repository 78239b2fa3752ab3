"""Virtual keys on the hot path: looked up by the hash of the secret, cached in process.

A presented secret is hashed (SHA-256) and looked up in a dict; only a miss goes to
the database, and concurrent misses for one secret share one query. An entry is trusted
for ``ttl_s``: a rotated secret's grace, an expiry or a revocation takes effect within
it. Without Redis that bounds how long a revoked or changed key keeps
working on another replica (one second by default). With Redis, every change is
published on ``CHANNEL`` and each replica drops its cache at once; the TTL is then only
the fallback for a lost message. Unknown secrets are cached too (so a flood of bad keys
costs one query per secret per TTL), in a bounded dict.

Looking a hash up in a dict is not constant-time, and need not be: what is compared is
the hash of the secret, which tells an attacker nothing about the secrets stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.state.channels import follow_channel, scoped_channel
from proxy.state.records import ApiKey, Team
from proxy.state.repositories import KeyRepository, TeamRepository

log = logging.getLogger("switchyard.tenancy")

CHANNEL = "switchyard:key-changes"
MAX_ENTRIES = 50_000


@dataclass(slots=True)
class KeyLookup:
    key: ApiKey | None
    team: Team | None
    fetched_at: float
    identity: Any = None
    """The ``Identity`` built from this lookup, kept with it (``Authenticator``)."""


class KeyCache:
    def __init__(
        self,
        keys: KeyRepository,
        teams: TeamRepository,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.teams = teams
        self.ttl_s = ttl_s
        self.clock = clock
        self.wall_clock = wall_clock
        self._entries: dict[str, KeyLookup] = {}
        self._unknown: dict[str, KeyLookup] = {}
        self._teams: dict[str, KeyLookup] = {}
        self._generation = 0
        """Bumped by every change, so a lookup that began before it is not cached."""
        self._loading: dict[str, asyncio.Future[KeyLookup]] = {}
        self._team_loading: dict[str, asyncio.Future[KeyLookup]] = {}
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None

    async def lookup(self, key_hash: str) -> KeyLookup:
        entry = self._entries.get(key_hash) or self._unknown.get(key_hash)
        if entry is not None and self.clock() - entry.fetched_at < self.ttl_s:
            return entry
        pending = self._loading.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyLookup] = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = future
        generation = self._generation
        try:
            entry = await self._load(key_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._loading[key_hash]
        future.set_result(entry)
        if generation != self._generation:
            return entry  # a change arrived while loading: the answer may predate it
        # Unknown secrets have their own bound, so a flood of made-up keys never pushes
        # the real ones out.
        cache = self._entries if entry.key is not None else self._unknown
        if len(cache) >= MAX_ENTRIES:
            cache.clear()
        cache[key_hash] = entry
        return entry

    async def _load(self, key_hash: str) -> KeyLookup:
        fetched_at = self.clock()
        key = await self.keys.find_by_hash(key_hash, self.wall_clock())
        team = await self.teams.get(key.team_id) if key is not None else None
        return KeyLookup(key, team, fetched_at)

    async def team(self, team_id: str) -> Team | None:
        """A team's record (for callers whose team is not a key's: static keys, JWTs)."""
        entry = self._teams.get(team_id)
        if entry is not None and self.clock() - entry.fetched_at < self.ttl_s:
            return entry.team
        pending = self._team_loading.get(team_id)
        if pending is not None:  # one query for all the requests that missed together
            return (await asyncio.shield(pending)).team
        future: asyncio.Future[KeyLookup] = asyncio.get_running_loop().create_future()
        self._team_loading[team_id] = future
        generation, fetched_at = self._generation, self.clock()
        try:
            entry = KeyLookup(None, await self.teams.get(team_id), fetched_at)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._team_loading[team_id]
        future.set_result(entry)
        self._keep_team(team_id, entry, generation)
        return entry.team

    def _keep_team(self, name: str, entry: KeyLookup, generation: int) -> None:
        if generation != self._generation:
            return
        if len(self._teams) >= MAX_ENTRIES:
            self._teams.clear()
        self._teams[name] = entry

    async def team_named(self, name_or_id: str | None) -> Team | None:
        """A team by id, else by name (a JWT's team claim may carry either)."""
        if not name_or_id:
            return None
        team = await self.team(name_or_id)
        if team is not None:
            return team
        entry = self._teams.get(f"name:{name_or_id}")
        if entry is None or self.clock() - entry.fetched_at >= self.ttl_s:
            generation, fetched_at = self._generation, self.clock()
            entry = KeyLookup(None, await self.teams.named(name_or_id), fetched_at)
            self._keep_team(f"name:{name_or_id}", entry, generation)
        return entry.team

    def forget_all(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._unknown.clear()
        self._teams.clear()

    async def changed(self, what: str) -> None:
        """A key or team changed here: forget it here, and tell the other replicas."""
        self.forget_all()
        if self._redis is not None:
            try:
                await self._redis.publish(scoped_channel(CHANNEL, self._redis), what)
            except Exception:
                log.exception("broadcasting a key change failed; other replicas wait for TTL")

    async def listen(self, redis: Any, *, ttl_s: float, publisher: Any = None) -> None:
        """Follow other replicas' changes on Redis (``redis``: a client for the
        subscription alone); entries then live ``ttl_s``. Changes made here are
        published through ``publisher`` (default: ``redis``)."""
        self._redis = publisher if publisher is not None else redis
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        channel = scoped_channel(CHANNEL, redis)
        await pubsub.subscribe(channel)
        self.ttl_s = ttl_s
        self._listener = asyncio.get_running_loop().create_task(
            self._follow(pubsub, channel), name="key-changes"
        )

    async def _follow(self, pubsub: Any, channel: str) -> None:
        async def changed(_data: Any) -> None:
            self.forget_all()

        # While the channel is lost, changes may be missed: forget everything then too.
        await follow_channel(pubsub, channel, changed, what="key-change", on_lost=self.forget_all)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
