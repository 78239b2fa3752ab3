"""Usage rows, queued in memory and written in batches off the hot path.

A request's row is appended to a list when the request ends (no I/O, no task); one
background task writes the queue every ``interval_s`` or as soon as ``max_rows`` are
waiting, in one transaction per batch. Shutdown flushes what is left. A process killed
with SIGKILL loses at most the rows of one interval (what had not been written yet).

A batch the database cannot take now (it is away, or busy) stays queued, in order, for
the next tick, up to ``max_backlog`` rows; beyond that the oldest are dropped and
counted, so a long outage cannot exhaust memory. A batch the database refuses for what
it holds is written row by row, and only a row refused by itself is dropped (and
counted): one bad row never blocks the others. A write interrupted by cancellation
puts its batch back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from proxy.state.engine import is_unavailable
from proxy.state.records import UsageRecord
from proxy.state.repositories import UsageRepository

log = logging.getLogger("switchyard.usage")

#: Column widths of the usage table (``proxy.state.schema``) for values a client chose.
_WIDTHS = {"request_id": 128, "key_id": 64, "team_id": 64, "model": 200, "deployment": 200}


def fitted(row: UsageRecord) -> UsageRecord:
    """``row`` with every text cut to its column's width (a model name is the client's)."""
    for field, width in _WIDTHS.items():
        value = getattr(row, field)
        if len(value) > width:
            setattr(row, field, value[:width])
    return row


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
        """Rows given up: over the backlog bound, or refused by the database."""
        self.written = 0
        self._queue: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    def record(self, row: UsageRecord) -> None:
        queue = self._queue
        queue.append(fitted(row))
        if len(queue) >= self.max_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Write everything queued now (the usage API calls this before it reads).
        Raises when the database is unavailable (the rows stay queued)."""
        async with self._lock:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._write(batch)
                except BaseException:
                    self._requeue(batch)
                    raise

    async def _write(self, batch: list[UsageRecord]) -> None:
        try:
            await self.repository.insert_many(batch)
        except Exception as exc:
            if is_unavailable(exc) or len(batch) == 1:
                raise
            await self._write_one_by_one(batch)
            return
        self.written += len(batch)

    async def _write_one_by_one(self, batch: list[UsageRecord]) -> None:
        while batch:
            row = batch[0]
            try:
                await self.repository.insert_many([row])
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                self.dropped += 1
                log.error("usage row %s refused by the database: dropped", row.request_id)
            else:
                self.written += 1
            del batch[0]  # what is left is requeued if the database goes away

    def _requeue(self, batch: list[UsageRecord]) -> None:
        self._queue[:0] = batch
        excess = len(self._queue) - self.max_backlog
        if excess > 0:
            del self._queue[:excess]
            self.dropped += excess
            log.error("usage backlog full: %d rows dropped", excess)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.warning("writing usage rows failed; %d kept for the next try", self.pending)

    async def aclose(self) -> None:
        """Stop the writer between two writes (never in the middle of one), then write
        what is left."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("final usage flush failed: %d rows lost", self.pending)
