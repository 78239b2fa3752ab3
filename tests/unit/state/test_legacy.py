"""Copying the pre-tenancy sessions file (written by the old ``SessionStore``) in, once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from proxy.state import StateStore, import_legacy_sessions, open_state
from proxy.state.config import StateConfig
from proxy.state.schema import legacy_imports, sessions
from tests.support.legacy_session_store import SessionStore


async def write_old_file(path: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    old = SessionStore(path)
    await old.open()
    written: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for owner in ("alice", "bob"):
            for n in range(3):
                sid = f"s{n}"
                turns: list[dict[str, Any]] = [
                    {"role": "user", "content": f"{owner} {sid} {i} ünïcode"} for i in range(n + 1)
                ]
                await old.append(owner, sid, turns)
                await old.append(owner, sid, [{"role": "assistant", "content": None}])
                written[(owner, sid)] = [*turns, {"role": "assistant", "content": None}]
        await old.append("alice", "empty", [])
        written[("alice", "empty")] = []
    finally:
        await old.close()
    return written


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_import_copies_everything_once_and_leaves_the_old_file(
    state_store: StateStore, tmp_path: Path
) -> None:
    path = tmp_path / "old" / "sessions.sqlite3"
    written = await write_old_file(path)
    old = SessionStore(path)
    await old.open()
    before = {owner: await old.list(owner) for owner in ("alice", "bob")}
    await old.close()
    files_before = sorted(p.name for p in path.parent.iterdir())
    bytes_before = digest(path)

    assert await import_legacy_sessions(state_store, path) == len(written) == 7

    for (owner, sid), history in written.items():
        assert await state_store.sessions.history(owner, sid) == history
    for owner in ("alice", "bob"):
        # Same ids, times and counts, in the same order (most recently updated first).
        assert [(s.id, s.created_at, s.updated_at, s.message_count) for s in before[owner]] == [
            (s.id, s.created_at, s.updated_at, s.message_count)
            for s in await state_store.sessions.list(owner)
        ]
    # New turns go after the imported ones.
    await state_store.sessions.append("alice", "s0", [{"role": "user", "content": "later"}])
    assert (await state_store.sessions.history("alice", "s0"))[-1] == {
        "role": "user",
        "content": "later",
    }

    assert await import_legacy_sessions(state_store, path) == 0
    assert (await state_store.sessions.get("bob", "s2")).message_count == 4  # type: ignore[union-attr]
    async with state_store.database.read() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(sessions))).scalar()
        record = (await conn.execute(sa.select(legacy_imports))).mappings().one()
    assert count == 7
    assert (record["path"], record["sessions"], record["messages"]) == (str(path), 7, 18)
    assert digest(path) == bytes_before
    assert sorted(p.name for p in path.parent.iterdir()) == files_before


async def test_no_file_imports_nothing(state_store: StateStore, tmp_path: Path) -> None:
    assert await import_legacy_sessions(state_store, tmp_path / "absent.sqlite3") == 0
    async with state_store.database.read() as conn:
        assert (await conn.execute(sa.select(legacy_imports))).first() is None


async def test_existing_sessions_in_the_store_are_kept(
    state_store: StateStore, tmp_path: Path
) -> None:
    path = tmp_path / "sessions.sqlite3"
    await write_old_file(path)
    await state_store.sessions.append("alice", "s1", [{"role": "user", "content": "new"}])
    assert await import_legacy_sessions(state_store, path) == 6
    assert await state_store.sessions.history("alice", "s1") == [{"role": "user", "content": "new"}]
    assert len(await state_store.sessions.history("alice", "s2")) == 4


async def test_open_state_imports_at_start_up_once(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    written = await write_old_file(path)
    config = StateConfig(database=database_url)
    for _ in range(2):
        store = await open_state(config, data_dir=str(tmp_path), legacy_sessions=path)
        try:
            assert len(await store.sessions.list("alice")) == 4
            assert await store.sessions.history("bob", "s1") == written[("bob", "s1")]
        finally:
            await store.aclose()


async def test_import_reads_what_is_still_in_the_old_files_wal(
    state_store: StateStore, tmp_path: Path
) -> None:
    path = tmp_path / "sessions.sqlite3"
    old = SessionStore(path)
    await old.open()
    try:
        await old.append("alice", "open", [{"role": "user", "content": "not checkpointed"}])
        assert path.with_name("sessions.sqlite3-wal").stat().st_size > 0
        assert await import_legacy_sessions(state_store, path) == 1
    finally:
        await old.close()
    assert await state_store.sessions.history("alice", "open") == [
        {"role": "user", "content": "not checkpointed"}
    ]
