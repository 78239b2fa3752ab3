"""Spend tracking against ``max_budget_usd`` in both backends, and the period bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from proxy.errors import BudgetExceeded
from proxy.tenancy.budget import SpendTracker, period_bounds

from .conftest import FakeClock, redis_prefix


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


class Store:
    """What the usage table holds: a fixed spend per scope, and every load asked of it."""

    def __init__(self, **spend: float) -> None:
        self.spend = {k.replace("_", ":", 1): v for k, v in spend.items()}
        self.calls: list[tuple[str, float]] = []

    async def load(self, scope: str, since: float) -> float:
        self.calls.append((scope, since))
        return self.spend.get(scope, 0.0)


Make = Callable[[Store], SpendTracker]


@pytest.fixture(params=["memory", "redis"])
async def make(
    request: pytest.FixtureRequest, clock: FakeClock, redis_url: str
) -> AsyncIterator[Make]:
    if request.param == "memory":
        yield lambda store: SpendTracker(store.load, clock=clock)
        return
    async with redis_prefix(redis_url) as (client, prefix):
        yield lambda store: SpendTracker(store.load, redis=client, prefix=prefix, clock=clock)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", ts(2026, 3, 15, 13, 45), ts(2026, 3, 15), ts(2026, 3, 16)),
        ("day", ts(2026, 12, 31, 23, 59, 59), ts(2026, 12, 31), ts(2027, 1, 1)),
        ("month", ts(2026, 12, 31, 23, 59), ts(2026, 12, 1), ts(2027, 1, 1)),
        ("month", ts(2028, 2, 29, 12), ts(2028, 2, 1), ts(2028, 3, 1)),
        ("month", ts(2026, 5, 1), ts(2026, 5, 1), ts(2026, 6, 1)),
    ],
)
def test_period_bounds_are_calendar_days_and_months_in_utc(
    period: str, now: float, start: float, end: float
) -> None:
    assert period_bounds(period, now) == (start, end)  # type: ignore[arg-type]


async def test_spent_is_loaded_once_then_counted(make: Make, clock: FakeClock) -> None:
    clock.now = ts(2026, 3, 15, 10)
    store = Store(team_abc=1.5)
    tracker = make(store)
    assert await tracker.spent("team:abc", "day") == 1.5
    await tracker.add([("team:abc", "day"), ("key:k", "month")], 0.25)
    assert await tracker.spent("team:abc", "day") == 1.75
    assert await tracker.spent("key:k", "month") == 0.25
    assert store.calls == [("team:abc", ts(2026, 3, 15)), ("key:k", ts(2026, 3, 1))]


async def test_a_new_period_loads_again(make: Make, clock: FakeClock) -> None:
    clock.now = ts(2026, 3, 15, 23, 59)
    store = Store(team_abc=0.5)
    tracker = make(store)
    await tracker.add([("team:abc", "day")], 1.0)
    assert await tracker.spent("team:abc", "day") == 1.5
    clock.now = ts(2026, 3, 16, 0, 1)
    store.spend["team:abc"] = 0.0
    assert await tracker.spent("team:abc", "day") == 0.0
    assert [since for _, since in store.calls] == [ts(2026, 3, 15), ts(2026, 3, 16)]


async def test_check_refuses_once_the_budget_is_spent(make: Make, clock: FakeClock) -> None:
    clock.now = ts(2026, 3, 15, 20, 48)
    store = Store(team_abc=0.9)
    tracker = make(store)
    limits = [("key:k", 5.0, "month"), ("team:abc", 1.0, "day")]
    await tracker.check(limits)  # type: ignore[arg-type]
    await tracker.add([("key:k", "month"), ("team:abc", "day")], 0.12)
    with pytest.raises(BudgetExceeded) as caught:
        await tracker.check(limits)  # type: ignore[arg-type]
    err = caught.value
    assert err.message == (
        "Budget of $1.00 per day for team:abc is used up ($1.02 spent); it resets in 3h12m."
    )
    assert (err.http_status, err.error_type, err.error_code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert err.retryable is False
    assert err.retry_after_s == 3 * 3600 + 12 * 60
    assert err.headers == {"Retry-After": "11520", "x-should-retry": "false"}


async def test_exactly_the_budget_is_used_up(make: Make, clock: FakeClock) -> None:
    clock.now = ts(2026, 3, 31, 23, 59, 30)
    tracker = make(Store(key_k=2.0))
    with pytest.raises(BudgetExceeded) as caught:
        await tracker.check([("key:k", 2.0, "month")])
    assert caught.value.message.endswith(
        "per month for key:k is used up ($2.00 spent); it resets in 30s."
    )
    await tracker.check([("key:k", 2.01, "month")])


async def test_two_replicas_share_spend_through_redis(
    redis: tuple[Redis, str], clock: FakeClock
) -> None:
    client, prefix = redis
    clock.now = ts(2026, 3, 15, 10)
    first, second = Store(team_abc=1.0), Store(team_abc=5.0)
    a = SpendTracker(first.load, redis=client, prefix=prefix, clock=clock)
    b = SpendTracker(second.load, redis=client, prefix=prefix, clock=clock)
    assert await a.spent("team:abc", "day") == 1.0
    # The second replica reuses the first one's counter instead of loading its own.
    assert await b.spent("team:abc", "day") == 1.0
    await b.add([("team:abc", "day")], 0.5)
    await a.add([("team:abc", "day")], 0.25)
    assert await a.spent("team:abc", "day") == await b.spent("team:abc", "day") == 1.75
    with pytest.raises(BudgetExceeded):
        await b.check([("team:abc", 1.75, "day")])
    assert len(first.calls) == 1 and second.calls == []
    key = f"{prefix}team:abc:day:{int(ts(2026, 3, 15))}"
    # Kept until a day after the period ends (Redis counts its own time).
    ttl = await client.ttl(key)
    assert ts(2026, 3, 17) - clock.now - 5 <= ttl <= ts(2026, 3, 17) - clock.now


async def test_a_replica_adding_first_initialises_from_the_store(
    redis: tuple[Redis, str], clock: FakeClock
) -> None:
    client, prefix = redis
    store = Store(key_k=3.0)
    a = SpendTracker(store.load, redis=client, prefix=prefix, clock=clock)
    b = SpendTracker(Store().load, redis=client, prefix=prefix, clock=clock)
    await a.add([("key:k", "month")], 0.5)
    assert await b.spent("key:k", "month") == 3.5
    assert len(store.calls) == 1
