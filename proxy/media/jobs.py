"""Video jobs: asynchronous generations that clients poll, in OpenAI's video job shape.

A job runs as a task of the app's event loop; its state lives in memory (a restart
forgets jobs, not their files) and is dropped once its video has passed retention.
A job belongs to the team of the key that created it (``owner``, the team id): its
members share it, and another team cannot read or download its videos even when it
learns an id (to them the id does not exist).
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

from proxy.errors import NotFound, SwitchyardError, shown
from proxy.media.outputs import VideoOutput
from proxy.media.store import MediaStore, StoredMedia
from proxy.schemas.videos import Video, VideoError, VideoStatus

log = logging.getLogger("switchyard.videos")


class JobReporter(Protocol):
    """What an adapter's ``create_video`` reports through while it runs."""

    def accept(self) -> None:
        """The engine has taken the job (validated and queued it). Failures before this
        are answered to ``POST /v1/videos`` as HTTP errors; after it, as a failed job."""

    def report(self, percent: int) -> None:
        """Progress in percent; the first report marks the job ``in_progress``."""


JobRunner = Callable[[JobReporter], Awaitable[VideoOutput]]


@dataclass(slots=True)
class VideoJob:
    id: str
    model: str
    prompt: str
    seconds: str
    size: str
    owner: str
    created_at: float
    status: VideoStatus = "queued"
    progress: int = 0
    completed_at: float | None = None
    error: VideoError | None = None
    media: StoredMedia | None = None
    task: asyncio.Task[None] | None = None
    accepted: bool = False
    failure: SwitchyardError | None = None
    """The error that ended the job before the engine accepted it."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the job was accepted or has ended."""

    def accept(self) -> None:
        self.accepted = True
        self.settled.set()

    def report(self, percent: int) -> None:
        if self.status in ("completed", "failed"):
            return
        self.status = "in_progress"
        # Never backwards, never 100 before the file is stored.
        self.progress = max(self.progress, min(99, max(0, int(percent))))


class VideoJobs:
    def __init__(self, store: MediaStore) -> None:
        self.store = store
        self._jobs: dict[str, VideoJob] = {}

    def submit(self, job: VideoJob, run: JobRunner) -> VideoJob:
        self._jobs[job.id] = job
        job.task = asyncio.create_task(self._run(job, run), name=f"video-{job.id}")
        return job

    @staticmethod
    def new_id() -> str:
        return "video_" + secrets.token_hex(16)

    async def _run(self, job: VideoJob, run: JobRunner) -> None:
        try:
            output = await run(job)
        except SwitchyardError as error:
            job.status, job.error = (
                "failed",
                VideoError(code=error.error_code or error.error_type, message=error.message),
            )
            if not job.accepted:
                job.failure = error
        except asyncio.CancelledError:
            job.status = "failed"
            job.error = VideoError(code="cancelled", message="The job was cancelled.")
            raise
        except Exception:
            log.exception("video job %s failed", job.id)
            job.status = "failed"
            job.error = VideoError(code="server_error", message="The video job failed.")
        else:
            job.media, job.size, job.seconds = output.media, output.size, output.seconds
            job.status, job.progress = "completed", 100
        finally:
            job.completed_at = time.time()
            job.task = None
            job.settled.set()

    async def start(self, job: VideoJob, run: JobRunner) -> VideoJob:
        """Submit ``job`` and wait until the engine accepted it; raise what failed before."""
        self.submit(job, run)
        await job.settled.wait()
        if job.failure is not None:
            self._jobs.pop(job.id, None)
            raise job.failure
        return job

    def get(self, video_id: str, owner: str) -> VideoJob:
        job = self._jobs.get(video_id)
        if job is None or job.owner != owner:
            raise NotFound(f"No video found with id '{shown(video_id)}'.", param="video_id")
        return job

    def list(self, owner: str) -> list[VideoJob]:
        return sorted(
            (j for j in self._jobs.values() if j.owner == owner),
            key=lambda j: j.created_at,
            reverse=True,
        )

    def delete(self, video_id: str, owner: str) -> None:
        job = self.get(video_id, owner)
        del self._jobs[video_id]
        if job.task is not None:
            job.task.cancel()
        if job.media is not None:
            self.store.delete(job.media.id)

    def wire(self, job: VideoJob) -> Video:
        expires = None
        if job.media is not None:
            expires = int(self.store.expires_at(job.media.created))
        return Video(
            id=job.id,
            created_at=int(job.created_at),
            model=job.model,
            progress=job.progress,
            seconds=job.seconds,
            size=job.size,
            status=job.status,
            completed_at=None if job.completed_at is None else int(job.completed_at),
            expires_at=expires,
            error=job.error,
            prompt=job.prompt,
        )

    def sweep(self, now: float | None = None) -> int:
        """Forget finished jobs whose video has passed retention."""
        now = time.time() if now is None else now
        stale = [
            j.id
            for j in self._jobs.values()
            if j.completed_at is not None and now > self.store.expires_at(j.completed_at)
        ]
        for job_id in stale:
            del self._jobs[job_id]
        return len(stale)

    async def aclose(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
