"""Media metadata, and the leases that let one replica sweep for all of them."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from proxy.state.engine import Database
from proxy.state.records import MediaRecord
from proxy.state.schema import leases, legacy_imports, media
from proxy.state.sql.common import to_record

_BATCH = 200


def _insert(engine: str, table: sa.Table) -> Any:
    return (postgresql.insert if engine == "postgresql" else sqlite.insert)(table)


class SqlMedia:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: MediaRecord) -> None:
        async with self._db.write() as conn:
            await conn.execute(sa.insert(media).values(msgspec.structs.asdict(record)))

    async def set_size(self, owner: str, media_id: str, size: int) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(media)
                .where(media.c.owner == owner, media.c.id == media_id)
                .values(size=size)
            )

    async def get(self, owner: str, media_id: str, now: float) -> MediaRecord | None:
        return await self._one(media.c.owner == owner, media.c.id == media_id, now=now)

    async def by_capability(self, media_id: str, now: float) -> MediaRecord | None:
        return await self._one(media.c.id == media_id, now=now)

    async def _one(self, *where: sa.ColumnElement[bool], now: float) -> MediaRecord | None:
        query = sa.select(media).where(*where, media.c.expires > now)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_record(row, MediaRecord) if row is not None else None

    async def delete(self, owner: str, media_id: str) -> MediaRecord | None:
        statement = (
            sa.delete(media)
            .where(media.c.owner == owner, media.c.id == media_id)
            .returning(*media.c)
        )
        async with self._db.write() as conn:
            row = (await conn.execute(statement)).mappings().first()
        return to_record(row, MediaRecord) if row is not None else None

    async def expired(self, now: float, limit: int) -> list[MediaRecord]:
        query = sa.select(media).where(media.c.expires <= now).order_by(media.c.expires)
        async with self._db.read() as conn:
            rows = (await conn.execute(query.limit(limit))).mappings().all()
        return [to_record(row, MediaRecord) for row in rows]

    async def forget(self, rows: list[MediaRecord]) -> int:
        if not rows:
            return 0
        pairs = [sa.and_(media.c.owner == r.owner, media.c.id == r.id) for r in rows]
        async with self._db.write() as conn:
            result = await conn.execute(sa.delete(media).where(sa.or_(*pairs)))
        return int(result.rowcount)

    async def imported(self, marker: str) -> bool:
        query = sa.select(legacy_imports.c.path).where(legacy_imports.c.path == marker)
        async with self._db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def import_once(self, marker: str, rows: list[MediaRecord]) -> int:
        async with self._db.write() as conn:
            claim = _insert(self._db.name, legacy_imports).values(
                path=marker, imported_at=time.time(), sessions=0, messages=0
            )
            claimed = await conn.execute(
                claim.on_conflict_do_nothing(index_elements=[legacy_imports.c.path])
            )
            if claimed.rowcount == 0 or not rows:
                return 0
            inserted = 0
            values = [msgspec.structs.asdict(r) for r in rows]
            for start in range(0, len(values), _BATCH):
                # One multi-row INSERT per batch: its rowcount is exact on both drivers
                # (asyncpg's executemany reports none).
                insert = _insert(self._db.name, media).values(values[start : start + _BATCH])
                result = await conn.execute(
                    insert.on_conflict_do_nothing(index_elements=[media.c.id])
                )
                inserted += int(result.rowcount)
        return inserted


class SqlLeases:
    """One row per lease. Taking it is a single upsert whose update only happens when
    the row's lease has run out or is already the holder's: PostgreSQL locks the
    conflicting row and re-checks the condition on its newest version, SQLite has one
    writer, so of two replicas asking at once exactly one gets it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, name: str, holder: str, ttl_s: float, now: float) -> bool:
        insert = _insert(self._db.name, leases).values(
            name=name, holder=holder, expires_at=now + ttl_s
        )
        statement = insert.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=sa.or_(leases.c.expires_at < now, leases.c.holder == holder),
        ).returning(leases.c.holder)
        async with self._db.write() as conn:
            row = (await conn.execute(statement)).first()
        return row is not None and row.holder == holder

    async def release(self, name: str, holder: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder)
            )
