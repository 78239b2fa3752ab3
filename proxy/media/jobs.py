"""Video jobs: asynchronous generations that clients poll, in OpenAI's video job shape.

A job runs as a task on the replica that accepted it, but everything about it lives in
the state store (``VideoJobRepository``): any replica answers a poll, a listing, a
download or a delete. While the task runs it writes its status at once and its progress
at most every ``progress_write_s``, and refreshes a heartbeat every ``heartbeat_s``
under its ``runner_id`` (random per process). A job whose heartbeat is older than
``stale_after_s`` has lost its runner (the process died, or was cut off from the
database): whichever replica reads it first, or the retention sweep, marks it failed
with ``runner_lost``. A clean shutdown fails its own running jobs with ``shutdown``.
So no job stays in progress for ever. When a runner finds its job deleted (or already
declared lost) on another replica, it stops the work.

A job belongs to the team of the key that created it (``owner``, the team id): its
members share it, and another team cannot read or download its videos even when it
learns an id (to them the id does not exist). Finished jobs are forgotten once their
video has passed retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from proxy.errors import NotFound, SwitchyardError, shown
from proxy.media.outputs import VideoOutput
from proxy.media.store import MediaStore
from proxy.schemas.videos import Video, VideoError
from proxy.state.records import (
    ACTIVE_JOB_STATUSES,
    JobOutcome,
    JobProgress,
    JobStatus,
    VideoJobRecord,
)
from proxy.state.repositories import VideoJobRepository

log = logging.getLogger("switchyard.videos")

RUNNER_LOST = "runner_lost"
SHUTDOWN = ("shutdown", "The server running the job shut down before it finished.")
CANCELLED = ("cancelled", "The job was cancelled.")


class JobReporter(Protocol):
    """What an adapter's ``create_video`` reports through while it runs."""

    @property
    def owner(self) -> str:
        """The team the job (and so the video it stores) belongs to."""
        ...

    def accept(self) -> None:
        """The engine has taken the job (validated and queued it). Failures before this
        are answered to ``POST /v1/videos`` as HTTP errors; after it, as a failed job."""

    def report(self, percent: int) -> None:
        """Progress in percent; the first report marks the job ``in_progress``."""


JobRunner = Callable[[JobReporter], Awaitable[VideoOutput]]


@dataclass(slots=True)
class RunningJob:
    """A job this process runs: the reporter its adapter sees, and what is not written yet."""

    record: VideoJobRecord
    status: JobStatus = "queued"
    progress: int = 0
    accepted: bool = False
    failure: SwitchyardError | None = None
    """The error that ended the job before the engine accepted it."""
    task: asyncio.Task[None] | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the job was accepted or has ended."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    urgent: bool = False
    """The status changed: written at once, not at the progress write interval."""

    @property
    def owner(self) -> str:
        return self.record.owner

    def accept(self) -> None:
        self.accepted = True
        self.settled.set()

    def report(self, percent: int) -> None:
        if self.status not in ACTIVE_JOB_STATUSES:
            return
        if self.status != "in_progress":
            self.status, self.urgent = "in_progress", True
        # Never backwards, never 100 before the file is stored.
        self.progress = max(self.progress, min(99, max(0, int(percent))))
        self.changed.set()


class VideoJobs:
    def __init__(
        self,
        store: MediaStore,
        jobs: VideoJobRepository,
        *,
        runner_id: str | None = None,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 15.0,
        progress_write_s: float = 1.0,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.runner_id = runner_id or "runner_" + secrets.token_hex(8)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.progress_write_s = progress_write_s
        self._running: dict[str, RunningJob] = {}
        self._closing = False

    @staticmethod
    def new_id() -> str:
        return "video_" + secrets.token_hex(16)

    async def start(self, job: VideoJobRecord, run: JobRunner) -> VideoJobRecord:
        """Record ``job`` as run here, start it, and wait until the engine accepted it;
        raise what failed before (the job is then forgotten)."""
        record = msgspec.structs.replace(
            job, runner_id=self.runner_id, heartbeat_at=time.time(), status="queued"
        )
        await self.jobs.create(record)
        local = RunningJob(record)
        self._running[record.id] = local
        local.task = asyncio.create_task(self._run(local, run), name=f"video-{record.id}")
        await local.settled.wait()
        if local.failure is not None:
            await self.jobs.delete(record.owner, record.id)
            raise local.failure
        return self._overlay(record, self._running_now())

    async def _run(self, local: RunningJob, run: JobRunner) -> None:
        pump = asyncio.create_task(self._pump(local), name=f"video-pump-{local.record.id}")
        try:
            try:
                outcome = await self._outcome(local, run)
            except asyncio.CancelledError:
                await _stopped(pump)
                code, message = SHUTDOWN if self._closing else CANCELLED
                await self._finish(local, self._failed(local, code, message))
                raise
            await _stopped(pump)
            if local.failure is None:
                await self._finish(local, outcome)
        finally:
            pump.cancel()
            self._running.pop(local.record.id, None)
            local.settled.set()

    async def _outcome(self, local: RunningJob, run: JobRunner) -> JobOutcome:
        try:
            output = await run(local)
        except SwitchyardError as error:
            if not local.accepted:
                local.failure = error
            return self._failed(local, error.error_code or error.error_type, error.message)
        except Exception:
            log.exception("video job %s failed", local.record.id)
            return self._failed(local, "server_error", "The video job failed.")
        return JobOutcome(
            status="completed",
            completed_at=time.time(),
            progress=100,
            media_id=output.media.id,
            size=output.size,
            seconds=output.seconds,
        )

    @staticmethod
    def _failed(local: RunningJob, code: str, message: str) -> JobOutcome:
        return JobOutcome(
            status="failed",
            completed_at=time.time(),
            progress=local.progress,
            error_code=code,
            error_message=message,
        )

    async def _finish(self, local: RunningJob, outcome: JobOutcome) -> None:
        record = local.record
        local.status = outcome.status
        try:
            kept = await self.jobs.finish(record.owner, record.id, self.runner_id, outcome)
        except Exception:
            log.exception("video job %s: its outcome could not be recorded", record.id)
            kept = False
        if not kept and outcome.media_id is not None:  # deleted or lost meanwhile
            with contextlib.suppress(Exception):
                await self.store.delete(record.owner, outcome.media_id)

    async def _pump(self, local: RunningJob) -> None:
        """Heartbeat every ``heartbeat_s``; status changes at once, progress throttled."""
        record = local.record
        written = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(local.changed.wait(), self.heartbeat_s)
            if not local.urgent:  # progress only: not before its interval (nor a heartbeat's)
                interval = min(self.progress_write_s, self.heartbeat_s)
                await asyncio.sleep(max(0.0, written + interval - time.monotonic()))
            local.changed.clear()
            local.urgent = False
            update = JobProgress(
                status=local.status, progress=local.progress, heartbeat_at=time.time()
            )
            try:
                alive = await self.jobs.progress(record.owner, record.id, self.runner_id, update)
            except Exception:
                log.warning("video job %s: heartbeat not written", record.id, exc_info=True)
                continue
            written = time.monotonic()
            if not alive and local.task is not None:  # deleted, or declared lost, elsewhere
                local.task.cancel()
                return

    def _running_now(self) -> dict[str, RunningJob]:
        """The jobs running here, taken BEFORE a read of the store: a job leaves
        ``_running`` only after its outcome is written, so a record read as active is
        either overlaid by its live state or was read after the outcome. Taken after the
        read, a stale record could lose the overlay and show less progress than before."""
        return dict(self._running)

    def _overlay(self, record: VideoJobRecord, running: dict[str, RunningJob]) -> VideoJobRecord:
        """``record`` with the unwritten progress of a job that runs here."""
        local = running.get(record.id)
        if local is None or record.status not in ACTIVE_JOB_STATUSES:
            return record
        # While its outcome is being written the job has ended here but not yet in the
        # store: keep the stored status, but never show less progress than reported.
        status = local.status if local.status in ACTIVE_JOB_STATUSES else record.status
        progress = max(record.progress, local.progress)
        return msgspec.structs.replace(record, status=status, progress=progress)

    async def _lost_checked(self, owner: str, records: list[VideoJobRecord]) -> bool:
        """Fail the jobs of ``owner`` whose runner is gone; whether there were any."""
        now = time.time()
        before = now - self.stale_after_s
        if not any(r.status in ACTIVE_JOB_STATUSES and r.heartbeat_at < before for r in records):
            return False
        await self.jobs.fail_stale(owner, before, now, RUNNER_LOST, self._lost_message())
        return True

    def _lost_message(self) -> str:
        return (
            "The server running this job stopped before it finished (no heartbeat for "
            f"{self.stale_after_s:g} s)."
        )

    async def get(self, video_id: str, owner: str) -> VideoJobRecord:
        running = self._running_now()
        record = await self.jobs.get(owner, video_id)
        if record is not None and await self._lost_checked(owner, [record]):
            record = await self.jobs.get(owner, video_id)
        if record is None:
            raise NotFound(f"No video found with id '{shown(video_id)}'.", param="video_id")
        return self._overlay(record, running)

    async def list(self, owner: str) -> list[VideoJobRecord]:
        running = self._running_now()
        records = await self.jobs.list(owner)
        if await self._lost_checked(owner, records):
            records = await self.jobs.list(owner)
        return [self._overlay(r, running) for r in records]

    async def delete(self, video_id: str, owner: str) -> None:
        record = await self.jobs.delete(owner, video_id)
        if record is None:
            raise NotFound(f"No video found with id '{shown(video_id)}'.", param="video_id")
        local = self._running.get(video_id)
        if local is not None and local.task is not None:
            local.task.cancel()
        if record.media_id is not None:
            await self.store.delete(owner, record.media_id)

    def wire(self, job: VideoJobRecord) -> Video:
        error = None
        if job.error_code is not None:
            error = VideoError(code=job.error_code, message=job.error_message or "")
        return Video(
            id=job.id,
            created_at=int(job.created_at),
            model=job.model,
            progress=job.progress,
            seconds=job.seconds,
            size=job.size,
            status=job.status,
            completed_at=None if job.completed_at is None else int(job.completed_at),
            expires_at=None if job.media_expires is None else int(job.media_expires),
            error=error,
            prompt=job.prompt,
        )

    async def sweep(self, now: float | None = None) -> int:
        """Fail jobs whose runner is gone (nobody may be polling them) and forget finished
        jobs whose video has passed retention; how many were forgotten."""
        now = time.time() if now is None else now
        await self.jobs.fail_stale(
            None, now - self.stale_after_s, now, RUNNER_LOST, self._lost_message()
        )
        return await self.jobs.forget_finished(now - self.store.retention_s)

    async def aclose(self) -> None:
        """Stop the jobs running here; each is recorded as failed with ``shutdown``."""
        self._closing = True
        tasks = [j.task for j in self._running.values() if j.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
