"""Building what the app owns, in dependency order, with its cleanup on one exit stack.

The state store and the upstream HTTP client first, then the first routing generation
(adapters and the router), the tenancy layer, then the extensions and the gateway of
that generation (``proxy.generation``). Everything is closed in reverse order when the
server stops, or when start-up fails halfway. A configuration reload
(``proxy.reload``) builds later generations with ``build_generation``, lending them the
same long-lived parts (``Base``).
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters.base import Adapter, Resources, registered_adapters
from extensions.base import Extension, ExtensionServices
from extensions.pipeline import ExtensionPipeline
from extensions.services import make_context_window, make_embedder, make_token_counter
from proxy.app_state import AppState
from proxy.cache.service import open_cache, response_cache_backend
from proxy.cooldowns import SharedCooldowns, share_cooldowns
from proxy.gateway import Gateway
from proxy.generation import Generation, Generations
from proxy.http_client import build_http_client, build_json_transport
from proxy.media import MediaServices
from proxy.metrics import Metrics
from proxy.router import Deployment, Router
from proxy.schemas.models import Model
from proxy.settings import Settings
from proxy.state import open_state
from proxy.tenancy.service import Tenancy, jwt_verifier, prices_of

log = logging.getLogger("switchyard.app")

_encode = msgspec.json.Encoder().encode


async def _closing(label: str, close: Any) -> None:
    try:
        await close()
    except Exception:
        log.exception("closing %s failed", label)


@dataclass(slots=True)
class Base:
    """What lives as long as the app and every routing generation borrows."""

    metrics: Metrics
    resources: Resources
    store: Any
    extension_classes: dict[str, type[Extension]]
    tenancy: Any = None
    cache_backend: Any = None
    """The response cache's store (``proxy.cache``), kept across reloads."""
    cooldowns: SharedCooldowns | None = None
    """Cooldowns shared over Redis, when configured; each generation's router joins."""


def fingerprint(config: Any) -> bytes:
    """Equal for two model entries that build the same adapter."""
    return _encode(config)


async def build_router(
    settings: Settings, base: Base, previous: Generation | None = None
) -> tuple[Router, list[Adapter]]:
    """Adapters and the router for ``settings``. A deployment whose entry is unchanged
    since ``previous`` is carried over (its adapter, health and cooldown) instead of
    built again; only new adapters are started."""
    classes = registered_adapters()
    carried: dict[bytes, list[Deployment]] = {}
    for deployment in previous.deployments() if previous else ():
        carried.setdefault(fingerprint(deployment.adapter.config), []).append(deployment)
    resources = Resources(
        settings=settings,
        http=base.resources.http,
        upstream=base.resources.upstream,
        extra=base.resources.extra,
    )
    deployments: dict[str, list[Deployment]] = {}
    adapters: list[Adapter] = []
    fresh: list[Adapter] = []
    try:
        for config in settings.models:
            same = carried.get(fingerprint(config))
            if same:
                deployment = same.pop(0)
            else:
                adapter = classes[config.adapter](config, resources)
                fresh.append(adapter)
                deployment = Deployment(adapter, health_window=settings.server.health_window)
            adapters.append(deployment.adapter)
            deployments.setdefault(config.name, []).append(deployment)
        for adapter in fresh:
            await adapter.start()
    except BaseException:
        for adapter in fresh:
            await _closing(adapter.label, adapter.aclose)
        raise
    router = Router(
        deployments,
        {m.name: m.fallbacks for m in settings.models if m.fallbacks},
        cooldown_s=settings.server.cooldown_s,
        max_retry_after_s=settings.server.max_retry_after_s,
        metrics=base.metrics,
    )
    router.start_probes()
    return router, adapters


def model_cards(
    settings: Settings,
    extensions: list[Extension],
    previous: list[Model] = (),  # type: ignore[assignment]
) -> list[Model]:
    started = int(time.time())
    created = {card.id: card.created for card in previous}
    owners = {m.name: m.adapter for m in reversed(settings.models)}
    cards = [
        Model(id=name, created=created.get(name, started), owned_by=owners[name])
        for name in settings.model_names()
    ]
    for extension in extensions:
        cards += [
            Model(id=i, created=created.get(i, started), owned_by="switchyard")
            for i in extension.model_ids()
        ]
    return cards


async def build_generation(
    number: int,
    settings: Settings,
    base: Base,
    router: Router,
    adapters: list[Adapter],
    previous: Generation | None = None,
) -> Generation:
    """The extensions, gateway and model list over ``router``. An extension whose
    ``keep_on_reload`` says so is carried over from ``previous`` (lent this generation's
    services); the others are built and started again."""
    count_tokens = make_token_counter(router)
    services = ExtensionServices(
        settings=settings,
        router=router,
        http=base.resources.http,
        metrics=base.metrics,
        count_tokens=count_tokens,
        context_window=make_context_window(router),
        store=base.store,
    )
    extensions = services.extensions
    fresh: list[Extension] = []
    kept: list[Extension] = []
    ordered = sorted(base.extension_classes.items(), key=lambda item: item[1].order)
    for name, cls in ordered:
        old = previous.extensions.get(name) if previous else None
        if old is not None and old.keep_on_reload(settings):
            kept.append(old)
            extensions[name] = old
        else:
            extensions[name] = cls(services)
            fresh.append(extensions[name])
    try:
        for extension in fresh:
            await extension.start()
    except BaseException:
        for extension in fresh:
            await _closing(f"extension {extension.name}", extension.aclose)
        raise
    pipeline = ExtensionPipeline(list(extensions.values()), router)
    gateway = Gateway(
        router,
        log_prompts=settings.server.log_prompts,
        tenancy=base.tenancy,
        extensions=pipeline,
        cache=open_cache(settings, router, base.metrics, base.cache_backend, make_embedder),
    )
    # Nothing below can fail: only now are the running parts pointed at this generation
    # (a reload that failed above left the kept extensions on their own router).
    for extension in kept:
        extension.services = services
    if base.cooldowns is not None:
        base.cooldowns.follow(d for found in router.deployments.values() for d in found)
        router.shared = base.cooldowns
        if previous is not None:  # the first generation's were read when sharing began
            await base.cooldowns.catch_up()
    return Generation(
        number=number,
        settings=settings,
        router=router,
        gateway=gateway,
        model_cards=model_cards(
            settings, list(extensions.values()), previous.model_cards if previous else []
        ),
        extensions=extensions,
        prices=prices_of(router),
        count_tokens=count_tokens,
        adapters=adapters,
    )


async def build_state(
    settings: Settings,
    metrics: Metrics,
    extension_classes: dict[str, type[Extension]],
    stack: AsyncExitStack,
) -> AppState:
    store = await open_state(
        settings.state,
        data_dir=settings.server.data_dir,
        base_dir=settings.base_dir,
    )
    stack.push_async_callback(_closing, "state store", store.aclose)
    http = build_http_client(settings.http)
    stack.push_async_callback(http.aclose)
    upstream = build_json_transport(settings.http, http)
    stack.push_async_callback(upstream.aclose)
    resources = Resources(settings=settings, http=http, upstream=upstream)
    media = MediaServices.create(settings, resources, store)
    cache_backend = response_cache_backend(settings)
    base = Base(metrics, resources, store, extension_classes)
    router, adapters = await build_router(settings, base)
    stack.push_async_callback(_closing, "media", media.aclose)
    await media.start()
    tenancy = await Tenancy.open(
        settings, store, router, metrics, stack, jwt=jwt_verifier(settings, http)
    )
    base.tenancy = tenancy
    base.cache_backend = cache_backend(tenancy.redis)
    if settings.state.redis_url is not None and tenancy.redis is not None:
        base.cooldowns = await share_cooldowns(
            router, settings.state.redis_url, tenancy.redis, stack
        )
    try:
        first = await build_generation(1, settings, base, router, adapters)
    except BaseException:
        await router.aclose()
        for adapter in adapters:
            await _closing(adapter.label, adapter.aclose)
        raise
    generations = Generations(first)
    stack.push_async_callback(generations.aclose)
    tenancy.routing = generations
    metrics.local_models.source = lambda: (
        model for adapter in generations.current.adapters for model in adapter.local_models()
    )
    return AppState(
        started_settings=settings,
        metrics=metrics,
        http=http,
        generations=generations,
        base=base,
        media=media,
        store=store,
        tenancy=tenancy,
    )
