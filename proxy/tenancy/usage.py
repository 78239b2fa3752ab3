"""Usage rows, queued in memory and written in batches off the hot path.

A request's row is appended to a list when the request ends (no I/O, no task); one
background task writes the queue every ``interval_s`` or as soon as ``max_rows`` are
waiting, in one transaction per batch. Shutdown flushes what is left. A process killed
with SIGKILL loses at most the rows of one interval (what had not been written yet).

A write that fails (the database is away) keeps its rows queued and tries again on
the next tick, up to ``max_backlog`` rows; beyond that the oldest are dropped and
counted, so a long database outage cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from proxy.state.records import UsageRecord
from proxy.state.repositories import UsageRepository

log = logging.getLogger("switchyard.usage")


class UsageRecorder:
    def __init__(
        self,
        repository: UsageRepository,
        *,
        interval_s: float = 1.0,
        max_rows: int = 500,
        max_backlog: int = 100_000,
    ) -> None:
        self.repository = repository
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.max_backlog = max_backlog
        self.dropped = 0
        self.written = 0
        self._queue: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    def record(self, row: UsageRecord) -> None:
        queue = self._queue
        queue.append(row)
        if len(queue) >= self.max_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Write everything queued now (the usage API calls this before it reads)."""
        async with self._lock:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self.repository.insert_many(batch)
                except Exception:
                    self._requeue(batch)
                    raise
                self.written += len(batch)

    def _requeue(self, batch: list[UsageRecord]) -> None:
        self._queue[:0] = batch
        excess = len(self._queue) - self.max_backlog
        if excess > 0:
            del self._queue[:excess]
            self.dropped += excess
            log.error("usage backlog full: %d rows dropped", excess)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing usage rows failed; %d kept for the next try", self.pending)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("final usage flush failed: %d rows lost", self.pending)
