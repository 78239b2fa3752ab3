"""Graceful shutdown: the requests in flight, and ending those that outlive the drain.

The request middleware (``proxy.context``) registers every HTTP request here while it
runs. On SIGTERM the server runner (``proxy.server``) calls ``begin()``: ``/health/ready``
answers 503 from then on (through ``AppState.draining``) and every response carries
``connection: close``. The runner waits until nothing is in flight or
``server.drain_timeout_s`` has passed, then calls ``end_remaining()``: each request still
running is marked ``ended_by_shutdown`` and its task cancelled, so a stream writes an SSE
error event and ends its body properly (``proxy.responses``), a request with no response
yet gets a 503 (``proxy.context``), and the access log and metrics say what happened.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.context import RequestInfo


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self._running: dict[asyncio.Task[object], RequestInfo] = {}

    def begin(self) -> None:
        """Stop being ready. Safe to call from a signal handler (it only sets a flag)."""
        self.draining = True

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def track(self, info: RequestInfo) -> asyncio.Task[object] | None:
        """Register the current request (its task) until ``untrack``."""
        task = asyncio.current_task()
        if task is not None:
            self._running[task] = info
        return task

    def untrack(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self._running.pop(task, None)

    def end_remaining(self) -> int:
        """End every request still running; returns how many there were."""
        running = list(self._running.items())
        for task, info in running:
            info.ended_by_shutdown = True
            task.cancel()
        return len(running)
