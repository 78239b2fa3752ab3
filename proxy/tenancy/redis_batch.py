"""Redis script calls made in the same event-loop turn, sent as one pipelined round trip.

Under load many requests reach the limiter at once (a burst of upstream answers wakes
them together). Each ``call`` is queued and the first one schedules a flush for the next
loop turn; the flush sends every queued call in one pipeline (not a transaction: each
script is atomic by itself) and resolves each caller's future with its own result. So
the cost per request of the Redis round trip (a socket write and read, a connection
from the pool, the task wake-ups) is shared by the requests of a burst, while each
call keeps its own answer and its own error. A lone request still takes one round trip.

Written here rather than taken from a library: redis-py pipelines batch the commands
of one caller; coalescing the calls of independent callers is this small queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("switchyard.tenancy")

MAX_BATCH = 256
"""Calls sent in one pipeline at most; more wait for the next flush."""


class ScriptBatcher:
    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._queue: list[tuple[Any, Sequence[str], Sequence[Any], asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None

    def call(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue ``script(keys, args)``; the future resolves to its result (or error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush(), name="redis-batch")
        return future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._send(batch)
        finally:
            self._flushing = None

    async def _send(self, batch: list[tuple[Any, Sequence[str], Sequence[Any], Any]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    await script(keys=keys, args=args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Wait until the calls queued so far have been answered."""
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
