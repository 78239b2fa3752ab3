"""The app factory: settings in, an ASGI app out.

Everything with a lifetime (the upstream HTTP client, adapters and what they load) is
created in the lifespan and closed when the server stops; nothing lives in module
globals, so tests can run several apps in one process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException

from extensions.base import registered_extensions
from proxy import __version__
from proxy.app_state import AppState
from proxy.context import RequestContextMiddleware, request_info
from proxy.dialects import DialectMap, registered_dialects
from proxy.drain import Drain
from proxy.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SwitchyardError,
    shown,
)
from proxy.lifespan import build_state
from proxy.metrics import Metrics
from proxy.openapi import docs_assets_router, document_request_bodies, openapi_config
from proxy.reload import Reloader
from proxy.routes.admin import admin_router
from proxy.routes.audio import audio_router
from proxy.routes.images import images_router
from proxy.routes.media import media_router
from proxy.routes.openai import openai_router
from proxy.routes.ops import ops_handlers
from proxy.routes.videos import videos_router
from proxy.settings import Settings
from proxy.tenancy.admission import check_extensions
from proxy.tenancy.outage import is_outage, outage_error

log = logging.getLogger("switchyard.app")


def _body_limit(request: Request[Any, Any, Any]) -> str:
    try:
        limit = request.route_handler.resolve_request_max_body_size()
    except Exception:  # no route matched: the app-wide limit applies, not known here
        return "the configured limit"
    return f"the limit of {limit / (1024 * 1024):g} MiB" if limit else "the configured limit"


def _as_switchyard_error(exc: Exception, request: Request[Any, Any, Any]) -> SwitchyardError:
    if isinstance(exc, SwitchyardError):
        return exc
    if is_outage(exc):
        return outage_error(exc)
    if isinstance(exc, HTTPException):
        if exc.status_code == 413:
            return PayloadTooLarge(f"The request body is larger than {_body_limit(request)}.")
        if exc.status_code == 404:
            return NotFound(f"Unknown path: {shown(request.url.path)}")
        return InvalidRequest(str(exc.detail), status=exc.status_code)
    return SwitchyardError("The server had an error while processing your request.")


def error_renderer(dialects: DialectMap) -> Any:
    """The one place an exception becomes an HTTP response: an error object in the
    dialect of the path (OpenAI's, unless a dialect owns the path)."""

    def render_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        error = _as_switchyard_error(exc, request)
        if is_outage(exc):
            log.warning("%s on %s: %s", error.message, request.url.path, type(exc).__name__)
        elif error is not exc and not isinstance(exc, HTTPException):
            log.error("unhandled error on %s", request.url.path, exc_info=exc)
        status, body, headers = dialects.for_path(request.url.path).render_error(error)
        return Response(
            content=body, status_code=status, media_type="application/json", headers=headers
        )

    return render_error


def create_app(settings: Settings, *, span_exporter: Any = None) -> Any:
    """The app; ``span_exporter`` (an OpenTelemetry ``SpanExporter``, for tests) turns
    tracing on and receives every span as it ends, next to any ``otlp_endpoint``."""
    metrics = Metrics()
    drain = Drain()
    tracing = _tracing(settings, span_exporter)
    # Every /v1 route's caller is identified by RequestContextMiddleware (or refused
    # with 401) before the app runs; routes that need more have guards of their own.
    guards: list[Any] = []
    extension_classes = registered_extensions()
    dialects = registered_dialects()
    dialect_map = DialectMap.of(dialects)
    dialect_routes = [
        Router(path="/", route_handlers=handlers)
        for cls in dialects.values()
        if (handlers := cls.routes(settings))
    ]
    extension_routes = [
        Router(path="/", route_handlers=handlers, guards=[extension_allowed(name)])
        for name, cls in extension_classes.items()
        if (handlers := cls.routes(settings))
    ]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            state = await build_state(settings, metrics, extension_classes, stack)
            state.drain = drain
            if tracing is not None:
                stack.push_async_callback(tracing.aclose)
            state.reloader = Reloader(state)
            await state.reloader.start(stack)
            app.state.switchyard = state
            context.tenancy = state.tenancy
            context.generations = state.generations
            context.reloader = state.reloader
            yield
            context.tenancy = None
            context.generations = None
            context.reloader = None

    app = Litestar(
        route_handlers=[
            openai_router(guards, extension_routes),
            *dialect_routes,
            audio_router(guards),
            images_router(guards),
            videos_router(guards),
            media_router(),
            admin_router(guards),
            *ops_handlers(identify_caller, protect_metrics=settings.server.protect_metrics),
            docs_assets_router(),
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: error_renderer(dialect_map)},
        request_max_body_size=int(settings.server.max_body_mb * 1024 * 1024),
        openapi_config=openapi_config(
            "Switchyard", __version__, keys_required=auth_configured(settings)
        ),
        logging_config=None,
        debug=False,
    )
    document_request_bodies(app)
    context = RequestContextMiddleware(
        app,
        metrics,
        log_prompts=settings.server.log_prompts,
        drain=drain,
        request_read_timeout_s=settings.server.request_read_timeout_s,
        tracing=tracing,
        dialects=dialect_map,
    )
    return context


def _tracing(settings: Settings, exporter: Any) -> Any:
    """The app's ``Tracing``, or None; the OpenTelemetry SDK is imported only when on."""
    if settings.telemetry.otlp_endpoint is None and exporter is None:
        return None
    from proxy.telemetry.tracing import Tracing

    return Tracing.create(settings.telemetry, exporter)


async def identify_caller(connection: ASGIConnection[Any, Any, Any, Any], handler: Any) -> None:
    """The guard of routes outside /v1 that need a key (``/metrics`` when protected).

    ``async`` on purpose: Litestar runs a synchronous guard in a worker thread."""
    state: AppState = connection.app.state.switchyard
    await state.tenancy.guard(connection, handler)


def extension_allowed(name: str) -> Any:
    """A guard for an extension's own API: a caller whose key or team may not use the
    extension gets the same 403 as when it asks for it in a chat request."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: Any) -> None:
        identity = request_info(connection.scope).identity
        if identity is not None:
            check_extensions(identity, (name,))

    return guard


def auth_configured(settings: Settings) -> bool:
    server = settings.server
    return bool(server.master_key or any(server.api_keys) or settings.auth.jwt is not None)
