"""Operational endpoints: liveness, readiness, deployment health, metrics.

``/health`` and ``/health/ready`` answer anyone, for load balancers and orchestrators;
without a key, readiness says only ready (200) or not ready (503). Its details (models,
deployments, reasons) and ``/health/deployments`` name upstream hosts and local paths:
they need a valid API key, or ``server.public_health_details: true``. The config file's
path is shown only with a valid key.
"""

from __future__ import annotations

import enum
from typing import Any

from litestar import Request, Response, Router, get

from proxy.app_state import AppState
from proxy.context import request_info
from proxy.errors import AuthenticationFailed, PermissionDenied
from proxy.gateway import json_response
from proxy.keys import presented_key
from proxy.metrics import CONTENT_TYPE
from proxy.readiness import deployments_health, readiness
from proxy.schemas.health import Readiness
from proxy.tenancy.outage import is_outage


class Access(enum.Enum):
    STATUS_ONLY = "status"
    DETAILS = "details"
    """Models, deployments and reasons (``public_health_details``)."""
    KEYED = "keyed"
    """Details and the config path: a valid API key was sent."""


def _state(request: Request[Any, Any, Any]) -> AppState | None:
    return getattr(request.app.state, "switchyard", None)


async def _access(request: Request[Any, Any, Any], state: AppState) -> Access:
    tenancy = state.tenancy
    presented = presented_key(request.headers.get)
    if tenancy.auth_required and presented is not None:
        try:
            await tenancy.authenticator.identify(presented)
        except AuthenticationFailed:
            pass
        except Exception as exc:  # the store is away: readiness says so, for anyone
            if not is_outage(exc):
                raise
        else:
            return Access.KEYED
    return Access.DETAILS if state.settings.server.public_health_details else Access.STATUS_ONLY


def _probe_route(request: Request[Any, Any, Any], route: str) -> None:
    """Count a health probe under its own route label, apart from the API's routes."""
    request_info(request.scope).route = route


@get("/health", summary="Liveness", include_in_schema=True)
async def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    _probe_route(request, "health")
    return json_response({"status": "ok"})


def ops_handlers(guard: Any, *, protect_metrics: bool) -> list[Any]:
    """The health and metrics routes; ``guard`` (the tenancy guard) protects /metrics
    when ``protect_metrics`` is set."""

    @get("/health/ready", summary="Readiness: whether this process can serve")
    async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
        _probe_route(request, "health_ready")
        state = _state(request)
        if state is None:
            return json_response(Readiness(status="not_ready"), status_code=503)
        report = readiness(
            state.router, draining=state.draining, unreachable=await state.tenancy.unreachable()
        )
        body = Readiness(status="ready" if report.ready else "not_ready")
        access = await _access(request, state)
        if access is not Access.STATUS_ONLY:
            body.reasons = report.reasons
            body.models = report.models
        if access is Access.KEYED:
            body.config = state.source
        return json_response(body, status_code=200 if report.ready else 503)

    @get("/health/deployments", summary="Health of every deployment")
    async def deployments(request: Request[Any, Any, Any]) -> Response[bytes]:
        _probe_route(request, "health_deployments")
        state = _state(request)
        if state is None:
            return json_response(Readiness(status="not_ready"), status_code=503)
        if await _access(request, state) is Access.STATUS_ONLY:
            if state.tenancy.auth_required:
                raise AuthenticationFailed(
                    "Deployment health needs an API key: send 'Authorization: Bearer <key>'."
                )
            raise PermissionDenied(
                "Deployment health is not public: set server.public_health_details: true."
            )
        return json_response(deployments_health(state.router))

    @get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE)
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        _probe_route(request, "metrics")
        state: AppState = request.app.state.switchyard
        report = readiness(
            state.router, draining=state.draining, unreachable=await state.tenancy.unreachable()
        )
        state.metrics.ready.set(1 if report.ready else 0)
        return Response(content=state.metrics.render(), media_type=CONTENT_TYPE)

    metrics_guards = [guard] if protect_metrics else []
    return [
        health,
        ready,
        deployments,
        Router(path="/", route_handlers=[metrics], guards=metrics_guards),
    ]
