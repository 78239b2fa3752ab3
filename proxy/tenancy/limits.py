"""Per-key and per-team rate limits: RPM and TPM in fixed windows, and requests in flight.

Windows are fixed 60-second windows aligned to epoch minutes (``window = int(now // 60)``),
counted per (scope, window) for requests and tokens. ``acquire`` checks every scope at
once and consumes in all of them only when all pass, so a refused request never counts;
it reserves the caller's token estimate, and ``settle`` corrects it by the real count
once the answer is known. The window is always computed from the caller's clock (also
for Redis), so replicas with the same clock agree and tests can move time.

Two backends implement ``Limiter``: ``InProcessLimiter`` (one replica, plain dicts: the
event loop is single-threaded and ``acquire`` never awaits between check and consume)
and ``RedisLimiter`` (every replica shares the counters; one Lua script per acquire,
one per settle).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from proxy.errors import RateLimitExceeded
from proxy.tenancy.redis_batch import ScriptBatcher

if TYPE_CHECKING:
    from redis.asyncio import Redis

WINDOW_S = 60
#: How long Redis keeps a window's counters: the window itself plus a minute for the
#: ``settle`` of requests that began in it.
REDIS_TTL_S = 120


@dataclass(frozen=True, slots=True)
class ScopeLimit:
    scope: str
    """``key:<id>`` or ``team:<id>``."""
    rpm: int | None
    tpm: int | None


@dataclass(slots=True)
class Grant:
    """What ``acquire`` returns; the caller hands it to ``settle`` with the real count."""

    reserved_tokens: int
    window: int
    """The epoch minute the request was counted in."""
    scopes: tuple[ScopeLimit, ...]
    headers: list[tuple[bytes, bytes]]
    """The ``x-ratelimit-*`` response headers, as of this request."""


@dataclass(frozen=True, slots=True)
class RateStatus:
    """One kind (requests or tokens) as its strictest scope sees it."""

    scope: str
    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class RateSnapshot:
    """The caller's standing in the current window (``None``: no scope limits that kind)."""

    requests: RateStatus | None
    tokens: RateStatus | None


class Limiter(Protocol):
    async def acquire(self, scopes: Sequence[ScopeLimit], tokens: int) -> Grant: ...

    async def settle(self, grant: Grant, actual_tokens: int) -> None: ...

    async def snapshot(self, scopes: Sequence[ScopeLimit]) -> RateSnapshot: ...

    async def aclose(self) -> None: ...


def format_duration(seconds: float) -> str:
    """A wait as OpenAI writes it (Go's duration style): ``20ms``, ``12s``, ``1m3s``.

    Whole seconds are rounded up (never a fraction), so waiting that long is enough.
    """
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


_RESET_WHOLE = [format_duration(s).encode() for s in range(WINDOW_S + 1)]
H_LIMIT_REQ = b"x-ratelimit-limit-requests"
H_REMAINING_REQ = b"x-ratelimit-remaining-requests"
H_RESET_REQ = b"x-ratelimit-reset-requests"
H_LIMIT_TOK = b"x-ratelimit-limit-tokens"
H_REMAINING_TOK = b"x-ratelimit-remaining-tokens"
H_RESET_TOK = b"x-ratelimit-reset-tokens"


def _reset_value(reset_s: float) -> bytes:
    if 1 <= reset_s <= WINDOW_S:
        return _RESET_WHOLE[math.ceil(reset_s)]
    return format_duration(reset_s).encode()


def _strictest(
    scopes: Sequence[ScopeLimit], used: Sequence[int]
) -> tuple[int, int, int, int, int, int]:
    """``(index, limit, remaining)`` of the scope with the least RPM left, then of the
    one with the least TPM left (index ``-1``: no scope limits that kind). ``used`` is
    flat: requests then tokens of each scope, in order."""
    r_at = r_limit = r_left = t_at = t_limit = t_left = -1
    for i, s in enumerate(scopes):
        if s.rpm is not None:
            left = s.rpm - used[2 * i]
            if r_at < 0 or left < r_left:
                r_at, r_limit, r_left = i, s.rpm, left
        if s.tpm is not None:
            left = s.tpm - used[2 * i + 1]
            if t_at < 0 or left < t_left:
                t_at, t_limit, t_left = i, s.tpm, left
    return r_at, r_limit, max(0, r_left), t_at, t_limit, max(0, t_left)


def rate_headers(
    scopes: Sequence[ScopeLimit], used: Sequence[int], reset_s: float
) -> list[tuple[bytes, bytes]]:
    """The ``x-ratelimit-*`` headers: per limited kind, the limit and remaining count of
    the strictest scope (the least left), and the time until the window ends."""
    r_at, r_limit, r_left, t_at, t_limit, t_left = _strictest(scopes, used)
    headers: list[tuple[bytes, bytes]] = []
    reset = _reset_value(reset_s) if r_at >= 0 or t_at >= 0 else b""
    if r_at >= 0:
        headers += (
            (H_LIMIT_REQ, b"%d" % r_limit),
            (H_REMAINING_REQ, b"%d" % r_left),
            (H_RESET_REQ, reset),
        )
    if t_at >= 0:
        headers += (
            (H_LIMIT_TOK, b"%d" % t_limit),
            (H_REMAINING_TOK, b"%d" % t_left),
            (H_RESET_TOK, reset),
        )
    return headers


def rate_snapshot(
    scopes: Sequence[ScopeLimit], used: Sequence[int], reset_s: float
) -> RateSnapshot:
    r_at, r_limit, r_left, t_at, t_limit, t_left = _strictest(scopes, used)
    return RateSnapshot(
        requests=RateStatus(scopes[r_at].scope, r_limit, r_left, reset_s) if r_at >= 0 else None,
        tokens=RateStatus(scopes[t_at].scope, t_limit, t_left, reset_s) if t_at >= 0 else None,
    )


def _error_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in headers}


def check_request_size(scopes: Sequence[ScopeLimit], tokens: int, reset_s: float) -> None:
    """Refuse a request whose own estimate is over some scope's TPM: no window fits it,
    so there is no point in retrying (``x-should-retry: false``, no ``Retry-After``)."""
    for i, s in enumerate(scopes):
        if s.tpm is not None and tokens > s.tpm:
            headers = _error_headers(rate_headers(scopes, [0] * (2 * len(scopes)), reset_s))
            headers["x-should-retry"] = "false"
            raise RateLimitExceeded(
                f"Request too large for tokens per minute (TPM) on {scopes[i].scope}: "
                f"limit {s.tpm}, requested {tokens}. Reduce the input or max_tokens "
                f"to run successfully.",
                kind="tpm",
                headers=headers,
            )


def refusal(
    scopes: Sequence[ScopeLimit], used: Sequence[int], at: int, tokens: int, reset_s: float
) -> RateLimitExceeded:
    """The error for scope ``at`` failing its check (``used``: the counts before this
    request, which was not counted)."""
    s = scopes[at]
    wait = max(1, math.ceil(reset_s))
    if s.rpm is not None and used[2 * at] + 1 > s.rpm:
        what, limit, now_used, asked = "requests per minute (RPM)", s.rpm, used[2 * at], 1
        kind = "rpm"
    else:
        what, now_used, asked = "tokens per minute (TPM)", used[2 * at + 1], tokens
        limit, kind = s.tpm or 0, "tpm"
    return RateLimitExceeded(
        f"Rate limit reached for {what} on {s.scope}: limit {limit}, used {now_used}, "
        f"requested {asked}. Please try again in {format_duration(wait)}.",
        kind=kind,
        retry_after_s=wait,
        headers=_error_headers(rate_headers(scopes, used, reset_s)),
    )


class _Counter:
    __slots__ = ("requests", "tokens", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.requests = 0
        self.tokens = 0


class InProcessLimiter:
    """Counters in this process: right for a single replica, and free of I/O.

    One counter per scope holds only the current window (a new window starts it at
    zero), so a ``settle`` for a past window is a no-op. Counters of scopes not seen for
    two windows are dropped once a minute.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counters: dict[str, _Counter] = {}
        self._window = 0

    def _roll(self, window: int) -> None:
        self._window = window
        stale = [k for k, c in self._counters.items() if c.window < window - 1]
        for k in stale:
            del self._counters[k]

    def _counter(self, scope: str, window: int) -> _Counter:
        c = self._counters.get(scope)
        if c is None:
            c = self._counters[scope] = _Counter(window)
        elif c.window != window:
            c.window, c.requests, c.tokens = window, 0, 0
        return c

    async def acquire(self, scopes: Sequence[ScopeLimit], tokens: int) -> Grant:
        now = self._clock()
        window = int(now // WINDOW_S)
        reset_s = (window + 1) * WINDOW_S - now
        if window != self._window:
            self._roll(window)
        check_request_size(scopes, tokens, reset_s)
        counters = [self._counter(s.scope, window) for s in scopes]
        for i, s in enumerate(scopes):
            c = counters[i]
            if (s.rpm is not None and c.requests + 1 > s.rpm) or (
                s.tpm is not None and c.tokens + tokens > s.tpm
            ):
                used = [n for c in counters for n in (c.requests, c.tokens)]
                raise refusal(scopes, used, i, tokens, reset_s)
        for c in counters:
            c.requests += 1
            c.tokens += tokens
        used = [n for c in counters for n in (c.requests, c.tokens)]
        return Grant(tokens, window, tuple(scopes), rate_headers(scopes, used, reset_s))

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        delta = actual_tokens - grant.reserved_tokens
        if not delta:
            return
        for s in grant.scopes:
            c = self._counters.get(s.scope)
            if c is not None and c.window == grant.window:
                c.tokens = max(0, c.tokens + delta)

    async def snapshot(self, scopes: Sequence[ScopeLimit]) -> RateSnapshot:
        now = self._clock()
        window = int(now // WINDOW_S)
        used: list[int] = []
        for s in scopes:
            c = self._counters.get(s.scope)
            used += (c.requests, c.tokens) if c is not None and c.window == window else (0, 0)
        return rate_snapshot(scopes, used, (window + 1) * WINDOW_S - now)

    async def aclose(self) -> None:
        self._counters.clear()


# KEYS: one counter hash per scope for this window (fields r: requests, t: tokens).
# ARGV: tokens, ttl, then rpm and tpm of each scope (-1: no limit).
# Returns {0, r1, t1, ...} after consuming everywhere, or {i, r1, t1, ...} (the counts
# before, nothing consumed) when scope i failed.
_ACQUIRE = """
local tokens = tonumber(ARGV[1])
local out = {0}
local failed = 0
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'r', 't')
  local r = tonumber(v[1]) or 0
  local t = tonumber(v[2]) or 0
  out[2 * i] = r
  out[2 * i + 1] = t
  if failed == 0 then
    local rpm = tonumber(ARGV[2 * i + 1])
    local tpm = tonumber(ARGV[2 * i + 2])
    if (rpm >= 0 and r + 1 > rpm) or (tpm >= 0 and t + tokens > tpm) then
      failed = i
    end
  end
end
if failed > 0 then
  out[1] = failed
  return out
end
for i = 1, #KEYS do
  out[2 * i] = redis.call('HINCRBY', KEYS[i], 'r', 1)
  out[2 * i + 1] = redis.call('HINCRBY', KEYS[i], 't', tokens)
  if out[2 * i] == 1 then
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  end
end
return out
"""

# KEYS: the counter hashes of a grant's window; ARGV: the token correction. A window
# whose keys are gone stays gone; a count never goes below zero.
_SETTLE = """
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('HINCRBY', KEYS[i], 't', delta) < 0 then
      redis.call('HSET', KEYS[i], 't', 0)
    end
  end
end
return 0
"""


class RedisLimiter:
    """Counters in Redis, shared by every replica: one hash per (scope, window),
    ``<prefix><scope>:<window>``, expiring ``REDIS_TTL_S`` after its first request.

    Calls of concurrent requests share round trips (``ScriptBatcher``); a snapshot
    reads after the calls queued before it.

    The scripts touch several keys, so on Redis Cluster the scopes of one request would
    need one hash slot; this targets a single Redis (or a primary with replicas).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "switchyard:rl:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)
        self._batch = ScriptBatcher(redis)

    def _keys(self, scopes: Sequence[ScopeLimit], window: int) -> list[str]:
        tail = f":{window}"
        return [self._prefix + s.scope + tail for s in scopes]

    async def acquire(self, scopes: Sequence[ScopeLimit], tokens: int) -> Grant:
        now = self._clock()
        window = int(now // WINDOW_S)
        reset_s = (window + 1) * WINDOW_S - now
        check_request_size(scopes, tokens, reset_s)
        args: list[int] = [tokens, REDIS_TTL_S]
        for s in scopes:
            args += (-1 if s.rpm is None else s.rpm, -1 if s.tpm is None else s.tpm)
        out = await self._batch.call(self._acquire, self._keys(scopes, window), args)
        used = [int(n) for n in out[1:]]
        if out[0]:
            raise refusal(scopes, used, int(out[0]) - 1, tokens, reset_s)
        return Grant(tokens, window, tuple(scopes), rate_headers(scopes, used, reset_s))

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        delta = actual_tokens - grant.reserved_tokens
        if delta and grant.scopes:
            await self._batch.call(self._settle, self._keys(grant.scopes, grant.window), [delta])

    async def snapshot(self, scopes: Sequence[ScopeLimit]) -> RateSnapshot:
        await self._batch.drain()
        now = self._clock()
        window = int(now // WINDOW_S)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys(scopes, window):
                pipe.hmget(key, ["r", "t"])
            rows = await pipe.execute()
        used = [int(v or 0) for row in rows for v in row]
        return rate_snapshot(scopes, used, (window + 1) * WINDOW_S - now)

    async def aclose(self) -> None:
        """Lets queued calls finish; the Redis client belongs to the caller (the app's
        lifespan), which closes it."""
        await self._batch.drain()


class ParallelGate:
    """Requests in flight per scope (a key's ``max_parallel``), counted in this process.

    Deliberately per replica: an in-flight count must be given back when the request
    ends, and a replica that dies mid-request would leave a shared (Redis) count
    raised for good. With N replicas behind a balancer a key may run up to N times its
    limit; the count itself is exact and costs a dict lookup.
    """

    def __init__(self) -> None:
        self._running: dict[str, int] = {}

    def enter(self, scope: str, limit: int | None) -> None:
        """Count one more request for ``scope``, or refuse when ``limit`` already run.
        Every ``enter`` that returns must be paired with one ``leave``."""
        running = self._running.get(scope, 0)
        if limit is not None and running >= limit:
            raise RateLimitExceeded(
                f"Rate limit reached on {scope}: too many requests in flight "
                f"(limit {limit}). Please try again in 1s.",
                kind="parallel",
                retry_after_s=1,
            )
        self._running[scope] = running + 1

    def leave(self, scope: str) -> None:
        running = self._running.get(scope, 0) - 1
        if running > 0:
            self._running[scope] = running
        else:
            self._running.pop(scope, None)

    def running(self, scope: str) -> int:
        return self._running.get(scope, 0)
