"""Directory-index jobs: a large index runs in the background and is polled.

``IndexJobs`` keeps them in this process's memory: a restart forgets them and another
replica does not see them. Everything reaches jobs through this class (start, get,
close), so moving them into the state layer changes this module only.

A job belongs to the caller that started it (its key id): another caller gets 404, as
for anything it does not own. At most ``running_at_once`` jobs run at a time (indexing
is CPU-bound); the others wait ``queued``. Finished jobs are kept for polling, the most
recent ``keep_finished`` of them. Closing cancels every job that has not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from extensions.rag.schemas import IndexJob, IndexProgress, IndexReport
from proxy.errors import NotFound, SwitchyardError

log = logging.getLogger("switchyard.rag")

IndexWork = Callable[[IndexProgress], Awaitable[IndexReport]]
_FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class _Entry:
    owner: str
    job: IndexJob
    task: asyncio.Task[None] | None = None


class IndexJobs:
    """The index jobs of one process (see the module doc)."""

    def __init__(self, *, running_at_once: int = 1, keep_finished: int = 256) -> None:
        self._entries: dict[str, _Entry] = {}
        self._slots = asyncio.Semaphore(running_at_once)
        self._keep_finished = keep_finished

    def start(self, owner: str, collection: str, files_total: int, work: IndexWork) -> IndexJob:
        """Queue ``work(progress)`` as a job of ``owner``; returns the job (``queued``)."""
        job = IndexJob(
            id=f"ragjob_{secrets.token_hex(12)}",
            collection=collection,
            status="queued",
            progress=IndexProgress(files_total=files_total),
            created_at=int(time.time()),
        )
        entry = _Entry(owner=owner, job=job)
        self._entries[job.id] = entry
        entry.task = asyncio.create_task(self._run(entry, work), name=f"rag index {job.id}")
        self._forget_old()
        return msgspec.structs.replace(job)

    def get(self, owner: str, collection: str, job_id: str) -> IndexJob:
        """A snapshot of the job, or ``NotFound`` when it is not ``owner``'s in
        ``collection`` (or never existed, or was forgotten)."""
        entry = self._entries.get(job_id)
        if entry is None or entry.owner != owner or entry.job.collection != collection:
            raise NotFound(f"No index job '{job_id}' in collection '{collection}'.", param="id")
        job = entry.job
        return msgspec.structs.replace(job, progress=msgspec.structs.replace(job.progress))

    async def aclose(self) -> None:
        """Cancel every unfinished job and wait for them to stop."""
        tasks = [e.task for e in self._entries.values() if e.task and not e.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, entry: _Entry, work: IndexWork) -> None:
        job = entry.job
        try:
            async with self._slots:
                job.status = "running"
                job.result = await work(job.progress)
                job.status = "succeeded"
        except asyncio.CancelledError:
            job.status = "cancelled"
            raise
        except SwitchyardError as exc:
            job.status = "failed"
            job.error = msgspec.to_builtins(exc.body().error)
        except Exception:
            log.exception("index job %s failed", job.id)
            job.status = "failed"
            job.error = {
                "message": "The index job failed unexpectedly; the server log has the cause.",
                "type": "server_error",
                "param": None,
                "code": None,
            }

    def _forget_old(self) -> None:
        finished = [k for k, e in self._entries.items() if e.job.status in _FINISHED]
        for job_id in finished[: max(0, len(finished) - self._keep_finished)]:
            del self._entries[job_id]
