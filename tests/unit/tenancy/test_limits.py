"""RPM/TPM limits against both backends (in process and Redis), on a movable clock."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from proxy.errors import RateLimited, RateLimitExceeded
from proxy.tenancy.limits import (
    Grant,
    Limiter,
    ParallelGate,
    RateStatus,
    RedisLimiter,
    ScopeLimit,
    format_duration,
)

from .conftest import T0, FakeClock

KEY_A = ScopeLimit("key:a", rpm=10, tpm=None)
KEY_B = ScopeLimit("key:b", rpm=10, tpm=None)
TEAM = ScopeLimit("team:t", rpm=3, tpm=None)


def header(grant_or_headers: Grant | list[tuple[bytes, bytes]], name: str) -> str:
    headers = grant_or_headers.headers if isinstance(grant_or_headers, Grant) else grant_or_headers
    values = [v.decode() for k, v in headers if k == name.encode()]
    assert len(values) == 1, headers
    return values[0]


async def test_rpm_up_to_the_limit_then_refused_until_the_window_ends(
    limiter: Limiter, clock: FakeClock
) -> None:
    scope = [ScopeLimit("key:abc", rpm=5, tpm=None)]
    remaining = []
    for _ in range(5):
        grant = await limiter.acquire(scope, 0)
        remaining.append(header(grant, "x-ratelimit-remaining-requests"))
        assert header(grant, "x-ratelimit-limit-requests") == "5"
    assert remaining == ["4", "3", "2", "1", "0"]
    clock.move(15)
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire(scope, 0)
    err = caught.value
    assert isinstance(err, RateLimited)
    assert (err.http_status, err.error_code, err.retryable) == (429, "rate_limit_exceeded", False)
    assert err.retry_after_s == 45
    assert err.message == (
        "Rate limit reached for requests per minute (RPM) on key:abc: limit 5, used 5, "
        "requested 1. Please try again in 45s."
    )
    assert err.headers == {
        "Retry-After": "45",
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "45s",
    }


async def test_the_next_window_starts_from_zero(limiter: Limiter, clock: FakeClock) -> None:
    scope = [ScopeLimit("key:abc", rpm=2, tpm=100)]
    await limiter.acquire(scope, 60)
    await limiter.acquire(scope, 40)
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire(scope, 0)
    clock.move(59.9)
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire(scope, 0)
    assert caught.value.headers["Retry-After"] == "1"
    clock.move(0.1)
    grant = await limiter.acquire(scope, 100)
    assert header(grant, "x-ratelimit-remaining-requests") == "1"
    assert header(grant, "x-ratelimit-remaining-tokens") == "0"
    assert header(grant, "x-ratelimit-reset-tokens") == "1m0s"
    assert grant.window == int(T0 // 60) + 1


async def test_each_refusal_says_which_limit_refused_it(limiter: Limiter) -> None:
    """``kind`` is the label of ``switchyard_limit_rejections`` (the alerts group by it)."""
    await limiter.acquire([ScopeLimit("key:r", rpm=1, tpm=None)], 0)
    with pytest.raises(RateLimitExceeded) as rpm:
        await limiter.acquire([ScopeLimit("key:r", rpm=1, tpm=None)], 0)
    await limiter.acquire([ScopeLimit("key:t", rpm=None, tpm=100)], 90)
    with pytest.raises(RateLimitExceeded) as tpm:
        await limiter.acquire([ScopeLimit("key:t", rpm=None, tpm=100)], 20)
    gate = ParallelGate()
    gate.enter("key:p", 1)
    with pytest.raises(RateLimitExceeded) as parallel:
        gate.enter("key:p", 1)
    assert [rpm.value.kind, tpm.value.kind, parallel.value.kind] == ["rpm", "tpm", "parallel"]


async def test_headers_take_the_strictest_scope_per_kind(limiter: Limiter) -> None:
    scopes = [ScopeLimit("key:a", rpm=10, tpm=1000), ScopeLimit("team:t", rpm=3, tpm=5000)]
    grant = await limiter.acquire(scopes, 100)
    assert grant.headers == [
        (b"x-ratelimit-limit-requests", b"3"),
        (b"x-ratelimit-remaining-requests", b"2"),
        (b"x-ratelimit-reset-requests", b"1m0s"),
        (b"x-ratelimit-limit-tokens", b"1000"),
        (b"x-ratelimit-remaining-tokens", b"900"),
        (b"x-ratelimit-reset-tokens", b"1m0s"),
    ]
    assert grant.reserved_tokens == 100 and grant.scopes == tuple(scopes)


async def test_only_the_limited_kinds_have_headers(limiter: Limiter, clock: FakeClock) -> None:
    clock.move(59.98)
    grant = await limiter.acquire([ScopeLimit("key:a", rpm=None, tpm=50)], 5)
    assert grant.headers == [
        (b"x-ratelimit-limit-tokens", b"50"),
        (b"x-ratelimit-remaining-tokens", b"45"),
        (b"x-ratelimit-reset-tokens", b"20ms"),
    ]


async def test_a_team_limit_reached_by_two_keys_together(limiter: Limiter) -> None:
    await limiter.acquire([KEY_A, TEAM], 0)
    await limiter.acquire([KEY_A, TEAM], 0)
    grant = await limiter.acquire([KEY_B, TEAM], 0)
    assert header(grant, "x-ratelimit-remaining-requests") == "0"
    assert header(grant, "x-ratelimit-limit-requests") == "3"
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire([KEY_B, TEAM], 0)
    assert "on team:t: limit 3, used 3," in caught.value.message
    assert caught.value.headers["x-ratelimit-limit-requests"] == "3"
    assert caught.value.headers["x-ratelimit-remaining-requests"] == "0"
    # The refused request did not count against key b either.
    snap = await limiter.snapshot([KEY_B])
    assert snap.requests == RateStatus("key:b", 10, 9, 60.0)
    assert snap.tokens is None


async def test_a_refused_request_consumes_nothing(limiter: Limiter) -> None:
    key = ScopeLimit("key:a", rpm=3, tpm=None)
    team = ScopeLimit("team:t", rpm=None, tpm=100)
    await limiter.acquire([key, team], 80)
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire([key, team], 30)
    assert caught.value.message.startswith(
        "Rate limit reached for tokens per minute (TPM) on team:t: limit 100, used 80, "
        "requested 30."
    )
    # Neither the key's request nor the team's tokens were taken by the refusal.
    await limiter.acquire([key, team], 20)
    grant = await limiter.acquire([key, team], 0)
    assert header(grant, "x-ratelimit-remaining-requests") == "0"
    assert header(grant, "x-ratelimit-remaining-tokens") == "0"


async def test_settling_lower_lets_more_through(limiter: Limiter) -> None:
    scope = [ScopeLimit("key:a", rpm=None, tpm=100)]
    grant = await limiter.acquire(scope, 60)
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire(scope, 80)
    await limiter.settle(grant, 10)
    grant = await limiter.acquire(scope, 80)
    assert header(grant, "x-ratelimit-remaining-tokens") == "10"


async def test_settling_higher_blocks(limiter: Limiter) -> None:
    scope = [ScopeLimit("key:a", rpm=None, tpm=100)]
    grant = await limiter.acquire(scope, 10)
    await limiter.settle(grant, 95)
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire(scope, 10)
    assert "limit 100, used 95, requested 10." in caught.value.message
    snap = await limiter.snapshot(scope)
    assert snap.tokens is not None and snap.tokens.remaining == 5


async def test_settle_never_takes_the_count_below_zero(limiter: Limiter) -> None:
    scope = [ScopeLimit("key:a", rpm=None, tpm=100)]
    grant = await limiter.acquire(scope, 50)
    await limiter.settle(grant, 0)
    await limiter.settle(grant, 0)  # settled twice: -50 would let 150 tokens through
    await limiter.acquire(scope, 100)
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire(scope, 40)


async def test_settle_of_a_past_window_leaves_the_current_one_alone(
    limiter: Limiter, clock: FakeClock
) -> None:
    scope = [ScopeLimit("key:a", rpm=None, tpm=100)]
    old = await limiter.acquire(scope, 10)
    clock.move(60)
    await limiter.acquire(scope, 10)
    await limiter.settle(old, 100)
    snap = await limiter.snapshot(scope)
    assert snap.tokens == RateStatus("key:a", 100, 90, 60.0)


async def test_redis_settle_after_the_window_expired_is_a_no_op(
    redis: tuple[Redis, str], clock: FakeClock
) -> None:
    client, prefix = redis
    limiter = RedisLimiter(client, prefix=prefix, clock=clock)
    grant = await limiter.acquire([ScopeLimit("key:a", rpm=None, tpm=100)], 10)
    key = f"{prefix}key:a:{grant.window}"
    assert await client.hgetall(key) == {b"r": b"1", b"t": b"10"}
    assert await client.ttl(key) == 120
    await client.delete(key)
    await limiter.settle(grant, 50)
    assert await client.exists(key) == 0


async def test_a_request_larger_than_the_tpm(limiter: Limiter) -> None:
    scopes = [ScopeLimit("key:a", rpm=5, tpm=None), ScopeLimit("team:t", rpm=None, tpm=100)]
    await limiter.acquire(scopes, 100)
    with pytest.raises(RateLimitExceeded) as caught:
        await limiter.acquire(scopes, 101)
    err = caught.value
    assert err.message.startswith(
        "Request too large for tokens per minute (TPM) on team:t: limit 100, requested 101."
    )
    assert "Retry-After" not in err.headers and err.headers["x-should-retry"] == "false"
    assert err.http_status == 429 and err.error_code == "rate_limit_exceeded"
    snap = await limiter.snapshot(scopes)
    assert snap.requests is not None and snap.requests.remaining == 4


async def test_concurrent_acquires_grant_exactly_the_limit(limiter: Limiter) -> None:
    scope = [ScopeLimit("key:a", rpm=10, tpm=None), ScopeLimit("team:t", rpm=None, tpm=10_000)]
    results = await asyncio.gather(
        *(limiter.acquire(scope, 7) for _ in range(50)), return_exceptions=True
    )
    grants = [r for r in results if isinstance(r, Grant)]
    refused = [r for r in results if isinstance(r, RateLimitExceeded)]
    assert (len(grants), len(refused)) == (10, 40)
    assert sorted(header(g, "x-ratelimit-remaining-requests") for g in grants) == [
        str(n) for n in range(10)
    ]
    snap = await limiter.snapshot(scope)
    assert snap.tokens == RateStatus("team:t", 10_000, 10_000 - 70, 60.0)


async def test_snapshot_consumes_nothing(limiter: Limiter, clock: FakeClock) -> None:
    scope = [ScopeLimit("key:a", rpm=2, tpm=10)]
    await limiter.acquire(scope, 4)
    clock.move(30)
    first = await limiter.snapshot(scope)
    assert first == await limiter.snapshot(scope)
    assert first.requests == RateStatus("key:a", 2, 1, 30.0)
    assert first.tokens == RateStatus("key:a", 10, 6, 30.0)
    grant = await limiter.acquire(scope, 6)
    assert header(grant, "x-ratelimit-remaining-tokens") == "0"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.0001, "1ms"), (1, "1s"), (11.2, "12s"), (60, "1m0s"), (63, "1m3s")],
)
def test_durations_are_written_like_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_parallel_gate_refuses_past_the_limit_until_one_leaves() -> None:
    gate = ParallelGate()
    gate.enter("key:a", 2)
    gate.enter("key:a", 2)
    gate.enter("key:b", 2)
    with pytest.raises(RateLimitExceeded) as caught:
        gate.enter("key:a", 2)
    assert "too many requests in flight" in caught.value.message
    assert caught.value.headers == {"Retry-After": "1"}
    assert gate.running("key:a") == 2
    gate.leave("key:a")
    gate.enter("key:a", 2)
    for _ in range(5):
        gate.enter("key:c", None)
    assert (gate.running("key:a"), gate.running("key:c")) == (2, 5)
    for scope in ("key:a", "key:a", "key:b", *["key:c"] * 5):
        gate.leave(scope)
    assert [gate.running(s) for s in ("key:a", "key:b", "key:c")] == [0, 0, 0]
    gate.enter("key:a", 1)
