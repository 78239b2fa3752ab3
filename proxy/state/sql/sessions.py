"""Conversations, owned by a key; each message has its session's next sequence number.

An append reads the session's highest ``seq`` and writes after it, so two appends on
one session must not interleave. SQLite: the engine's single writer
(``Database.write``) already orders them. PostgreSQL: the append first upserts the
session row, and ``INSERT ... ON CONFLICT DO UPDATE`` locks that row until commit (a
concurrent first insert of the same session waits on the unique key, then takes the
update path and the lock), so the ``MAX(seq)`` read after it sees every committed
message and no other append can be between the read and the commit.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy.state.engine import Database
from proxy.state.records import SessionInfo
from proxy.state.schema import messages as message_rows
from proxy.state.schema import sessions

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode

_COUNT = (
    sa.select(sa.func.count())
    .where(message_rows.c.owner == sessions.c.owner, message_rows.c.session == sessions.c.id)
    .scalar_subquery()
)
_INFO = sa.select(sessions.c.id, sessions.c.created, sessions.c.updated, _COUNT.label("n"))


def _info(row: sa.Row[Any]) -> SessionInfo:
    return SessionInfo(row.id, int(row.created), int(row.updated), int(row.n))


async def upsert_session(
    conn: AsyncConnection, engine: str, owner: str, session: str, created: float, updated: float
) -> None:
    """Create the session, or set its ``updated``; locks its row until commit."""
    insert = (postgresql.insert if engine == "postgresql" else sqlite.insert)(sessions)
    statement = insert.values(owner=owner, id=session, created=created, updated=updated)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[sessions.c.owner, sessions.c.id],
            set_={"updated": statement.excluded.updated},
        )
    )


class SqlSessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, owner: str, session: str) -> list[dict[str, Any]]:
        query = (
            sa.select(message_rows.c.message)
            .where(message_rows.c.owner == owner, message_rows.c.session == session)
            .order_by(message_rows.c.seq)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).scalars().all()
        return [_decode(row) for row in rows]

    async def append(self, owner: str, session: str, messages: list[dict[str, Any]]) -> None:
        now = time.time()
        encoded = [_encode(m).decode() for m in messages]
        async with self._db.write() as conn:
            await upsert_session(conn, self._db.name, owner, session, now, now)
            if not encoded:
                return
            last = (
                await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(message_rows.c.seq), -1)).where(
                        message_rows.c.owner == owner, message_rows.c.session == session
                    )
                )
            ).scalar_one()
            await conn.execute(
                sa.insert(message_rows),
                [
                    {"owner": owner, "session": session, "seq": last + 1 + i, "message": m}
                    | {"created": now}
                    for i, m in enumerate(encoded)
                ],
            )

    async def list(self, owner: str) -> list[SessionInfo]:
        query = _INFO.where(sessions.c.owner == owner).order_by(
            sessions.c.updated.desc(), sessions.c.id
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_info(row) for row in rows]

    async def get(self, owner: str, session: str) -> SessionInfo | None:
        query = _INFO.where(sessions.c.owner == owner, sessions.c.id == session)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return _info(row) if row is not None else None

    async def delete(self, owner: str, session: str) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.delete(sessions).where(sessions.c.owner == owner, sessions.c.id == session)
            )
        return result.rowcount > 0
