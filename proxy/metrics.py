"""Prometheus metrics, one registry per app (so several apps in one process never clash).

Label values come from configuration (model names, deployment labels), never from
free client input: a request for an unknown model is counted under ``model="unknown"``,
so clients cannot blow up the label space.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from adapters.base import LocalModel

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, fds
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.local_models = LocalModelsCollector()
        registry.register(self.local_models)
        self.ready = Gauge(
            "switchyard_ready",
            "1 when this process answers /health/ready with 200, else 0 (set at each scrape).",
            registry=registry,
        )
        self.requests = Counter(
            "switchyard_requests",
            "Requests served, by model, route and HTTP status.",
            ["model", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "switchyard_request_duration_seconds",
            "Total time from request received to response finished.",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream = Histogram(
            "switchyard_upstream_duration_seconds",
            "Time spent waiting for the upstream (to the first event for streams).",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "switchyard_gateway_overhead_seconds",
            "Time spent in the gateway itself, excluding the wait for the upstream.",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "switchyard_time_to_first_token_seconds",
            "Time from request received to the first streamed event sent.",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "switchyard_prompt_tokens",
            "Prompt tokens reported by upstreams.",
            ["model"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "switchyard_completion_tokens",
            "Completion tokens reported by upstreams.",
            ["model"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "switchyard_in_flight_requests", "Requests being served now.", registry=registry
        )
        self.ended_by_shutdown = Counter(
            "switchyard_requests_ended_by_shutdown",
            "Requests still running when the shutdown drain ran out, ended by the server "
            "(also counted in switchyard_requests under the status they had sent).",
            ["model", "route"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "switchyard_upstream_errors",
            "Upstream failures, by deployment and kind.",
            ["deployment", "kind"],
            registry=registry,
        )
        self.cooldowns = Counter(
            "switchyard_deployment_cooldowns",
            "Times a deployment was put in cooldown.",
            ["deployment"],
            registry=registry,
        )

        self.tool_calls = Counter(
            "switchyard_tool_calls",
            "Server-side tool executions, by tool and outcome.",
            ["tool", "outcome"],
            registry=registry,
        )
        self.tool_duration = Histogram(
            "switchyard_tool_duration_seconds",
            "Time to execute one server-side tool call.",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

        self.team_requests = Counter(
            "switchyard_team_requests",
            "Model calls by team and outcome (ok: status below 400). By team, not by key,"
            " so the label space stays as small as the team list.",
            ["team", "outcome"],
            registry=registry,
        )
        self.team_tokens = Counter(
            "switchyard_team_tokens",
            "Tokens used by team, by kind (prompt, completion).",
            ["team", "kind"],
            registry=registry,
        )
        self.team_cost = Counter(
            "switchyard_team_cost_usd",
            "Cost in USD of the team's model calls (from each model's price).",
            ["team"],
            registry=registry,
        )
        self.limit_rejections = Counter(
            "switchyard_limit_rejections",
            "Requests refused by the tenancy layer, by team and kind (rpm, tpm, parallel,"
            " budget, model_not_found, permission_denied).",
            ["team", "kind"],
            registry=registry,
        )
        self.cache_requests = Counter(
            "switchyard_cache_requests",
            "Requests to cache-enabled models, by model and result (hit, semantic_hit,"
            " miss, bypass, refresh, error).",
            ["model", "result"],
            registry=registry,
        )

        self._series: dict[tuple[str, str], RequestSeries] = {}
        self._teams: dict[str, TeamSeries] = {}

    def series(self, model: str, route: str) -> RequestSeries:
        """The children for one (model, route), looked up once: ``labels()`` takes a lock
        and builds a key on every call, which shows in the per-request profile."""
        found = self._series.get((model, route))
        if found is None:
            found = self._series[(model, route)] = RequestSeries(self, model, route)
        return found

    def team(self, team: str) -> TeamSeries:
        found = self._teams.get(team)
        if found is None:
            found = self._teams[team] = TeamSeries(self, team)
        return found

    def team_usage(
        self, team: str, status: int, prompt_tokens: int, completion_tokens: int, cost: float
    ) -> None:
        series = self.team(team)
        (series.ok if status < 400 else series.failed).inc()
        if prompt_tokens:
            series.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            series.completion_tokens.inc(completion_tokens)
        if cost:
            series.cost.inc(cost)

    def rejected(self, team: str, kind: str) -> None:
        self.limit_rejections.labels(team, kind).inc()

    def tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self.tool_calls.labels(tool, outcome).inc()
        self.tool_duration.labels(tool).observe(seconds)

    def upstream_error(self, deployment: str, kind: str) -> None:
        self.upstream_errors.labels(deployment, kind).inc()

    def cooldown(self, deployment: str) -> None:
        self.cooldowns.labels(deployment).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LocalModelsCollector:
    """Gauges of the models held in this process, read from the adapters at scrape time
    (``Adapter.local_models``): nothing is updated on the request path."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[LocalModel]] = tuple
        """Set by the lifespan once the adapters exist."""

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "switchyard_local_models_loaded", "Local models loaded in memory now."
            ),
            GaugeMetricFamily(
                "switchyard_local_model_memory_bytes",
                "Estimated memory of a local model while loaded (0 when not loaded).",
                labels=["model"],
            ),
            GaugeMetricFamily(
                "switchyard_local_model_queue_depth",
                "Requests waiting for their turn on a local model.",
                labels=["model"],
            ),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        loaded, memory, queue = self._families()
        models = {m.name: m for m in self.source()}  # deployments may share a model
        loaded.add_metric([], sum(m.loaded for m in models.values()))
        for name, model in models.items():
            memory.add_metric([name], model.memory_bytes if model.loaded else 0)
            queue.add_metric([name], model.queue_depth)
        return iter((loaded, memory, queue))


class RequestSeries:
    __slots__ = (
        "_by_status",
        "_metrics",
        "_model",
        "completion_tokens",
        "duration",
        "overhead",
        "prompt_tokens",
        "route",
        "ttft",
        "upstream",
    )

    def __init__(self, metrics: Metrics, model: str, route: str) -> None:
        self._metrics = metrics
        self._model = model
        self.route = route
        self._by_status: dict[int, Any] = {}
        self.duration = metrics.duration.labels(model, route)
        self.upstream = metrics.upstream.labels(model, route)
        self.overhead = metrics.overhead.labels(route)
        self.ttft = metrics.ttft.labels(model, route)
        self.prompt_tokens = metrics.prompt_tokens.labels(model)
        self.completion_tokens = metrics.completion_tokens.labels(model)

    def count(self, status: int) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._metrics.requests.labels(self._model, self.route, str(status))
            self._by_status[status] = counter
        counter.inc()


class TeamSeries:
    """One team's children, looked up once (as ``RequestSeries``)."""

    __slots__ = ("completion_tokens", "cost", "failed", "ok", "prompt_tokens")

    def __init__(self, metrics: Metrics, team: str) -> None:
        self.ok = metrics.team_requests.labels(team, "ok")
        self.failed = metrics.team_requests.labels(team, "error")
        self.prompt_tokens = metrics.team_tokens.labels(team, "prompt")
        self.completion_tokens = metrics.team_tokens.labels(team, "completion")
        self.cost = metrics.team_cost.labels(team)
