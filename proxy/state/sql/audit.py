"""The audit log: append-only, paged newest first."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from proxy.state.engine import Database
from proxy.state.records import AuditEntry
from proxy.state.schema import audit
from proxy.state.sql.common import decode_cursor, encode_cursor, to_record


class SqlAudit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, entry: AuditEntry) -> AuditEntry:
        values = msgspec.structs.asdict(entry)
        del values["id"]
        async with self._db.write() as conn:
            result = await conn.execute(sa.insert(audit).values(values).returning(audit.c.id))
            new_id = int(result.scalar_one())
        return msgspec.structs.replace(entry, id=new_id)

    async def list(
        self, limit: int, cursor: str | None, *, target: str | None = None
    ) -> tuple[list[AuditEntry], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sa.select(audit)
        if target is not None:
            query = query.where(audit.c.target == target)
        if cursor is not None:
            (before,) = decode_cursor(cursor, 1)
            query = query.where(audit.c.id < before)
        query = query.order_by(audit.c.id.desc()).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        page = [to_record(row, AuditEntry) for row in rows[:limit]]
        next_cursor = encode_cursor(page[-1].id or 0) if len(rows) > limit else None
        return page, next_cursor
