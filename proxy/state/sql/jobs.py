"""Video jobs: created by the replica that runs them, read and deleted by any."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from proxy.state.engine import Database
from proxy.state.records import ACTIVE_JOB_STATUSES, JobOutcome, JobProgress, VideoJobRecord
from proxy.state.schema import media, video_jobs
from proxy.state.sql.common import to_record

_ACTIVE = video_jobs.c.status.in_(ACTIVE_JOB_STATUSES)
_WITH_EXPIRY = sa.select(video_jobs, media.c.expires.label("media_expires")).select_from(
    video_jobs.outerjoin(
        media, sa.and_(media.c.id == video_jobs.c.media_id, media.c.owner == video_jobs.c.owner)
    )
)


class SqlVideoJobs:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, job: VideoJobRecord) -> None:
        values = msgspec.structs.asdict(job)
        del values["media_expires"]
        async with self._db.write() as conn:
            await conn.execute(sa.insert(video_jobs).values(values))

    async def get(self, owner: str, job_id: str) -> VideoJobRecord | None:
        query = _WITH_EXPIRY.where(video_jobs.c.owner == owner, video_jobs.c.id == job_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_record(row, VideoJobRecord) if row is not None else None

    async def list(self, owner: str) -> list[VideoJobRecord]:
        query = _WITH_EXPIRY.where(video_jobs.c.owner == owner).order_by(
            video_jobs.c.created_at.desc(), video_jobs.c.id
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [to_record(row, VideoJobRecord) for row in rows]

    async def progress(self, owner: str, job_id: str, runner_id: str, update: JobProgress) -> bool:
        return await self._runner_update(owner, job_id, runner_id, msgspec.structs.asdict(update))

    async def finish(self, owner: str, job_id: str, runner_id: str, outcome: JobOutcome) -> bool:
        values = {k: v for k, v in msgspec.structs.asdict(outcome).items() if v is not None}
        return await self._runner_update(owner, job_id, runner_id, values)

    async def _runner_update(
        self, owner: str, job_id: str, runner_id: str, values: dict[str, Any]
    ) -> bool:
        statement = (
            sa.update(video_jobs)
            .where(
                video_jobs.c.owner == owner,
                video_jobs.c.id == job_id,
                video_jobs.c.runner_id == runner_id,
                _ACTIVE,
            )
            .values(**values)
        )
        async with self._db.write() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

    async def fail_stale(
        self, owner: str | None, before: float, now: float, code: str, message: str
    ) -> int:
        statement = (
            sa.update(video_jobs)
            .where(_ACTIVE, video_jobs.c.heartbeat_at < before)
            .values(status="failed", completed_at=now, error_code=code, error_message=message)
        )
        if owner is not None:
            statement = statement.where(video_jobs.c.owner == owner)
        async with self._db.write() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)

    async def delete(self, owner: str, job_id: str) -> VideoJobRecord | None:
        statement = (
            sa.delete(video_jobs)
            .where(video_jobs.c.owner == owner, video_jobs.c.id == job_id)
            .returning(*video_jobs.c)
        )
        async with self._db.write() as conn:
            row = (await conn.execute(statement)).mappings().first()
        return to_record(row, VideoJobRecord) if row is not None else None

    async def forget_finished(self, before: float) -> int:
        statement = sa.delete(video_jobs).where(
            sa.not_(_ACTIVE), video_jobs.c.completed_at < before
        )
        async with self._db.write() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)
