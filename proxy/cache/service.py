"""``ResponseCache``: what the gateway calls for a model that has ``cache:`` configured.

Per request: read ``X-Switchyard-Cache`` (``use``, the default; ``refresh``: ask the
model and store the new answer; ``bypass``: neither read nor write), look the key up
(then, with ``semantic``, the nearest cached question), and either answer from the
entry (whole, or replayed as a stream) or call the model and store its answer when it
is complete. Every answer says ``x-switchyard-cache: hit | miss | bypass``.

The backend failing (Redis away) is a miss and a warning, never an error: the cache can
only make a request cheaper, not fail it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Response

from adapters.base import CallStats, RawJSON
from proxy.cache import semantic
from proxy.cache.backends import CacheBackend, ModelStats
from proxy.cache.config import ModelCacheConfig
from proxy.cache.keys import cache_key
from proxy.cache.replay import REPLAYS, Assembler, cacheable, replay
from proxy.context import RequestInfo, raw_header
from proxy.errors import InvalidRequest, shown
from proxy.metrics import Metrics
from proxy.responses import BytesResponse
from proxy.streaming import sse_response

log = logging.getLogger("switchyard.cache")

HEADER = "X-Switchyard-Cache"
MODES = ("use", "refresh", "bypass")
CACHE_ROUTES = frozenset({"chat", "completions", "embeddings"})

_encode = msgspec.json.Encoder().encode

Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]


def read_mode(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's ``X-Switchyard-Cache`` (``use`` when absent), or a 400 naming it."""
    raw = raw_header(headers, b"x-switchyard-cache")
    if raw is None:
        return "use"
    mode = raw.decode("latin-1").strip().lower()
    if mode not in MODES:
        raise InvalidRequest(
            f"{HEADER} must be one of {', '.join(MODES)}, not '{shown(raw.decode('latin-1'))}'.",
            param=HEADER,
        )
    return mode


@dataclass(slots=True)
class Lookup:
    """One request's cache lookup: what was found, and where its answer is to be kept."""

    config: ModelCacheConfig
    scope: tuple[str, str]
    mode: str
    result: str = "miss"
    key: str = ""
    """Empty after ``bypass``: the answer is not stored."""
    vector: bytes | None = None
    content: bytes | None = None
    """The cached answer, on a hit."""
    similarity: float | None = None
    """On a semantic hit."""

    @property
    def headers(self) -> dict[str, str]:
        headers = {"x-switchyard-cache": self.result}
        if self.similarity is not None:
            headers["x-switchyard-cache-similarity"] = f"{self.similarity:.4f}"
        return headers


class ResponseCache:
    def __init__(
        self,
        backend: CacheBackend,
        metrics: Metrics,
        models: dict[str, ModelCacheConfig],
        embedders: dict[str, Embedder] | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.models = models
        """Cache-enabled model names: the gateway's one lookup per request."""
        self.embedders = embedders or {}
        """By embedding model name, for the models with ``semantic``."""
        self._counters: dict[tuple[str, str], Any] = {}

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _count(self, model: str, result: str) -> None:
        counter = self._counters.get((model, result))
        if counter is None:
            counter = self._counters[model, result] = self.metrics.cache_requests.labels(
                model, result
            )
        counter.inc()

    async def _safely(self, what: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except Exception as exc:
            log.warning(
                "response cache %s failed (%s): treated as a miss", what, type(exc).__name__
            )
            return None

    async def lookup(
        self,
        info: RequestInfo,
        route: str,
        model: str,
        body: dict[str, Any],
        extensions: Any = (),
        activation: Any = None,
    ) -> Lookup | None:
        """What the cache holds for this request (``None``: ``model`` is not cached).

        ``extensions`` and ``activation``: the active extensions and what the request
        asked of them, part of the key (a persona's answer is not the plain model's)."""
        config = self.models.get(model)
        if config is None:
            return None
        mode = read_mode(info.headers)
        found = Lookup(config, (info.team_id, model), mode)
        if mode == "bypass":
            info.cache = found.result = "bypass"
            self._count(model, "bypass")
            return found
        found.key = cache_key(
            team_id=info.team_id,
            route=route,
            model=model,
            body=body,
            extensions=extensions,
            activation=activation,
        )
        wants_vector = config.semantic is not None and route in REPLAYS
        if mode == "use":
            content = await self._safely("lookup", self.backend.get(found.key))
            if content is None and wants_vector:
                found.vector = await self._vector(
                    route, model, body, config, extensions, activation
                )
                if found.vector is not None:
                    content, found.similarity = await self._nearest(
                        found.scope, found.vector, config
                    )
            if content is not None:
                found.content = content
                info.cache = found.result = "hit"
                self._count(model, "semantic_hit" if found.similarity is not None else "hit")
                await self._safely("count", self.backend.count(model, "hit"))
                return found
        elif wants_vector:
            found.vector = await self._vector(route, model, body, config, extensions, activation)
        info.cache = found.result = "miss"
        self._count(model, "miss" if mode == "use" else "refresh")
        await self._safely("count", self.backend.count(model, "miss"))
        return found

    async def store(self, found: Lookup, content: bytes) -> None:
        """Keep a complete answer (an incomplete one, or after ``bypass``: nothing)."""
        if found.key and cacheable(content):
            await self._safely(
                "store",
                self.backend.put(found.scope, found.key, content, found.config.ttl_s, found.vector),
            )

    async def storing(
        self, found: Lookup, route: str, stats: CallStats, items: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """Pass ``items`` through, keeping them; store the answer once the stream ended
        (a stream that failed or was left by its client stores nothing)."""
        assembler = Assembler(route)
        keep = assembler.items.append
        async with aclosing(items):  # type: ignore[type-var]
            async for item in items:
                keep(item)
                yield item
        if found.key:
            content = assembler.answer(stats)
            if content is not None:
                await self.store(found, content)

    async def serve(
        self,
        route: str,
        info: RequestInfo,
        model: str,
        body: dict[str, Any],
        *,
        streaming: bool,
        include_usage: bool,
        call: Callable[[], Awaitable[Any]],
        open_stream: Callable[[], Awaitable[AsyncIterator[Any]]],
    ) -> Response[Any]:
        """Answer a request for a cached model (no extensions): from the cache, or from
        the model, storing its answer."""
        found = await self.lookup(info, route, model, body)
        assert found is not None
        headers = found.headers
        if found.content is not None:
            if streaming:
                return sse_response(replay(route, found.content, include_usage), headers)
            return BytesResponse(found.content, headers=headers)
        if streaming:
            items = await open_stream()
            if found.key:
                items = self.storing(found, route, info.stats, items)
            return sse_response(items, headers)
        result = await call()
        content = result.content if isinstance(result, RawJSON) else _encode(result)
        await self.store(found, content)
        return BytesResponse(content, headers=headers)

    async def _vector(
        self,
        route: str,
        model: str,
        body: dict[str, Any],
        config: ModelCacheConfig,
        extensions: Any,
        activation: Any,
    ) -> bytes | None:
        assert config.semantic is not None
        asked = semantic.question(route, body)
        embed = self.embedders.get(config.semantic.embedding_model)
        if asked is None or embed is None:
            return None
        text, rest = asked
        try:
            (embedding,) = await embed([text])
        except Exception as exc:
            log.warning("semantic cache: embedding failed (%s)", type(exc).__name__)
            return None
        used = [sorted(extensions), msgspec.to_builtins(activation)]
        context = semantic.context_digest(route, model, rest, used)
        return semantic.stored_vector(context, embedding)

    async def _nearest(
        self, scope: tuple[str, str], vector: bytes, config: ModelCacheConfig
    ) -> tuple[bytes | None, float | None]:
        assert config.semantic is not None
        candidates = await self._safely(
            "semantic lookup", self.backend.vectors(scope, config.semantic.max_candidates)
        )
        match = semantic.best_match(vector, candidates or [])
        if match is None or match[1] < config.semantic.threshold:
            return None, None
        content = await self._safely("lookup", self.backend.get(match[0]))
        return (content, match[1]) if content is not None else (None, None)

    async def stats(self) -> dict[str, ModelStats]:
        return await self.backend.stats()

    async def flush(self, *, team: str | None, model: str | None) -> int:
        return await self.backend.flush(team=team, model=model)


@dataclass(slots=True)
class BoundCache:
    """The cache for one chat request on the extensions' path (``ChatCall.cache``)."""

    cache: ResponseCache
    info: RequestInfo

    async def lookup(
        self, model: str, body: dict[str, Any], extensions: Any, activation: Any
    ) -> Lookup | None:
        return await self.cache.lookup(self.info, "chat", model, body, extensions, activation)

    async def store(self, found: Lookup, content: bytes) -> None:
        await self.cache.store(found, content)

    def storing(self, found: Lookup, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return self.cache.storing(found, "chat", self.info.stats, items)


def response_cache_backend(
    settings: Any, *, redis_prefix: str = "switchyard:cache:"
) -> Callable[[Any], CacheBackend]:
    """How to make the app's one cache store, given the tenancy layer's Redis client (or
    ``None``): in Redis when there is one, else in this process, bounded by
    ``cache.max_bytes``. It outlives configuration reloads; only the models that use it
    change (``open_cache``)."""

    def backend(redis: Any) -> CacheBackend:
        if redis is not None:
            from proxy.cache.backends import RedisBackend

            return RedisBackend(redis, redis_prefix)
        from proxy.cache.backends import MemoryBackend

        return MemoryBackend(settings.cache.max_bytes)

    return backend


def open_cache(
    settings: Any,
    router: Any,
    metrics: Metrics,
    backend: CacheBackend,
    make_embedder: Callable[[Any, str], Embedder],
) -> ResponseCache | None:
    """The cache of one routing generation: the models with ``cache:`` in ``settings``
    over the app's ``backend``; ``None`` when no model has one."""
    models: dict[str, ModelCacheConfig] = {}
    for config in settings.models:
        if config.cache is not None:
            models.setdefault(config.name, config.cache)
    if not models:
        return None
    wanted = {c.semantic.embedding_model for c in models.values() if c.semantic is not None}
    embedders = {name: make_embedder(router, name) for name in wanted}
    return ResponseCache(backend, metrics, models, embedders)
