"""SessionRepository on both engines, also with many writers on one session."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig
from proxy.state.schema import messages


async def seqs(store: StateStore, owner: str, session: str) -> list[int]:
    query = (
        sa.select(messages.c.seq)
        .where(messages.c.owner == owner, messages.c.session == session)
        .order_by(messages.c.seq)
    )
    async with store.database.read() as conn:
        return list((await conn.execute(query)).scalars())


async def test_append_history_get_list_delete(state_store: StateStore) -> None:
    sessions = state_store.sessions
    turn: list[dict[str, Any]] = [
        {"role": "user", "content": "héllo", "extra": {"n": [1, 2.5, None, True]}},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    await sessions.append("alice", "s1", turn)
    await sessions.append("alice", "s1", [{"role": "user", "content": "again"}])
    assert await sessions.history("alice", "s1") == [*turn, {"role": "user", "content": "again"}]
    info = await sessions.get("alice", "s1")
    assert info is not None and (info.id, info.message_count) == ("s1", 3)
    assert info.created_at <= info.updated_at
    await sessions.append("alice", "s2", [{"role": "user", "content": "x"}])
    assert [s.id for s in await sessions.list("alice")] == ["s2", "s1"]
    await sessions.append("alice", "s1", [{"role": "user", "content": "newest"}])
    assert [s.id for s in await sessions.list("alice")] == ["s1", "s2"]
    assert await sessions.delete("alice", "s1")
    assert not await sessions.delete("alice", "s1")
    assert await sessions.get("alice", "s1") is None
    assert await sessions.history("alice", "s1") == []
    assert await seqs(state_store, "alice", "s1") == []  # cascaded
    assert [s.id for s in await sessions.list("alice")] == ["s2"]


async def test_another_owner_sees_nothing(state_store: StateStore) -> None:
    sessions = state_store.sessions
    await sessions.append("alice", "s1", [{"role": "user", "content": "secret"}])
    assert await sessions.history("bob", "s1") == []
    assert await sessions.get("bob", "s1") is None
    assert await sessions.list("bob") == []
    assert not await sessions.delete("bob", "s1")
    # Bob's own session of the same id is a different one.
    await sessions.append("bob", "s1", [{"role": "user", "content": "mine"}])
    assert await sessions.history("alice", "s1") == [{"role": "user", "content": "secret"}]
    assert (await sessions.get("bob", "s1")).message_count == 1  # type: ignore[union-attr]


async def test_empty_append_creates_the_session(state_store: StateStore) -> None:
    await state_store.sessions.append("alice", "empty", [])
    info = await state_store.sessions.get("alice", "empty")
    assert info is not None and info.message_count == 0


def turn(writer: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{writer}:{part}"} for part in range(3)]


def assert_whole_turns(history: list[dict[str, Any]], writers: int) -> None:
    """Every writer's three messages are there once, together and in order."""
    assert len(history) == writers * 3
    chunks = [history[i : i + 3] for i in range(0, len(history), 3)]
    owners = [chunk[0]["content"].split(":")[0] for chunk in chunks]
    assert sorted(owners, key=int) == [str(w) for w in range(writers)]
    for chunk, writer in zip(chunks, owners, strict=True):
        assert chunk == turn(int(writer))


async def test_twenty_concurrent_appends_on_one_session(state_store: StateStore) -> None:
    await asyncio.gather(*(state_store.sessions.append("o", "s", turn(w)) for w in range(20)))
    assert await seqs(state_store, "o", "s") == list(range(60))
    assert_whole_turns(await state_store.sessions.history("o", "s"), 20)
    assert (await state_store.sessions.get("o", "s")).message_count == 60  # type: ignore[union-attr]


async def test_two_stores_on_one_database_append_concurrently(
    state_store: StateStore, database_url: str, tmp_path: Any
) -> None:
    """Two engines on one database (as two processes or replicas would be): the engine's
    own locking (SQLite's write lock, PostgreSQL's row lock) keeps the turns whole."""
    other = await open_state(StateConfig(database=database_url), data_dir=str(tmp_path))
    try:
        await asyncio.gather(
            *(
                (state_store if w % 2 else other).sessions.append("o", "new", turn(w))
                for w in range(20)
            )
        )
    finally:
        await other.aclose()
    assert await seqs(state_store, "o", "new") == list(range(60))
    assert_whole_turns(await state_store.sessions.history("o", "new"), 20)
