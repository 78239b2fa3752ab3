"""The app factory: settings in, an ASGI app out.

Everything with a lifetime (the upstream HTTP client, adapters and what they load) is
created in the lifespan and closed when the server stops; nothing lives in module
globals, so tests can run several apps in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig

from adapters.base import Adapter, Resources, registered_adapters
from proxy import __version__
from proxy.auth import KeyChecker
from proxy.context import RequestContextMiddleware
from proxy.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SwitchyardError,
    encode_error,
)
from proxy.gateway import Gateway
from proxy.http_client import build_http_client
from proxy.metrics import Metrics
from proxy.router import Deployment, Router
from proxy.routes.openai import openai_router
from proxy.routes.ops import ops_handlers
from proxy.schemas.models import Model
from proxy.settings import Settings
from proxy.state import AppState

log = logging.getLogger("switchyard.app")


def _as_switchyard_error(exc: Exception, path: str) -> SwitchyardError:
    if isinstance(exc, SwitchyardError):
        return exc
    if isinstance(exc, HTTPException):
        if exc.status_code == 413:
            return PayloadTooLarge("The request body is larger than the configured limit.")
        if exc.status_code == 404:
            return NotFound(f"Unknown path: {path}")
        return InvalidRequest(str(exc.detail), status=exc.status_code)
    return SwitchyardError("The server had an error while processing your request.")


def render_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """The one place an exception becomes an HTTP response: an OpenAI error object."""
    error = _as_switchyard_error(exc, request.url.path)
    if error is not exc and not isinstance(exc, HTTPException):
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return Response(
        content=encode_error(error),
        status_code=error.http_status,
        media_type="application/json",
        headers=error.headers,
    )


def _model_cards(settings: Settings, started: int) -> list[Model]:
    adapters = {m.name: m.adapter for m in reversed(settings.models)}
    return [
        Model(id=name, created=started, owned_by=adapters[name]) for name in settings.model_names()
    ]


def create_app(settings: Settings) -> Any:
    metrics = Metrics()
    keys = KeyChecker(settings.server.api_keys)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        http = build_http_client(settings.http)
        resources = Resources(settings=settings, http=http)
        classes = registered_adapters()
        adapters: list[Adapter] = []
        try:
            deployments: dict[str, list[Deployment]] = {}
            for config in settings.models:
                adapter = classes[config.adapter](config, resources)
                adapters.append(adapter)
                deployments.setdefault(config.name, []).append(Deployment(adapter))
            for adapter in adapters:
                await adapter.start()
            router = Router(
                deployments,
                {m.name: m.fallbacks for m in settings.models if m.fallbacks},
                cooldown_s=settings.server.cooldown_s,
                max_retry_after_s=settings.server.max_retry_after_s,
                metrics=metrics,
            )
            app.state.switchyard = AppState(
                settings=settings,
                metrics=metrics,
                http=http,
                router=router,
                gateway=Gateway(router, log_prompts=settings.server.log_prompts),
                model_cards=_model_cards(settings, int(time.time())),
            )
            yield
        finally:
            for adapter in adapters:
                try:
                    await adapter.aclose()
                except Exception:
                    log.exception("closing adapter %s failed", adapter.label)
            await http.aclose()

    app = Litestar(
        route_handlers=[
            openai_router([keys.guard]),
            *ops_handlers([keys.guard] if settings.server.protect_metrics else []),
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: render_error},
        request_max_body_size=int(settings.server.max_body_mb * 1024 * 1024),
        openapi_config=OpenAPIConfig(
            title="Switchyard", version=__version__, path="/docs", use_handler_docstrings=True
        ),
        logging_config=None,
        debug=False,
    )
    return RequestContextMiddleware(app, metrics, log_prompts=settings.server.log_prompts)
