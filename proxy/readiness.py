"""Readiness of the process, and the health of each deployment, as the health routes show them.

Readiness means "this process can serve": the app state is built (config loaded, stores
open), the process is not draining, and every model marked ``required: true`` has at
least one usable deployment. A model that is not required never makes the process not
ready, so one optional backend that is down does not take a replica out of a load
balancer's rotation.

A deployment is usable unless its adapter says it cannot serve (a model file missing, an
image server that does not answer) or its active probe found it unhealthy. Failures of client
requests alone show in ``/health/deployments`` but do not make it unusable: a replica
taken out of rotation gets no requests, so nothing would ever bring it back; a probe does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.router import Deployment, Router
from proxy.schemas.health import (
    DeploymentHealthReport,
    DeploymentReadiness,
    DeploymentsHealth,
    HealthStatus,
    ModelHealth,
    ModelReadiness,
)

DRAINING = "draining: the process is shutting down"


@dataclass(frozen=True, slots=True)
class Assessment:
    status: HealthStatus
    usable: bool
    reason: str


def assess(deployment: Deployment, now: float) -> Assessment:
    """One deployment's status, whether it counts for readiness, and why."""
    adapter_ready, reason = deployment.adapter.readiness()
    health = deployment.health
    if not adapter_ready:
        return Assessment("unhealthy", False, reason)
    if health.unhealthy:
        failure = health.last_error.type if health.last_error else "failure"
        why = f"the last {health.window} upstream calls failed ({failure})"
        return Assessment("unhealthy", deployment.probe_interval_s is None, why)
    if deployment.cooling(now):
        return Assessment("cooling_down", True, reason)
    if health.consecutive_failures and health.last_success_at is None:
        failure = health.last_error.type if health.last_error else "failure"
        why = (
            f"no upstream call has succeeded yet ({health.consecutive_failures} failed: {failure})"
        )
        return Assessment("unhealthy", deployment.probe_interval_s is None, why)
    if not health.known and not deployment.adapter.readiness_is_checked:
        return Assessment("unknown", True, reason)
    return Assessment("healthy", True, reason)


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    ready: bool
    reasons: list[str]
    models: dict[str, ModelReadiness]


def readiness(
    router: Router, *, draining: bool, unreachable: list[str] | None = None
) -> ReadinessReport:
    """Ready unless draining, a required model has no usable deployment, or a
    dependency is ``unreachable`` (the state database, Redis: their reasons)."""
    now = time.monotonic()
    reasons = [DRAINING] if draining else []
    reasons += unreachable or ()
    models: dict[str, ModelReadiness] = {}
    for name, deployments in router.deployments.items():
        entries = []
        for deployment in deployments:
            found = assess(deployment, now)
            entries.append(
                DeploymentReadiness(
                    deployment=deployment.label,
                    ready=found.usable,
                    reason=found.reason,
                    status=found.status,
                )
            )
        model_ready = any(e.ready for e in entries)
        required = name in router.required
        if required and not model_ready:
            reasons.append(f"required model '{name}' has no usable deployment")
        models[name] = ModelReadiness(required=required, ready=model_ready, deployments=entries)
    return ReadinessReport(ready=not reasons, reasons=reasons, models=models)


def deployments_health(router: Router) -> DeploymentsHealth:
    now = time.monotonic()
    models: dict[str, ModelHealth] = {}
    for name, deployments in router.deployments.items():
        entries = [_report(d, assess(d, now), now) for d in deployments]
        models[name] = ModelHealth(
            required=name in router.required,
            ready=any(e.ready for e in entries),
            deployments=entries,
        )
    return DeploymentsHealth(models=models)


def _report(deployment: Deployment, found: Assessment, now: float) -> DeploymentHealthReport:
    health = deployment.health
    return DeploymentHealthReport(
        deployment=deployment.label,
        status=found.status,
        ready=found.usable,
        reason=found.reason,
        last_error=health.last_error,
        last_success_at=health.last_success_at,
        cooldown_remaining_s=round(max(0.0, deployment.cooldown_until - now), 3),
        consecutive_failures=health.consecutive_failures,
        recent=health.recent(),
        in_flight=deployment.in_flight,
        probe_interval_s=deployment.probe_interval_s,
    )
