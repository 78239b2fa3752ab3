"""Directory-index jobs: a large index runs in the background and is polled.

A job runs as a task on the replica that accepted it, but what a poll reads lives in
the state store (``ExtensionJobRepository``, kind ``rag.index``): any replica answers
for any job, and a restart does not forget finished ones. The stored document is the
wire ``IndexJob`` itself. While the task runs it writes status changes at once,
progress at most every ``progress_write_s``, and a heartbeat every ``heartbeat_s``
under this process's ``runner_id``; a job still waiting for a slot heartbeats too.

A job whose heartbeat is older than ``stale_after_s`` has lost its replica (killed, or
cut off from the database): whichever replica reads it first marks it ``failed`` with
``runner_lost``, so no job is reported running for ever. A clean shutdown cancels the
replica's own unfinished jobs and records them ``cancelled`` with ``shutdown``. When
the runner finds its job already ended elsewhere, it stops the work.

A job belongs to the caller that started it (its owner id): another caller gets 404, as
for anything it does not own. At most ``running_at_once`` jobs run at a time on each
replica (indexing is CPU-bound); the others wait ``queued``. Finished jobs are kept for
polling for ``keep_finished_s``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from extensions.rag.schemas import IndexJob, IndexProgress, IndexReport, JobStatus
from proxy.errors import NotFound, SwitchyardError, shown
from proxy.state.records import (
    ACTIVE_EXTENSION_JOB_STATUSES,
    ExtensionJobChange,
    ExtensionJobRecord,
)
from proxy.state.repositories import ExtensionJobRepository

log = logging.getLogger("switchyard.rag")

KIND = "rag.index"
"""The kind of the RAG extension's jobs in the state store."""
IndexWork = Callable[[IndexProgress], Awaitable[IndexReport]]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(IndexJob).decode


def _error(message: str, code: str, kind: str = "server_error") -> dict[str, Any]:
    return {"message": message, "type": kind, "param": None, "code": code}


_UNEXPECTED = _error(
    "The index job failed unexpectedly; the server log has the cause.", "server_error"
)
_SHUTDOWN = _error("The server running the index job shut down before it finished.", "shutdown")


@dataclass(slots=True)
class _Running:
    """A job this process runs: the live job (progress mutated by the work) and its task."""

    owner: str
    job: IndexJob
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    urgent: bool = False
    """The status changed: written at once, not at the progress interval."""


class IndexJobs:
    """The index jobs of every replica, run here when started here (see the module doc)."""

    def __init__(
        self,
        jobs: ExtensionJobRepository,
        *,
        running_at_once: int = 1,
        runner_id: str | None = None,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 15.0,
        progress_write_s: float = 1.0,
        keep_finished_s: float = 86_400.0,
    ) -> None:
        self.jobs = jobs
        self.runner_id = runner_id or "runner_" + secrets.token_hex(8)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.progress_write_s = progress_write_s
        self.keep_finished_s = keep_finished_s
        self._slots = asyncio.Semaphore(running_at_once)
        self._running: dict[str, _Running] = {}
        self._closing = False

    async def start(
        self, owner: str, collection: str, files_total: int, work: IndexWork
    ) -> IndexJob:
        """Record ``work(progress)`` as a job of ``owner`` run here and start it; returns
        the job (``queued``)."""
        now = time.time()
        job = IndexJob(
            id=f"ragjob_{secrets.token_hex(12)}",
            collection=collection,
            status="queued",
            progress=IndexProgress(files_total=files_total),
            created_at=int(now),
        )
        with contextlib.suppress(Exception):  # retention is best effort
            # Jobs nobody polls end too: a lost one is failed, then forgotten in time.
            await self.jobs.fail_stale(KIND, now - self.stale_after_s, self._lost_reason(), now)
            await self.jobs.forget_finished(KIND, now - self.keep_finished_s)
        await self.jobs.create(
            ExtensionJobRecord(
                kind=KIND,
                id=job.id,
                owner=owner,
                status="queued",
                document=_encode(job),
                runner_id=self.runner_id,
                heartbeat_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        local = _Running(owner=owner, job=job)
        self._running[job.id] = local
        local.task = asyncio.create_task(self._run(local, work), name=f"rag index {job.id}")
        return _copy(job)

    async def get(self, owner: str, collection: str, job_id: str) -> IndexJob:
        """The job, or ``NotFound`` when it is not ``owner``'s in ``collection`` (or never
        existed, or was forgotten). A job whose runner is gone is failed first."""
        running = self._running_now()
        record = await self.jobs.get(KIND, owner, job_id)
        if record is not None and await self._lost_checked([record]):
            record = await self.jobs.get(KIND, owner, job_id)
        job = self._wire(record, running) if record is not None else None
        if job is None or job.collection != collection:
            raise NotFound(
                f"No index job '{shown(job_id)}' in collection '{collection}'.", param="id"
            )
        return job

    async def list(self, owner: str, collection: str) -> list[IndexJob]:
        """``owner``'s jobs in ``collection``, newest first."""
        running = self._running_now()
        records = await self.jobs.list(KIND, owner)
        if await self._lost_checked(records):
            records = await self.jobs.list(KIND, owner)
        wire = (self._wire(r, running) for r in records)
        return [job for job in wire if job is not None and job.collection == collection]

    def running(self) -> int:
        """How many jobs this process is running or has queued."""
        return len(self._running)

    async def aclose(self) -> None:
        """Cancel the jobs running here; each is recorded ``cancelled`` (``shutdown``)."""
        self._closing = True
        tasks = [r.task for r in self._running.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # -- running -------------------------------------------------------------------------

    async def _run(self, local: _Running, work: IndexWork) -> None:
        job = local.job
        pump = asyncio.create_task(self._pump(local), name=f"rag index pump {job.id}")
        try:
            try:
                async with self._slots:
                    self._set(local, "running")
                    job.result = await work(job.progress)
                    job.status = "succeeded"
            except asyncio.CancelledError:
                job.status = "cancelled"
                if self._closing:
                    job.error = _SHUTDOWN
                await _stopped(pump)
                await self._write_end(local)
                raise
            except SwitchyardError as exc:
                job.status, job.error = "failed", msgspec.to_builtins(exc.body().error)
            except Exception:
                log.exception("index job %s failed", job.id)
                job.status, job.error = "failed", _UNEXPECTED
            await _stopped(pump)
            await self._write_end(local)
        finally:
            pump.cancel()
            self._running.pop(job.id, None)

    def _set(self, local: _Running, status: JobStatus) -> None:
        local.job.status = status
        local.urgent = True
        local.changed.set()

    async def _write_end(self, local: _Running) -> None:
        change = ExtensionJobChange(
            now=time.time(), status=local.job.status, document=_encode(local.job)
        )
        try:
            await self.jobs.update(KIND, local.owner, local.job.id, self.runner_id, change)
        except Exception:
            log.exception("index job %s: its outcome could not be recorded", local.job.id)

    async def _pump(self, local: _Running) -> None:
        """Heartbeat every ``heartbeat_s``; status changes at once, progress throttled.

        The work moves its progress counters without waking the pump, so a change of
        progress is written at most every ``progress_write_s``; a status change wakes it."""
        job = local.job
        interval = min(self.progress_write_s, self.heartbeat_s)
        written_progress = msgspec.structs.astuple(job.progress)
        written_at = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(local.changed.wait(), interval)
            local.changed.clear()
            progress = msgspec.structs.astuple(job.progress)
            urgent, moved = local.urgent, progress != written_progress
            if not (urgent or moved) and time.monotonic() - written_at < self.heartbeat_s:
                continue
            local.urgent = False
            change = ExtensionJobChange(
                now=time.time(),
                status=job.status if urgent else None,
                document=_encode(job) if urgent or moved else None,
            )
            try:
                alive = await self.jobs.update(KIND, local.owner, job.id, self.runner_id, change)
            except Exception:
                log.warning("index job %s: heartbeat not written", job.id, exc_info=True)
                local.urgent = local.urgent or urgent  # the status is still to be written
                continue
            written_progress, written_at = progress, time.monotonic()
            if not alive and local.task is not None:  # ended elsewhere (taken as lost)
                local.task.cancel()
                return

    # -- reading -------------------------------------------------------------------------

    async def _lost_checked(self, records: builtins.list[ExtensionJobRecord]) -> bool:
        """Fail the jobs whose runner is gone; whether any of ``records`` were."""
        now = time.time()
        before = now - self.stale_after_s
        active = ACTIVE_EXTENSION_JOB_STATUSES
        if not any(r.status in active and r.heartbeat_at < before for r in records):
            return False
        await self.jobs.fail_stale(KIND, before, self._lost_reason(), now)
        return True

    def _lost_reason(self) -> str:
        return (
            "The replica running this index job stopped before it finished (no heartbeat "
            f"for {self.stale_after_s:g} s)."
        )

    def _running_now(self) -> dict[str, _Running]:
        """The jobs running here, taken BEFORE a read of the store: a job that ends while
        the read is under way has written its outcome before it leaves ``_running``, so
        a record read as active is either still overlaid by its live state or was read
        after the outcome; taken after the read, a stale active record could lose its
        live state and go back from ``succeeded`` to ``running``."""
        return dict(self._running)

    def _wire(self, record: ExtensionJobRecord, running: dict[str, _Running]) -> IndexJob | None:
        """The wire job of ``record``: its document, with the record's status (and, for a
        job failed as stale, the error), overlaid by the live state when it runs here
        (``running``: see ``_running_now``)."""
        try:
            job = _decode(record.document)
        except msgspec.DecodeError:
            log.error("index job %s: its stored document is unreadable", record.id)
            return None
        job.status = record.status
        if record.status == "failed" and job.error is None:
            job.error = _error(record.error or "The index job failed.", "runner_lost")
        local = running.get(record.id)
        if local is not None and record.status in ACTIVE_EXTENSION_JOB_STATUSES:
            return _copy(local.job)
        return job


def _copy(job: IndexJob) -> IndexJob:
    return msgspec.structs.replace(job, progress=msgspec.structs.replace(job.progress))


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
