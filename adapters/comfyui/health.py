"""Whether one ComfyUI server answers, shared by every model entry that uses it.

Several model entries (one per workflow set) usually name the same server. Its
health is kept once per ``base_url`` (in the lifespan's ``Resources.extra``), so what
any of them learns counts for all at once: every HTTP exchange with the server
(``ComfyClient`` reports each one: uploads, prompts, history, downloads), and a probe
of ``/system_stats`` every ``health_interval_s`` while nothing else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from adapters.base import Resources

_REGISTRY_KEY = "comfyui.health"


class ServerHealth:
    """The last thing known about one server: answering, or not and why."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.state: tuple[bool, str] = (False, "not checked yet")
        self._users = 0
        self._probe: Callable[[], Awaitable[None]] | None = None
        self._interval_s = 30.0
        self._task: asyncio.Task[None] | None = None

    def succeeded(self) -> None:
        self.state = (True, "ok")

    def failed(self, reason: str) -> None:
        self.state = (False, reason)

    async def attach(self, probe: Callable[[], Awaitable[None]], interval_s: float) -> None:
        """Count one more user; the first one probes at once (for at most 3 s) and starts
        the periodic probe, which runs at the shortest interval any user asked for."""
        self._users += 1
        self._interval_s = min(self._interval_s, interval_s) if self._users > 1 else interval_s
        if self._users > 1:
            return
        self._probe = probe
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await probe()
        self._task = asyncio.create_task(self._watch(), name=f"health-{self.base_url}")

    async def detach(self) -> None:
        """One user fewer; the last one stops the probe."""
        self._users -= 1
        if self._users > 0 or self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if self._probe is not None:
                await self._probe()


def server_health(resources: Resources, base_url: str) -> ServerHealth:
    """The one ``ServerHealth`` of ``base_url`` in this app."""
    registry: dict[str, ServerHealth] = resources.extra.setdefault(_REGISTRY_KEY, {})
    key = base_url.rstrip("/")
    if key not in registry:
        registry[key] = ServerHealth(key)
    return registry[key]
