"""The tenancy layer as the app uses it: authenticate, admit, account.

``guard`` runs on every ``/v1`` route and sets the request's ``Identity``; ``admit`` runs
once per model call (``Gateway`` and the media and audio routes); ``finish`` runs when
the request has ended (``RequestContextMiddleware``): it settles the token reservation on
the real usage, frees the parallel slot, adds the cost to the budgets and queues the
usage row. Per request that is a dict lookup, a few counter updates and a list append
in the steady state; the database sees only batched usage writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from adapters.base import Price
from proxy.context import RequestInfo, request_info
from proxy.errors import SwitchyardError
from proxy.metrics import Metrics
from proxy.router import Router
from proxy.settings import Settings
from proxy.state.records import UsageRecord
from proxy.tenancy.admission import Admission, check_extensions, check_model
from proxy.tenancy.authn import Authenticator
from proxy.tenancy.budget import SpendTracker
from proxy.tenancy.keys import KeyCache
from proxy.tenancy.limits import InProcessLimiter, Limiter, ParallelGate, RedisLimiter
from proxy.tenancy.usage import UsageRecorder

log = logging.getLogger("switchyard.tenancy")

REDIS_KEY_CACHE_TTL_S = 10.0
"""With Redis, changes are broadcast; the TTL (at least this, or ``key_cache_ttl_s`` when
longer) only covers a lost message."""

REDIS_MAX_CONNECTIONS = 100
"""Connections to Redis per process; more callers wait (``REDIS_POOL_TIMEOUT_S``)."""
REDIS_SOCKET_TIMEOUT_S = 2.0
"""A Redis command or connect that has not answered by then fails (the request: 503)."""
REDIS_POOL_TIMEOUT_S = 5.0

DEPENDENCY_CHECK_S = 1.0
"""Readiness checks the database and Redis at most this often, each within this long."""

_encode = msgspec.json.Encoder().encode


def prices_of(router: Router) -> dict[str, Price]:
    """Price by deployment label (what ``CallStats.deployment`` names), and by model name
    (for a request that failed before a deployment was chosen)."""
    prices: dict[str, Price] = {}
    for name, deployments in router.deployments.items():
        for deployment in deployments:
            price = deployment.adapter.config.price
            if price is not None:
                prices[deployment.label] = price
                prices.setdefault(name, price)
    return prices


class Tenancy:
    def __init__(
        self,
        *,
        store: Any,
        authenticator: Authenticator,
        limiter: Limiter,
        spend: SpendTracker,
        usage: UsageRecorder,
        metrics: Metrics,
        prices: dict[str, Price],
        count_tokens: Callable[[str, str], Awaitable[int]] | None = None,
        redis: Any = None,
    ) -> None:
        self.store = store
        self.redis = redis
        self._checked_at = -DEPENDENCY_CHECK_S
        self._unreachable: list[str] = []
        self.authenticator = authenticator
        self.cache: KeyCache = authenticator.cache
        self.limiter = limiter
        self.gate = ParallelGate()
        self.spend = spend
        self.usage = usage
        self.metrics = metrics
        self.prices = prices
        self.count_tokens = count_tokens
        self._tickets = 0
        self._accounting: set[int] = set()
        """Tickets of ``finish`` calls still running (see ``settled``)."""
        self._progress = asyncio.Event()
        self.routing: Any = None
        """The routing generations (``proxy.generation.Generations``), once the app has
        them: prices and token counts then come from the request's generation, so a
        reload changes them for new requests only."""

    @classmethod
    async def open(
        cls,
        settings: Settings,
        store: Any,
        router: Router,
        metrics: Metrics,
        stack: AsyncExitStack,
        *,
        jwt: Any = None,
        count_tokens: Callable[[str, str], Awaitable[int]] | None = None,
    ) -> Tenancy:
        config = settings.state
        cache = KeyCache(store.keys, store.teams, ttl_s=config.key_cache_ttl_s)
        stack.push_async_callback(cache.aclose)
        redis = None
        if config.redis_url:
            import redis.asyncio as redis_asyncio

            # A blocking pool: when every connection is busy a command waits for one.
            # redis-py's default pool raises "Too many connections" past 100, which a
            # busy replica reaches (each request may hold one for ``acquire`` while the
            # previous request on its connection still holds one for ``settle``).
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                config.redis_url,
                max_connections=REDIS_MAX_CONNECTIONS,
                timeout=REDIS_POOL_TIMEOUT_S,
                socket_timeout=REDIS_SOCKET_TIMEOUT_S,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
            )
            redis = redis_asyncio.Redis.from_pool(pool)
            stack.push_async_callback(redis.aclose)
            await redis.ping()
            # Its own connection, with no read timeout: a subscriber waits for messages.
            subscriber = redis_asyncio.Redis.from_url(
                config.redis_url, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S
            )
            stack.push_async_callback(subscriber.aclose)
            await cache.listen(
                subscriber,
                ttl_s=max(config.key_cache_ttl_s, REDIS_KEY_CACHE_TTL_S),
                publisher=redis,
            )
            stack.push_async_callback(cache.aclose)  # stop listening before it closes
        limiter: Limiter = RedisLimiter(redis) if redis is not None else InProcessLimiter()
        stack.push_async_callback(limiter.aclose)

        async def stored_spend(scope: str, since: float) -> float:
            try:
                await usage.flush()  # what this process has queued counts too
            except Exception:
                log.warning("usage rows could not be written before a budget was read")
            kind, _, ident = scope.partition(":")
            return float(
                await store.usage.spend(
                    team_id=ident if kind == "team" else None,
                    key_id=ident if kind == "key" else None,
                    since=since,
                )
            )

        usage = UsageRecorder(
            store.usage,
            interval_s=config.usage_flush_interval_s,
            max_rows=config.usage_flush_rows,
        )
        usage.start()
        stack.push_async_callback(usage.aclose)
        authenticator = Authenticator(
            master_key=settings.server.master_key,
            static_keys=settings.server.api_keys,
            cache=cache,
            jwt=jwt,
        )
        return cls(
            store=store,
            authenticator=authenticator,
            limiter=limiter,
            spend=SpendTracker(stored_spend, redis=redis),
            usage=usage,
            metrics=metrics,
            prices=prices_of(router),
            count_tokens=count_tokens,
            redis=redis,
        )

    async def unreachable(self) -> list[str]:
        """What the tenancy layer depends on and cannot reach now (the state database,
        Redis), checked at most once a second: readiness reasons."""
        now = time.monotonic()
        if now - self._checked_at < DEPENDENCY_CHECK_S:
            return self._unreachable
        self._checked_at = now
        found: list[str] = []
        checks = [("state database", self.store.ping)]
        if self.redis is not None:
            checks.append(("redis", self.redis.ping))
        for name, check in checks:
            try:
                async with asyncio.timeout(DEPENDENCY_CHECK_S):
                    await check()
            except Exception:
                found.append(f"{name} unreachable")
        self._unreachable = found
        return found

    @property
    def auth_required(self) -> bool:
        return self.authenticator.required

    async def guard(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        """Litestar guard on every ``/v1`` route: who is calling (or 401)."""
        info = request_info(connection.scope)
        if info.identity is None:
            info.identity = await self.authenticator.identify(info.presented_key())

    async def key_changed(self, what: str) -> None:
        await self.cache.changed(what)

    async def admit(
        self,
        info: RequestInfo,
        model: str,
        *,
        body: dict[str, Any] | None = None,
        extensions: Iterable[str] = (),
    ) -> None:
        """Let one model call through, or raise why not (see ``proxy.tenancy.admission``)."""
        identity = info.identity
        info.usage_model = model
        info.usage_body = body
        if identity is None:
            return
        plan = identity.plan
        if not plan.checks_anything:
            return
        try:
            if plan.model_patterns:
                check_model(identity, model)
            check_extensions(identity, extensions)
            if plan.budgets:
                await self.spend.check(plan.budgets)
            admission = Admission(identity, model)
            if plan.parallel is not None:
                self.gate.enter(*plan.parallel)
                admission.parallel_scope = plan.parallel[0]
            if plan.rate:
                tokens = await self._estimate(model, body) if plan.wants_tokens else 0
                try:
                    admission.grant = await self.limiter.acquire(plan.rate, tokens)
                except BaseException:
                    if admission.parallel_scope is not None:
                        self.gate.leave(admission.parallel_scope)
                    raise
        except SwitchyardError as refused:
            self.metrics.rejected(identity.team_id, _rejection_kind(refused))
            raise
        info.admission = admission

    def permit_extension(self, info: RequestInfo, name: str) -> None:
        """Refuse an extension the caller may not use before it does any work (a RAG
        lookup, a session load): ``admit`` checks again once the model is known."""
        identity = info.identity
        if identity is None or not identity.scopes:
            return
        try:
            check_extensions(identity, (name,))
        except SwitchyardError as refused:
            self.metrics.rejected(identity.team_id, _rejection_kind(refused))
            raise

    async def _estimate(self, model: str, body: dict[str, Any] | None) -> int:
        """Tokens to reserve: the prompt's (by the model's tokenizer when it is local,
        else about four characters a token) plus the completion limit it asks for."""
        if not body:
            return 0
        text = ""
        for field in ("messages", "prompt", "input"):
            if field in body:
                text = _encode(body[field]).decode()
                break
        count_tokens = (
            self.routing.pinned().count_tokens if self.routing is not None else self.count_tokens
        )
        if count_tokens is not None:
            prompt = await count_tokens(model, text)
        else:
            prompt = len(text) // 4 + 1
        completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        return prompt + (completion if isinstance(completion, int) else 0)

    async def finish(
        self, info: RequestInfo, status: int, total_s: float, ttft_s: float | None
    ) -> None:
        """The request has ended: account for it (see the module docstring)."""
        ticket = self._tickets
        self._tickets += 1
        self._accounting.add(ticket)
        try:
            await self._finish(info, status, total_s, ttft_s)
        finally:
            self._accounting.discard(ticket)
            self._progress.set()
            self._progress = asyncio.Event()

    async def settled(self, timeout_s: float = 2.0) -> None:
        """Wait (at most ``timeout_s``) until the requests that have ended are accounted.

        ``finish`` runs after the response's last byte was sent, and awaits Redis and the
        store: a client that asks ``/me`` or the usage API right after its answer would
        otherwise race it and not see its own request."""
        horizon = self._tickets
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while any(t < horizon for t in self._accounting):
                    await self._progress.wait()

    async def _finish(
        self, info: RequestInfo, status: int, total_s: float, ttft_s: float | None
    ) -> None:
        identity = info.identity
        if identity is None or info.usage_model is None:
            return
        stats = info.stats
        cached = info.cache == "hit"
        prompt_tokens, completion_tokens = stats.prompt_tokens, stats.completion_tokens
        if (
            not (prompt_tokens or completion_tokens)
            and info.stream
            and info.events_sent
            and not cached
        ):
            prompt_tokens, completion_tokens = _estimated_usage(info)
        prices = self.routing.pinned().prices if self.routing is not None else self.prices
        price = prices.get(stats.deployment) or prices.get(info.model)
        cost = price.cost(prompt_tokens, completion_tokens) if price and not cached else 0.0
        admission = info.admission
        if admission is not None:
            if admission.parallel_scope is not None:
                self.gate.leave(admission.parallel_scope)
            if admission.grant is not None:
                used = prompt_tokens + completion_tokens
                try:
                    await self.limiter.settle(admission.grant, used)
                except Exception:
                    log.exception("settling a token reservation failed")
        if cost > 0 and identity.scopes:
            try:
                await self.spend.add(identity.plan.spend, cost)
            except Exception:
                log.exception("adding spend failed")
        self.metrics.team_usage(identity.team_id, status, prompt_tokens, completion_tokens, cost)
        self.usage.record(
            UsageRecord(
                time=time.time(),
                request_id=info.request_id,
                key_id=identity.key_id,
                team_id=identity.team_id,
                model=info.usage_model,
                deployment=stats.deployment,
                route=info.route,
                status=status,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost,
                duration_ms=round(total_s * 1000, 3),
                upstream_ms=round(stats.upstream_s * 1000, 3),
                ttft_ms=None if ttft_s is None else round(ttft_s * 1000, 3),
                cached=cached,
            )
        )


def jwt_verifier(settings: Settings, http: Any) -> Any:
    """The JWT verifier when ``auth.jwt`` is configured, else ``None``."""
    config = settings.auth.jwt
    if config is None:
        return None
    from proxy.tenancy.jwt import JwtVerifier

    return JwtVerifier(config, http)


def _estimated_usage(info: RequestInfo) -> tuple[int, int]:
    """What a stream that ended without its usage (the client left before the usage
    chunk, or the upstream sends none) is charged: its prompt at about four characters a
    token, and a token per event the client was sent, so that leaving early is not free."""
    body = info.usage_body or {}
    prompt = next((body[f] for f in ("messages", "prompt", "input") if f in body), "")
    return len(_encode(prompt)) // 4 + 1, info.events_sent


def _rejection_kind(error: SwitchyardError) -> str:
    return getattr(error, "kind", None) or error.error_code or "other"
