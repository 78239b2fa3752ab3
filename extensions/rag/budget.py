"""How much work one ingestion may still do, shared with the worker threads doing it.

Reading, parsing and chunking run in worker threads so the event loop stays free, and
a thread cannot be cancelled: when the request is abandoned (the client left, its job
was cancelled, the server shuts down) the event loop calls ``abandon()`` and the
thread stops at its next ``check()``. ``spend_chunk()`` counts the chunks made and
stops the work once more than ``max_chunks`` would have to be embedded, before any
embedding started.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WorkAbandoned(Exception):
    """The ingestion this work belonged to was abandoned; nothing more is needed."""


class TooManyChunks(Exception):
    """More chunks than the request may embed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} chunks")
        self.limit = limit


class WorkBudget:
    """A chunk allowance and an abandon flag, safe to use from any thread."""

    def __init__(self, max_chunks: int | None = None) -> None:
        self.max_chunks = max_chunks
        self.chunks = 0
        self._abandoned = threading.Event()
        self._count_lock = threading.Lock()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def abandon(self) -> None:
        self._abandoned.set()

    def check(self) -> None:
        """Raise ``WorkAbandoned`` once ``abandon()`` was called."""
        if self._abandoned.is_set():
            raise WorkAbandoned

    def spend_chunk(self) -> None:
        """Count one more chunk; ``TooManyChunks`` past the allowance."""
        self.check()
        with self._count_lock:
            self.chunks += 1
            if self.max_chunks is not None and self.chunks > self.max_chunks:
                raise TooManyChunks(self.max_chunks)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread; if the awaiting task is cancelled, the
        budget is abandoned so the thread stops at its next ``check()``."""
        try:
            return await asyncio.to_thread(fn, *args)
        except asyncio.CancelledError:
            self.abandon()
            raise
