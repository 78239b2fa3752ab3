"""Health endpoints: ``GET /health/ready`` and ``GET /health/deployments``."""

from __future__ import annotations

from typing import Literal

from proxy.schemas.base import UNSET, UnsetType, WireResponse

HealthStatus = Literal["healthy", "cooling_down", "unhealthy", "unknown"]


class LastError(WireResponse):
    """The latest upstream failure of a deployment, without secrets."""

    type: str
    """The error class (``UpstreamUnavailable``, ``UpstreamTimeout``, ...)."""
    code: str | None
    """The OpenAI-style error code clients got (``upstream_unavailable``), if any."""
    message: str
    """Short message; configured secrets are masked."""
    at: float
    """When it happened (Unix seconds)."""


class RecentOutcomes(WireResponse):
    """The latest ``server.health_window`` upstream calls (requests and probes)."""

    calls: int
    failures: int


class DeploymentReadiness(WireResponse):
    deployment: str
    ready: bool
    reason: str
    status: HealthStatus


class ModelReadiness(WireResponse):
    required: bool
    ready: bool
    deployments: list[DeploymentReadiness]


class Readiness(WireResponse):
    """Everyone gets ``status``; the rest only with a key or ``public_health_details``."""

    status: Literal["ready", "not_ready"]
    reasons: list[str] | UnsetType = UNSET
    """Why the process is not ready (empty when it is)."""
    models: dict[str, ModelReadiness] | UnsetType = UNSET
    config: str | UnsetType = UNSET
    """The config file's path: only for callers with a valid API key."""


class DeploymentHealthReport(WireResponse):
    deployment: str
    status: HealthStatus
    ready: bool
    """Whether it counts as usable for ``/health/ready``."""
    reason: str
    last_error: LastError | None
    last_success_at: float | None
    """Unix seconds of the latest successful request or probe."""
    cooldown_remaining_s: float
    consecutive_failures: int
    recent: RecentOutcomes
    in_flight: int
    probe_interval_s: float | None


class ModelHealth(WireResponse):
    required: bool
    ready: bool
    deployments: list[DeploymentHealthReport]


class DeploymentsHealth(WireResponse):
    models: dict[str, ModelHealth]
