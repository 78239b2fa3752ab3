"""Video jobs: states, progress, failures before and after acceptance, privacy, retention."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy.errors import InvalidRequest, NotFound, UpstreamTimeout
from proxy.media.jobs import JobReporter, VideoJob, VideoJobs
from proxy.media.outputs import VideoOutput
from proxy.media.store import MediaStore


@pytest.fixture
def jobs(tmp_path: Path) -> VideoJobs:
    return VideoJobs(MediaStore(tmp_path, retention_s=60))


def _job(jobs: VideoJobs, key: str | None = "k1") -> VideoJob:
    return VideoJob(
        id=jobs.new_id(),
        model="m",
        prompt="p",
        seconds="4",
        size="auto",
        owner=key,
        created_at=time.time(),
    )


async def test_lifecycle_queued_progress_completed(jobs: VideoJobs) -> None:
    gate = asyncio.Event()

    async def run(reporter: JobReporter) -> VideoOutput:
        reporter.accept()
        await gate.wait()
        reporter.report(40)
        reporter.report(20)  # never backwards
        await gate.wait()
        media = await jobs.store.save(b"\0\0\0\x18ftypmp42", "video/mp4")
        return VideoOutput(media, "64x48", "4")

    job = await jobs.start(_job(jobs), run)
    assert jobs.wire(job).status == "queued" and job.progress == 0
    gate.set()
    await _ended(job)
    wire = jobs.wire(job)
    assert wire.status == "completed" and wire.progress == 100 and wire.size == "64x48"
    assert wire.expires_at is not None and wire.completed_at is not None


async def test_progress_never_reaches_100_before_completion(jobs: VideoJobs) -> None:
    job = _job(jobs)
    job.report(250)
    assert job.status == "in_progress" and job.progress == 99


async def test_failure_before_acceptance_is_raised(jobs: VideoJobs) -> None:
    async def run(reporter: JobReporter) -> VideoOutput:
        raise InvalidRequest("no input image", param="input_reference")

    with pytest.raises(InvalidRequest, match="no input image"):
        await jobs.start(_job(jobs), run)
    assert jobs.list("k1") == []


async def test_failure_after_acceptance_fails_the_job(jobs: VideoJobs) -> None:
    async def run(reporter: JobReporter) -> VideoOutput:
        reporter.accept()
        await asyncio.sleep(0)
        raise UpstreamTimeout("took too long")

    job = await jobs.start(_job(jobs), run)
    await _ended(job)
    wire = jobs.wire(job)
    assert wire.status == "failed" and wire.error is not None
    assert wire.error.code == "upstream_timeout" and wire.error.message == "took too long"


async def test_jobs_are_private_to_their_key(jobs: VideoJobs) -> None:
    job = _job(jobs, key="k1")
    jobs.submit(job, _never)
    await asyncio.sleep(0)
    assert jobs.get(job.id, "k1") is job
    with pytest.raises(NotFound):
        jobs.get(job.id, "k2")
    with pytest.raises(NotFound):
        jobs.get(job.id, None)
    await jobs.aclose()
    assert job.status == "failed" and job.error is not None and job.error.code == "cancelled"


async def test_finished_jobs_are_forgotten_after_retention(jobs: VideoJobs) -> None:
    job = _job(jobs)
    jobs.submit(job, _fails)
    await _ended(job)
    assert jobs.sweep() == 0
    assert jobs.sweep(now=time.time() + 61) == 1
    assert jobs.list("k1") == []


async def _ended(job: VideoJob) -> None:
    if job.task is not None:
        await asyncio.wait([job.task])


async def _never(reporter: JobReporter) -> VideoOutput:
    reporter.accept()
    await asyncio.Event().wait()
    raise AssertionError


async def _fails(reporter: JobReporter) -> VideoOutput:
    reporter.accept()
    raise UpstreamTimeout("x")
