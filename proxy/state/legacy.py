"""Copying the pre-tenancy sessions database (``extensions/sessions``' own SQLite file)
into the state store, once.

The old file is opened read-only and never changed or deleted (it stays a backup). Its
resolved path is recorded in ``legacy_imports`` in the same transaction as the copy, so
an import happens exactly once, also with several replicas starting at once (the
second waits on the first one's row and then finds it). Sessions that already exist in
the store are left as they are, with their messages.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from proxy.state.schema import legacy_imports, messages, sessions

if TYPE_CHECKING:
    from proxy.state.store import StateStore

_BATCH = 1000
_OLD_MESSAGES = (
    "SELECT owner, session, seq, message, created FROM messages ORDER BY owner, session, seq"
)


async def import_legacy_sessions(store: StateStore, path: Path) -> int:
    """Copy every session and message of the old file at ``path`` into ``store``
    (owners, ids, times and order kept); the number of sessions copied, 0 when there is
    no such file or it was imported before."""
    path = await asyncio.to_thread(path.resolve)
    if not await asyncio.to_thread(path.is_file):
        return 0
    key = str(path)
    db = store.database
    async with db.read() as conn:
        done = await conn.execute(
            sa.select(legacy_imports.c.path).where(legacy_imports.c.path == key)
        )
        if done.first() is not None:
            return 0
    old = await _open_read_only(path)
    try:
        async with db.write() as conn:
            insert = (postgresql.insert if db.name == "postgresql" else sqlite.insert)(
                legacy_imports
            )
            claimed = await conn.execute(
                insert.values(
                    path=key, imported_at=time.time(), sessions=0, messages=0
                ).on_conflict_do_nothing(index_elements=[legacy_imports.c.path])
            )
            if claimed.rowcount == 0:
                return 0
            existing = {
                (r.owner, r.id)
                for r in await conn.execute(sa.select(sessions.c.owner, sessions.c.id))
            }
            copied: set[tuple[str, str]] = set()
            async with old.execute("SELECT owner, id, created, updated FROM sessions") as cursor:
                while batch := await cursor.fetchmany(_BATCH):
                    rows = [
                        {"owner": r[0], "id": r[1], "created": r[2], "updated": r[3]}
                        for r in batch
                        if (r[0], r[1]) not in existing
                    ]
                    if rows:
                        await conn.execute(sa.insert(sessions), rows)
                        copied.update((r["owner"], r["id"]) for r in rows)
            count = 0
            async with old.execute(_OLD_MESSAGES) as cursor:
                while batch := await cursor.fetchmany(_BATCH):
                    rows = [_message(r) for r in batch if (r[0], r[1]) in copied]
                    if rows:
                        await conn.execute(sa.insert(messages), rows)
                        count += len(rows)
            await conn.execute(
                sa.update(legacy_imports)
                .where(legacy_imports.c.path == key)
                .values(sessions=len(copied), messages=count)
            )
    finally:
        await old.close()
    return len(copied)


def _message(row: Any) -> dict[str, Any]:
    owner, session, seq, message, created = row
    text = message.decode("utf-8") if isinstance(message, bytes) else str(message)
    return {"owner": owner, "session": session, "seq": seq, "message": text, "created": created}


async def _open_read_only(path: Path) -> aiosqlite.Connection:
    """The old file at an absolute path, opened so that nothing is written beside it.

    With a ``-wal`` file (the old server did not shut down cleanly) its pages are part
    of the data: ``mode=ro`` reads them and refuses every write. Without one the file is
    whole, and ``immutable=1`` reads it without the ``-wal``/``-shm`` files that even a
    read-only WAL reader would otherwise leave behind."""
    wal = await asyncio.to_thread(path.with_name(path.name + "-wal").exists)
    mode = "mode=ro" if wal else "immutable=1"
    return await aiosqlite.connect(f"{path.as_uri()}?{mode}", uri=True)
