"""Extension jobs: created by the replica that runs them, read by any."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from proxy.state.engine import Database
from proxy.state.records import (
    ACTIVE_EXTENSION_JOB_STATUSES,
    ExtensionJobChange,
    ExtensionJobRecord,
)
from proxy.state.schema import extension_jobs
from proxy.state.sql.common import to_record

_ACTIVE = extension_jobs.c.status.in_(ACTIVE_EXTENSION_JOB_STATUSES)


class SqlExtensionJobs:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, job: ExtensionJobRecord) -> None:
        async with self._db.write() as conn:
            await conn.execute(sa.insert(extension_jobs).values(msgspec.structs.asdict(job)))

    async def get(self, kind: str, owner: str, job_id: str) -> ExtensionJobRecord | None:
        query = sa.select(extension_jobs).where(
            extension_jobs.c.kind == kind,
            extension_jobs.c.owner == owner,
            extension_jobs.c.id == job_id,
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_record(row, ExtensionJobRecord) if row is not None else None

    async def list(self, kind: str, owner: str) -> list[ExtensionJobRecord]:
        query = (
            sa.select(extension_jobs)
            .where(extension_jobs.c.kind == kind, extension_jobs.c.owner == owner)
            .order_by(extension_jobs.c.created_at.desc(), extension_jobs.c.id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [to_record(row, ExtensionJobRecord) for row in rows]

    async def update(
        self, kind: str, owner: str, job_id: str, runner_id: str, change: ExtensionJobChange
    ) -> bool:
        values: dict[str, Any] = {"heartbeat_at": change.now, "updated_at": change.now}
        if change.status is not None:
            values["status"] = change.status
        if change.document is not None:
            values["document"] = change.document
        statement = (
            sa.update(extension_jobs)
            .where(
                extension_jobs.c.kind == kind,
                extension_jobs.c.owner == owner,
                extension_jobs.c.id == job_id,
                extension_jobs.c.runner_id == runner_id,
                _ACTIVE,
            )
            .values(**values)
        )
        async with self._db.write() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

    async def fail_stale(self, kind: str, stale_before: float, reason: str, now: float) -> int:
        statement = (
            sa.update(extension_jobs)
            .where(
                extension_jobs.c.kind == kind, _ACTIVE, extension_jobs.c.heartbeat_at < stale_before
            )
            .values(status="failed", error=reason, updated_at=now)
        )
        async with self._db.write() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)

    async def forget_finished(self, kind: str, before: float) -> int:
        statement = sa.delete(extension_jobs).where(
            extension_jobs.c.kind == kind,
            sa.not_(_ACTIVE),
            extension_jobs.c.updated_at < before,
        )
        async with self._db.write() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount)
