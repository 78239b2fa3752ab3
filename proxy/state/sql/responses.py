"""Stored responses of the Responses API: every read and delete names the owner (team
and key); another owner's id reads as no such response."""

from __future__ import annotations

import msgspec
import sqlalchemy as sa

from proxy.state.engine import Database
from proxy.state.records import StoredResponse
from proxy.state.schema import responses
from proxy.state.sql.common import to_record


def _owned(team_id: str, key_id: str, response_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        responses.c.id == response_id,
        responses.c.team_id == team_id,
        responses.c.key_id == key_id,
    )


class SqlResponses:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: StoredResponse) -> None:
        async with self._db.write() as conn:
            await conn.execute(sa.insert(responses).values(msgspec.structs.asdict(record)))

    async def get(self, team_id: str, key_id: str, response_id: str) -> StoredResponse | None:
        query = sa.select(responses).where(_owned(team_id, key_id, response_id))
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_record(row, StoredResponse) if row is not None else None

    async def delete(self, team_id: str, key_id: str, response_id: str) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.delete(responses).where(_owned(team_id, key_id, response_id))
            )
        return bool(result.rowcount)
