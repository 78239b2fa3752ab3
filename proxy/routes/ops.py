"""Operational endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get

from proxy.gateway import json_response
from proxy.metrics import CONTENT_TYPE
from proxy.state import AppState


@get("/health", summary="Liveness", include_in_schema=True)
async def health() -> Response[bytes]:
    return json_response({"status": "ok"})


@get("/health/ready", summary="Readiness, with each deployment's state")
async def ready(request: Request[Any, Any, Any]) -> Response[bytes]:
    state: AppState | None = getattr(request.app.state, "switchyard", None)
    if state is None:
        return json_response({"status": "starting"}, status_code=503)
    if state.draining:
        return json_response({"status": "draining"}, status_code=503)
    models: dict[str, Any] = {}
    all_ready = True
    for name, deployments in state.router.deployments.items():
        entries = []
        for deployment in deployments:
            ok, reason = deployment.adapter.readiness()
            entries.append({"deployment": deployment.label, "ready": ok, "reason": reason})
        model_ready = any(e["ready"] for e in entries)
        all_ready &= model_ready
        models[name] = {"ready": model_ready, "deployments": entries}
    body = {
        "status": "ready" if all_ready else "degraded",
        "config": state.source,
        "models": models,
    }
    return json_response(body, status_code=200 if all_ready else 503)


@get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    state: AppState = request.app.state.switchyard
    return Response(content=state.metrics.render(), media_type=CONTENT_TYPE)


def ops_handlers(metrics_guards: list[Any]) -> list[Any]:
    return [health, ready, Router(path="/", route_handlers=[metrics], guards=metrics_guards)]
