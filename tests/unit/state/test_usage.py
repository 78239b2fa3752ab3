"""UsageRepository on both engines, against sums worked out by hand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from proxy.state import StateStore
from proxy.state.records import UsageFilter, UsageRecord, UsageTotals
from tests.conftest import run_in_own_loop

LOCAL_ZONE = "America/Los_Angeles"
"""Not UTC, and behind it: a row just after a UTC midnight is the day before there."""

DAY = 86400.0
D1 = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
"""A UTC midnight: rows just before and after it fall on different days."""


def row(t: float, rid: str, **fields: Any) -> UsageRecord:
    base: dict[str, object] = {
        "key_id": "k1",
        "team_id": "t1",
        "model": "m1",
        "deployment": "d1",
        "route": "/v1/chat/completions",
        "status": 200,
    }
    return UsageRecord(time=t, request_id=rid, **(base | fields))  # type: ignore[arg-type]


ROWS = [
    row(D1 - 1, "a", prompt_tokens=10, completion_tokens=1, cost_usd=0.25),
    row(D1, "b", prompt_tokens=20, completion_tokens=2, cost_usd=0.5, status=400),
    row(
        D1 + 100,
        "c",
        key_id="k2",
        model="m2",
        prompt_tokens=30,
        completion_tokens=3,
        cost_usd=1.0,
        status=499,
    ),
    row(
        D1 + DAY + 5,
        "d",
        key_id="k3",
        team_id="t2",
        prompt_tokens=40,
        completion_tokens=4,
        cost_usd=2.0,
        status=399,
        ttft_ms=12.5,
        duration_ms=40.0,
        upstream_ms=30.0,
    ),
    row(
        D1 + DAY + 6,
        "e",
        model="m2",
        prompt_tokens=50,
        completion_tokens=5,
        cost_usd=4.0,
        status=503,
    ),
]


@pytest.fixture
def database_url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each engine's database, in a time zone that is not UTC: PostgreSQL's as the
    database's default ``timezone`` (every session of the store gets it), SQLite's as the
    process's local zone (what its ``'localtime'`` modifier reads)."""
    if database_url.startswith("postgresql"):
        import asyncpg

        async def set_zone() -> None:
            connection = await asyncpg.connect(database_url)
            try:
                name = await connection.fetchval("SELECT current_database()")
                await connection.execute(
                    f"ALTER DATABASE \"{name}\" SET timezone TO '{LOCAL_ZONE}'"
                )
            finally:
                await connection.close()

        run_in_own_loop(set_zone)
    monkeypatch.setenv("TZ", LOCAL_ZONE)
    time.tzset()
    try:
        yield database_url
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.fixture
async def store(state_store: StateStore) -> StateStore:
    await state_store.usage.insert_many(ROWS)
    return state_store


def totals(group: str | None, n: int, err: int, pt: int, ct: int, cost: float) -> UsageTotals:
    return UsageTotals(
        group=group,
        requests=n,
        errors=err,
        prompt_tokens=pt,
        completion_tokens=ct,
        cost_usd=cost,
    )


async def test_totals_ungrouped(store: StateStore) -> None:
    assert await store.usage.totals(UsageFilter(), None) == [totals(None, 5, 3, 150, 15, 7.75)]
    assert await store.usage.totals(UsageFilter(team_id="nobody"), None) == [
        totals(None, 0, 0, 0, 0, 0.0)
    ]


async def test_local_zone_is_not_utc(store: StateStore) -> None:
    """The premise of the per-day test: in the engine's own zone, D1 is the day before."""
    if store.engine_name == "postgresql":
        query = "SELECT to_char(to_timestamp(:t), 'YYYY-MM-DD')"
    else:
        query = "SELECT strftime('%Y-%m-%d', :t, 'unixepoch', 'localtime')"
    async with store.database.read() as conn:
        assert (await conn.execute(sa.text(query), {"t": D1})).scalar() == "2023-11-14"


async def test_totals_per_utc_day(store: StateStore) -> None:
    assert await store.usage.totals(UsageFilter(), "day") == [
        totals("2023-11-14", 1, 0, 10, 1, 0.25),
        totals("2023-11-15", 2, 2, 50, 5, 1.5),
        totals("2023-11-16", 2, 1, 90, 9, 6.0),
    ]


async def test_totals_per_model_key_and_team(store: StateStore) -> None:
    assert await store.usage.totals(UsageFilter(), "model") == [
        totals("m1", 3, 1, 70, 7, 2.75),
        totals("m2", 2, 2, 80, 8, 5.0),
    ]
    assert await store.usage.totals(UsageFilter(), "key") == [
        totals("k1", 3, 2, 80, 8, 4.75),
        totals("k2", 1, 1, 30, 3, 1.0),
        totals("k3", 1, 0, 40, 4, 2.0),
    ]
    assert await store.usage.totals(UsageFilter(), "team") == [
        totals("t1", 4, 3, 110, 11, 5.75),
        totals("t2", 1, 0, 40, 4, 2.0),
    ]


async def test_totals_filters_since_inclusive_until_exclusive(store: StateStore) -> None:
    where = UsageFilter(team_id="t1", since=D1, until=D1 + DAY + 6)
    assert await store.usage.totals(where, "day") == [totals("2023-11-15", 2, 2, 50, 5, 1.5)]
    assert await store.usage.totals(UsageFilter(key_id="k1", model="m2"), None) == [
        totals(None, 1, 1, 50, 5, 4.0)
    ]
    assert await store.usage.totals(UsageFilter(model="zzz"), "model") == []


async def test_spend_since_per_key_and_team(store: StateStore) -> None:
    assert await store.usage.spend(team_id="t1", key_id=None, since=0.0) == 5.75
    assert await store.usage.spend(team_id="t1", key_id=None, since=D1) == 5.5
    assert await store.usage.spend(team_id=None, key_id="k1", since=D1 + 1) == 4.0
    assert await store.usage.spend(team_id=None, key_id="k3", since=D1 + DAY + 6) == 0.0
    assert await store.usage.spend(team_id="t2", key_id=None, since=0.0) == 2.0


async def test_requests_round_trip_every_field(store: StateStore) -> None:
    page, cursor = await store.usage.requests(UsageFilter(team_id="t2"), 10, None)
    assert page == [ROWS[3]] and cursor is None


async def test_requests_page_newest_first_across_three_pages(state_store: StateStore) -> None:
    # Ties on time are many: the order must still be total, with no gaps or repeats.
    rows = [row(1000.0 + i // 3, f"r{i}") for i in range(11)]
    await state_store.usage.insert_many(rows)
    await state_store.usage.insert_many([row(1003.0, "other", team_id="t9")])
    pages: list[list[UsageRecord]] = []
    cursor = None
    while True:
        page, cursor = await state_store.usage.requests(UsageFilter(team_id="t1"), 4, cursor)
        pages.append(page)
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 3]
    seen = [r.request_id for p in pages for r in p]
    assert sorted(seen) == sorted(r.request_id for r in rows)
    assert len(set(seen)) == 11
    times = [r.time for p in pages for r in p]
    assert times == sorted(times, reverse=True)
    # Within one time, the later insert comes first.
    assert seen[:2] == ["r10", "r9"]


async def test_requests_exact_last_page_has_no_cursor(state_store: StateStore) -> None:
    await state_store.usage.insert_many([row(float(i), f"r{i}") for i in range(4)])
    page, cursor = await state_store.usage.requests(UsageFilter(), 2, None)
    assert [r.request_id for r in page] == ["r3", "r2"] and cursor is not None
    page, cursor = await state_store.usage.requests(UsageFilter(), 2, cursor)
    assert [r.request_id for r in page] == ["r1", "r0"] and cursor is None


async def test_requests_malformed_cursor(store: StateStore) -> None:
    for bad in ("%%%", "bm90IGpzb24", "WzFd", "WyJhIiwgMV0"):
        with pytest.raises(ValueError):
            await store.usage.requests(UsageFilter(), 2, bad)


async def test_insert_many_is_one_transaction(state_store: StateStore) -> None:
    bad = row(1.0, "bad")
    bad.model = None  # type: ignore[assignment]
    with pytest.raises(Exception):  # noqa: B017  (the driver's IntegrityError)
        await state_store.usage.insert_many([row(0.5, "good"), bad])
    assert await state_store.usage.totals(UsageFilter(), None) == [totals(None, 0, 0, 0, 0, 0.0)]
    await state_store.usage.insert_many([])
