"""The sessions store as it was before the state layer (kept only to write the
pre-tenancy file that ``tests/unit/state/test_legacy.py`` upgrades from).

Conversations in SQLite (aiosqlite, WAL mode), scoped to the API key that made them.

Every row carries the owner's ``key_id`` (a digest of the key, never the key), and
every query filters on it: one key can never read, list or delete another key's
session, even by guessing its id — to that key the id simply does not exist.

Writes are atomic, also with several turns on one session at once: each write is one
``BEGIN IMMEDIATE`` transaction (SQLite's write lock is taken before the next sequence
number is read, so several processes on one file queue up instead of colliding), and
one lock per store keeps the writes of concurrent requests on the shared connection
from interleaving inside one another's transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE TABLE IF NOT EXISTS messages (
    owner TEXT NOT NULL,
    session TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (owner, session, seq),
    FOREIGN KEY (owner, session) REFERENCES sessions (owner, id) ON DELETE CASCADE
);
"""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class SessionInfo(msgspec.Struct):
    id: str
    created_at: int
    updated_at: int
    message_count: int
    object: str = "switchyard.session"


class SessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(_SCHEMA)
        await db.commit()
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("session store is not open")
        return self._db

    async def history(self, owner: str, session: str) -> list[dict[str, Any]]:
        rows = await self.db.execute_fetchall(
            "SELECT message FROM messages WHERE owner = ? AND session = ? ORDER BY seq",
            (owner, session),
        )
        return [_decode(row[0]) for row in rows]

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed when the block ends, rolled back on error."""
        async with self._write_lock:
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()

    async def append(self, owner: str, session: str, messages: list[dict[str, Any]]) -> None:
        """Add messages to the end of a session (creating it), together, in one transaction."""
        now = time.time()
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO sessions (owner, id, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (owner, id) DO UPDATE SET updated = excluded.updated",
                (owner, session, now, now),
            )
            await db.executemany(
                "INSERT INTO messages (owner, session, seq, message, created) "
                "SELECT ?, ?, COALESCE(MAX(seq), -1) + 1, ?, ? FROM messages "
                "WHERE owner = ? AND session = ?",
                [(owner, session, _encode(m), now, owner, session) for m in messages],
            )

    _INFO = (
        "SELECT s.id, s.created, s.updated, (SELECT COUNT(*) FROM messages m "
        "WHERE m.owner = s.owner AND m.session = s.id) FROM sessions s WHERE s.owner = ?"
    )

    async def list(self, owner: str) -> list[SessionInfo]:
        rows = await self.db.execute_fetchall(self._INFO + " ORDER BY s.updated DESC", (owner,))
        return [SessionInfo(r[0], int(r[1]), int(r[2]), r[3]) for r in rows]

    async def get(self, owner: str, session: str) -> SessionInfo | None:
        rows = list(await self.db.execute_fetchall(self._INFO + " AND s.id = ?", (owner, session)))
        return (
            SessionInfo(rows[0][0], int(rows[0][1]), int(rows[0][2]), rows[0][3]) if rows else None
        )

    async def delete(self, owner: str, session: str) -> bool:
        async with self._writing() as db:
            cursor = await db.execute(
                "DELETE FROM sessions WHERE owner = ? AND id = ?", (owner, session)
            )
        return cursor.rowcount > 0
