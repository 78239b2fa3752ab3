"""Building what the app owns, in dependency order, with its cleanup on one exit stack.

The upstream HTTP client first, then adapters and the router, then the services
extensions borrow, then the extensions (in their ``order``; each opens what it owns).
Everything is closed in reverse order when the server stops, or when start-up fails
halfway.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from typing import Any

from adapters.base import Adapter, Resources, registered_adapters
from extensions.base import Extension, ExtensionServices
from extensions.pipeline import ExtensionPipeline
from extensions.services import make_context_window, make_embedder, make_token_counter
from proxy.app_state import AppState
from proxy.cache.service import open_cache
from proxy.cooldowns import share_cooldowns
from proxy.gateway import Gateway
from proxy.http_client import build_http_client, build_json_transport
from proxy.media import MediaServices
from proxy.metrics import Metrics
from proxy.router import Deployment, Router
from proxy.schemas.models import Model
from proxy.settings import Settings
from proxy.state import open_state
from proxy.tenancy.service import Tenancy, jwt_verifier

log = logging.getLogger("switchyard.app")


async def _closing(label: str, close: Any) -> None:
    try:
        await close()
    except Exception:
        log.exception("closing %s failed", label)


async def build_router(
    settings: Settings, resources: Resources, metrics: Metrics, stack: AsyncExitStack
) -> Router:
    classes = registered_adapters()
    deployments: dict[str, list[Deployment]] = {}
    adapters: list[Adapter] = []
    for config in settings.models:
        adapter = classes[config.adapter](config, resources)
        stack.push_async_callback(_closing, adapter.label, adapter.aclose)
        adapters.append(adapter)
        deployment = Deployment(adapter, health_window=settings.server.health_window)
        deployments.setdefault(config.name, []).append(deployment)
    for adapter in adapters:
        await adapter.start()
    router = Router(
        deployments,
        {m.name: m.fallbacks for m in settings.models if m.fallbacks},
        cooldown_s=settings.server.cooldown_s,
        max_retry_after_s=settings.server.max_retry_after_s,
        metrics=metrics,
    )
    router.start_probes()
    stack.push_async_callback(router.aclose)
    metrics.local_models.source = lambda: (m for a in adapters for m in a.local_models())
    return router


def model_cards(settings: Settings, extensions: list[Extension]) -> list[Model]:
    started = int(time.time())
    owners = {m.name: m.adapter for m in reversed(settings.models)}
    cards = [
        Model(id=name, created=started, owned_by=owners[name]) for name in settings.model_names()
    ]
    for extension in extensions:
        cards += [
            Model(id=i, created=started, owned_by="switchyard") for i in extension.model_ids()
        ]
    return cards


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
    router = await build_router(settings, resources, metrics, stack)
    stack.push_async_callback(_closing, "media", media.aclose)
    await media.start()
    count_tokens = make_token_counter(router)
    tenancy = await Tenancy.open(
        settings, store, router, metrics, stack, jwt=jwt_verifier(settings, http)
    )
    tenancy.count_tokens = count_tokens
    if settings.state.redis_url is not None and tenancy.redis is not None:
        await share_cooldowns(router, settings.state.redis_url, tenancy.redis, stack)
    services = ExtensionServices(
        settings=settings,
        router=router,
        http=http,
        metrics=metrics,
        count_tokens=count_tokens,
        context_window=make_context_window(router),
        store=store,
    )
    extensions = services.extensions
    for name, cls in sorted(extension_classes.items(), key=lambda item: item[1].order):
        extensions[name] = cls(services)
    for name, extension in extensions.items():
        stack.push_async_callback(_closing, f"extension {name}", extension.aclose)
        await extension.start()
    pipeline = ExtensionPipeline(list(extensions.values()), router)
    return AppState(
        settings=settings,
        metrics=metrics,
        http=http,
        router=router,
        gateway=Gateway(
            router,
            log_prompts=settings.server.log_prompts,
            tenancy=tenancy,
            extensions=pipeline,
            cache=open_cache(settings, router, metrics, tenancy.redis, make_embedder),
        ),
        model_cards=model_cards(settings, list(extensions.values())),
        extensions=extensions,
        media=media,
        store=store,
        tenancy=tenancy,
    )
