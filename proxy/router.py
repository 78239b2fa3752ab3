"""Choosing a deployment: least in-flight first, retry before the first byte, fall back.

A model name maps to one or more deployments (adapter instances). For each call the
router tries the deployments of the requested model, then those of its ``fallbacks``,
until one answers. Only failures that happen before anything reached the client, and
whose class says ``retryable`` (connect errors, timeouts, 429, 5xx), move on to the
next deployment; an upstream 4xx is the client's problem and is returned at once.

A deployment that failed is cooled down for ``cooldown_s``; cooled deployments are
tried only after healthy ones. An upstream's ``Retry-After`` is binding: such a
deployment is not tried at all until the time has passed. With Redis, replicas share
their cooldowns (``proxy.cooldowns``); the router itself only ever reads memory.

Each deployment keeps its recent health (``proxy.health``): the outcome of every call,
and of an active probe every ``health_probe_interval_s`` where one is configured. A
deployment whose recent calls all failed is tried after the others, like a cooling one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from adapters.base import Adapter, CallStats, Capability
from proxy.errors import ModelNotFound, RateLimited, SwitchyardError, UnsupportedCapability, shown
from proxy.health import DeploymentHealth, config_secrets, is_upstream_failure
from proxy.metrics import Metrics
from proxy.telemetry import span

log = logging.getLogger("switchyard.router")

T = TypeVar("T")


class Deployment:
    __slots__ = ("adapter", "binding", "cooldown_until", "health", "in_flight", "label")

    def __init__(self, adapter: Adapter, *, health_window: int = 5) -> None:
        self.adapter = adapter
        self.label = adapter.label
        self.in_flight = 0
        self.cooldown_until = 0.0
        #: Set when the cooldown came from the upstream's Retry-After: then it is binding.
        self.binding = False
        self.health = DeploymentHealth(health_window, config_secrets(adapter.config))

    def cooling(self, now: float) -> bool:
        return now < self.cooldown_until

    @property
    def probe_interval_s(self) -> float | None:
        return self.adapter.config.health_probe_interval_s


class Router:
    def __init__(
        self,
        deployments: dict[str, list[Deployment]],
        fallbacks: dict[str, list[str]],
        *,
        cooldown_s: float,
        max_retry_after_s: float,
        metrics: Metrics,
    ) -> None:
        self.deployments = deployments
        self.fallbacks = fallbacks
        self.cooldown_s = cooldown_s
        self.max_retry_after_s = max_retry_after_s
        self.metrics = metrics
        self._rotation = itertools.count()
        #: Model names with ``required: true`` on any entry: readiness depends on them.
        self.required = frozenset(
            name
            for name, found in deployments.items()
            if any(d.adapter.config.required for d in found)
        )
        self._probes: list[asyncio.Task[None]] = []
        self.shared: Any = None
        """``proxy.cooldowns.SharedCooldowns`` when replicas share cooldowns (Redis)."""

    def deployments_of(self, model: str) -> list[Deployment]:
        found = self.deployments.get(model)
        if found is None:
            raise ModelNotFound(f"The model '{shown(model)}' does not exist.", param="model")
        return found

    def _ordered(self, model: str, capability: Capability, now: float) -> list[Deployment]:
        """Healthy deployments by fewest in-flight (ties rotate), then cooling or unhealthy ones."""
        deployments = self.deployments_of(model)
        if len(deployments) == 1:  # the common case: nothing to choose between
            only = deployments[0]
            usable = capability in only.adapter.capabilities and not (
                only.binding and only.cooling(now)
            )
            return [only] if usable else []
        able = [d for d in deployments if capability in d.adapter.capabilities]
        if len(able) > 1:
            turn = next(self._rotation) % len(able)
            able = able[turn:] + able[:turn]
        allowed = [d for d in able if not (d.binding and d.cooling(now))]
        healthy = sorted(
            (d for d in allowed if not d.cooling(now) and not d.health.unhealthy),
            key=lambda d: d.in_flight,
        )
        failing = sorted(
            (d for d in allowed if d.cooling(now) or d.health.unhealthy),
            key=lambda d: d.cooldown_until,
        )
        return healthy + failing

    def _attempts(self, model: str, capability: Capability) -> Iterator[tuple[str, Deployment]]:
        """(model name, deployment) to try in turn: the model's, then its fallbacks'."""
        deployments = self.deployments_of(model)
        if not any(capability in d.adapter.capabilities for d in deployments):
            adapter = deployments[0].adapter
            raise UnsupportedCapability(
                f"Model '{model}' ({adapter.name} adapter) does not support {capability}.",
                param="model",
            )
        now = time.monotonic()
        for name in (model, *self.fallbacks.get(model, ())):
            for deployment in self._ordered(name, capability, now):
                yield name, deployment

    def _blocked(self, model: str) -> RateLimited:
        now = time.monotonic()
        waits = [d.cooldown_until - now for d in self.deployments_of(model) if d.cooling(now)]
        return RateLimited(
            f"Every deployment of '{model}' is rate limited upstream.",
            retry_after_s=min(waits) if waits else self.cooldown_s,
        )

    def _succeeded(self, deployment: Deployment) -> None:
        """The deployment answered: its cooldown (binding or not) is over."""
        if deployment.cooldown_until:
            deployment.binding = False
            deployment.cooldown_until = 0.0
            if self.shared is not None:
                self.shared.recovered(deployment)
        deployment.health.succeeded()

    def _record_failure(self, deployment: Deployment, error: Exception) -> None:
        """Count a failure of the deployment; the client's own errors are not counted."""
        if is_upstream_failure(error):
            self.metrics.upstream_error(deployment.label, type(error).__name__)
            deployment.health.failed(error)

    def _failed(self, deployment: Deployment, error: SwitchyardError) -> None:
        self._record_failure(deployment, error)
        if not error.retryable:
            return
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:
            seconds, deployment.binding = min(retry_after, self.max_retry_after_s), True
        else:
            seconds, deployment.binding = self.cooldown_s, False
        deployment.cooldown_until = time.monotonic() + seconds
        self.metrics.cooldown(deployment.label)
        if self.shared is not None:
            self.shared.cooled(deployment, seconds)
        log.warning(
            "deployment %s failed (%s); cooling down for %.1fs",
            deployment.label,
            type(error).__name__,
            seconds,
        )

    async def call(
        self,
        model: str,
        capability: Capability,
        invoke: Callable[[Adapter], Awaitable[T]],
        stats: CallStats,
    ) -> T:
        """Run ``invoke`` on the best deployment, moving on while failures are retryable."""
        last: SwitchyardError | None = None
        for name, deployment in self._attempts(model, capability):
            stats.attempts += 1
            stats.deployment = deployment.label
            deployment.in_flight += 1
            try:
                with _attempt_span(name, model, deployment, stats):
                    result = await invoke(deployment.adapter)
            except SwitchyardError as error:
                self._failed(deployment, error)
                if not error.retryable:
                    raise
                last = error
                continue
            except Exception as error:
                self._record_failure(deployment, error)
                raise
            finally:
                deployment.in_flight -= 1
            self._succeeded(deployment)
            return result
        raise last or self._blocked(model)

    async def open_stream(
        self,
        model: str,
        capability: Capability,
        start: Callable[[Adapter], AsyncIterator[T]],
        stats: CallStats,
    ) -> AsyncIterator[T]:
        """Start a stream on the best deployment and return it once its first item arrived.

        Failing before the first item counts as failing before the first byte: the next
        deployment is tried. The returned iterator yields the first item again.
        """
        last: SwitchyardError | None = None
        for name, deployment in self._attempts(model, capability):
            stats.attempts += 1
            stats.deployment = deployment.label
            stream = start(deployment.adapter)
            deployment.in_flight += 1
            try:
                with _attempt_span(name, model, deployment, stats):
                    first = await anext(stream)
            except StopAsyncIteration:
                self._succeeded(deployment)
                return self._tracked(deployment, None, stream)
            except SwitchyardError as error:
                deployment.in_flight -= 1
                await _close(stream)
                self._failed(deployment, error)
                if not error.retryable:
                    raise
                last = error
                continue
            except BaseException as error:
                deployment.in_flight -= 1
                await _close(stream)
                if isinstance(error, Exception):
                    self._record_failure(deployment, error)
                raise
            self._succeeded(deployment)
            return self._tracked(deployment, first, stream)
        raise last or self._blocked(model)

    async def _tracked(
        self, deployment: Deployment, first: T | None, stream: AsyncIterator[T]
    ) -> AsyncIterator[T]:
        """Yield ``first`` then the rest, keeping the deployment's in-flight count and
        health right (a failure after the first item is the deployment's too)."""
        try:
            if first is not None:
                yield first
            async for item in stream:
                yield item
        except Exception as error:
            self._record_failure(deployment, error)
            raise
        finally:
            deployment.in_flight -= 1
            await _close(stream)

    # -- active health probes ---------------------------------------------------------

    def start_probes(self) -> None:
        """Probe every deployment that has ``health_probe_interval_s``, until ``aclose``."""
        for deployments in self.deployments.values():
            for deployment in deployments:
                interval = deployment.probe_interval_s
                if interval is not None:
                    task = asyncio.create_task(
                        self._probe_forever(deployment, interval), name=f"probe-{deployment.label}"
                    )
                    self._probes.append(task)

    async def _probe_forever(self, deployment: Deployment, interval: float) -> None:
        while True:
            await self.probe(deployment)
            await asyncio.sleep(interval)

    async def probe(self, deployment: Deployment) -> None:
        """One active check; its outcome counts like a request's, without a cooldown."""
        health = deployment.health
        was_unhealthy = health.unhealthy
        try:
            await deployment.adapter.probe()
        except Exception as error:
            if not isinstance(error, SwitchyardError):
                log.exception("health probe of %s failed unexpectedly", deployment.label)
            health.failed(error)
            if health.unhealthy and not was_unhealthy:
                log.warning(
                    "deployment %s is unhealthy: probe failed (%s)",
                    deployment.label,
                    type(error).__name__,
                )
        else:
            health.succeeded()
            if was_unhealthy:
                log.info("deployment %s answers its probe again", deployment.label)

    async def aclose(self) -> None:
        """Stop the probes."""
        for task in self._probes:
            task.cancel()
        for task in self._probes:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._probes.clear()


def _attempt_span(name: str, model: str, deployment: Deployment, stats: CallStats) -> Any:
    """The span of one routing attempt (a stream's lasts until its first item)."""
    return span(
        "routing.attempt",
        deployment=deployment.label,
        model=name,
        attempt=stats.attempts,
        fallback=name != model,
    )


async def _close(stream: AsyncIterator[object]) -> None:
    """Close an async generator now (not at garbage collection), so the upstream goes too."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
