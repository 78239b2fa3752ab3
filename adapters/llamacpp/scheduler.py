"""Fair queueing per model, and the hand-off between the worker thread and the event loop.

llama.cpp runs in the model's worker thread, never on the event loop. A streamed job
pushes its items through a ``Channel`` (``call_soon_threadsafe`` into an asyncio
queue); the event loop side sets the channel's cancel flag when the client goes away,
and the generation loop checks that flag before every token, so a disconnect stops the
work within one token step and the next queued request starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from proxy.errors import RateLimited, SwitchyardError

log = logging.getLogger("switchyard.llamacpp")

T = TypeVar("T")


class RequestQueue:
    """FIFO admission to one model: one request runs, at most ``limit`` wait."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting = 0
        self.running = False
        self._lock = asyncio.Lock()
        self._mean_s = 2.0

    @asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[None]:
        """Wait for this request's turn (asyncio.Lock wakes waiters in FIFO order).

        A full queue is a 429 whose Retry-After is a hint for the client only: passed
        as ``retry_after_s`` it would make the router shut this deployment for that
        long, although a cancelled request can free the queue at any moment.
        """
        if self._lock.locked() and self.waiting >= self.limit:
            wait = max(1, round(self._mean_s * (self.waiting + 1)))
            raise RateLimited(
                f"Model '{name}' is busy and its queue is full ({self.limit} waiting); "
                "retry later.",
                headers={"Retry-After": str(wait)},
            )
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        started = time.monotonic()
        self.running = True
        try:
            yield
        finally:
            self.running = False
            self._lock.release()
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - started)


class Channel:
    """Items from a worker thread to the event loop, and a cancel flag the other way."""

    __slots__ = ("_loop", "_queue", "cancelled")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = threading.Event()

    def put(self, item: Any) -> None:
        """Called from the worker thread."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def get(self) -> Any:
        return await self._queue.get()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _as_error(error: BaseException) -> BaseException:
    if isinstance(error, SwitchyardError):
        return error
    log.error("llama.cpp job failed", exc_info=error)
    return SwitchyardError(f"Local inference failed: {type(error).__name__}: {error}")


async def stream_job(
    executor: Executor, work: Callable[[Channel], None]
) -> AsyncGenerator[Any, None]:
    """Run ``work(channel)`` on the worker thread and yield what it puts on the channel.

    Closing this generator (the client went away) sets ``channel.cancelled``.
    """
    channel = Channel()

    def run() -> None:
        try:
            if not channel.cancelled.is_set():
                work(channel)
        except BaseException as exc:
            channel.put(_Failed(exc))
        finally:
            channel.put(_END)

    executor.submit(run)
    try:
        while True:
            item = await channel.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise _as_error(item.error)
            yield item
    finally:
        channel.cancelled.set()


async def call_job(executor: Executor, work: Callable[[threading.Event], T]) -> T:
    """Run ``work(cancelled)`` on the worker thread; cancelling the caller sets the flag."""
    cancelled = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(executor, work, cancelled)
    try:
        return await future
    except asyncio.CancelledError:
        cancelled.set()
        raise
    except SwitchyardError:
        raise
    except Exception as exc:
        raise _as_error(exc) from None
