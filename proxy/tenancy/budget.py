"""Spend per key and team against ``max_budget_usd``, per calendar day or month (UTC).

The usage table is the record; counting it on every request would be a query per
request, so ``SpendTracker`` reads it once per (scope, period) through ``load`` and
keeps a running total from then on: in this process, or in Redis where every replica
shares it (the first replica to load the period initialises the counter with
``SET NX``; the others reuse it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from proxy.errors import BudgetExceeded
from proxy.state.records import BudgetPeriod

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: How long a Redis spend counter outlives its period (late ``add`` calls still land).
REDIS_GRACE_S = 86400

# KEYS: spend counters; ARGV: the cost. Adds to the counters that exist and returns the
# (1-based) indexes of those that do not, which the caller initialises from the store.
_ADD = """
local missing = {}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
  else
    missing[#missing + 1] = i
  end
end
return missing
"""


def period_bounds(period: BudgetPeriod, now: float) -> tuple[float, float]:
    """``[start, end)`` of the calendar day or month (UTC) that contains ``now``."""
    at = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.timestamp(), start.timestamp() + 86400
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        end = start.replace(year=start.year + 1, month=1)
    else:
        end = start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()


def _usd(value: float) -> str:
    return f"${value:.2f}" if value == 0 or value >= 0.01 else f"${value:.4f}"


def _wait(seconds: float) -> str:
    """``3h12m``, ``12m30s``, ``45s``; ``4d3h`` past a day."""
    whole = max(1, math.ceil(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class SpendTracker:
    """Spend so far in the current period, per scope (``key:<id>`` or ``team:<id>``).

    ``load(scope, since)`` returns what the store already holds for ``scope`` since
    ``since`` (the period's start); it is called once per (scope, period) per process,
    and with Redis once per (scope, period) for all replicas.
    """

    def __init__(
        self,
        load: Callable[[str, float], Awaitable[float]],
        *,
        redis: Redis | None = None,
        prefix: str = "switchyard:spend:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load = load
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        #: (scope, period) -> [period start, spent]; only the current period is kept.
        self._local: dict[tuple[str, BudgetPeriod], list[float]] = {}
        self._add = redis.register_script(_ADD) if redis is not None else None

    def _key(self, scope: str, period: BudgetPeriod, start: float) -> str:
        return f"{self._prefix}{scope}:{period}:{int(start)}"

    async def _init_redis(self, scope: str, period: BudgetPeriod, now: float) -> float:
        """Load the period's spend from the store and offer it to Redis; the value of
        whichever replica got there first is what counts."""
        assert self._redis is not None
        start, end = period_bounds(period, now)
        loaded = await self._load(scope, start)
        key = self._key(scope, period, start)
        ttl = max(1, math.ceil(end + REDIS_GRACE_S - now))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, repr(float(loaded)), nx=True, ex=ttl)
            pipe.get(key)
            _, value = await pipe.execute()
        return float(value)

    async def _spent_local(self, scope: str, period: BudgetPeriod, now: float) -> list[float]:
        start = period_bounds(period, now)[0]
        entry = self._local.get((scope, period))
        if entry is not None and entry[0] == start:
            return entry
        loaded = await self._load(scope, start)
        entry = self._local.get((scope, period))
        if entry is None or entry[0] != start:
            # Nobody else loaded this period while we awaited: ours is the count.
            entry = self._local[(scope, period)] = [start, float(loaded)]
        return entry

    async def spent(self, scope: str, period: BudgetPeriod) -> float:
        now = self._clock()
        if self._redis is None:
            return (await self._spent_local(scope, period, now))[1]
        value = await self._redis.get(self._key(scope, period, period_bounds(period, now)[0]))
        if value is None:
            return await self._init_redis(scope, period, now)
        return float(value)

    async def add(self, scopes: Sequence[tuple[str, BudgetPeriod]], cost: float) -> None:
        """Count ``cost`` (USD) against every scope's current period."""
        if not cost:
            return
        now = self._clock()
        if self._redis is None:
            for scope, period in scopes:
                (await self._spent_local(scope, period, now))[1] += cost
            return
        assert self._add is not None
        keys = [self._key(s, p, period_bounds(p, now)[0]) for s, p in scopes]
        missing = await self._add(keys=keys, args=[repr(float(cost))])
        for i in missing:
            scope, period = scopes[int(i) - 1]
            await self._init_redis(scope, period, now)
            await self._redis.incrbyfloat(keys[int(i) - 1], cost)

    async def check(self, scopes: Sequence[tuple[str, float, BudgetPeriod]]) -> None:
        """Refuse when any scope has spent its ``max_budget`` (USD) this period."""
        if not scopes:
            return
        now = self._clock()
        if self._redis is None:
            spent = [(await self._spent_local(s, p, now))[1] for s, _, p in scopes]
        else:
            keys = [self._key(s, p, period_bounds(p, now)[0]) for s, _, p in scopes]
            values = await self._redis.mget(keys)
            spent = [
                float(v) if v is not None else await self._init_redis(s, p, now)
                for v, (s, _, p) in zip(values, scopes, strict=True)
            ]
        for (scope, budget, period), used in zip(scopes, spent, strict=True):
            if used >= budget:
                end = period_bounds(period, now)[1]
                raise BudgetExceeded(
                    f"Budget of {_usd(budget)} per {period} for {scope} is used up "
                    f"({_usd(used)} spent); it resets in {_wait(end - now)}.",
                    retry_after_s=end - now,
                )
