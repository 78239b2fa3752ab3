"""The session store under concurrent writers: appends are atomic and ordered.

Twenty turns on one session at once, from one store (one process's shared connection)
and from two stores on one SQLite file (two processes): every turn is stored, with its
user message directly followed by its own answer, and sequence numbers without gaps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from extensions.sessions.store import SessionStore

TURNS = 20


def turn(number: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": f"question {number}"},
        {"role": "assistant", "content": f"answer {number}"},
    ]


def assert_whole_turns(history: list[dict[str, Any]]) -> None:
    assert len(history) == 2 * TURNS
    numbers = []
    for user, assistant in zip(history[::2], history[1::2], strict=True):
        number = int(user["content"].removeprefix("question "))
        assert user == turn(number)[0]
        assert assistant == turn(number)[1]
        numbers.append(number)
    assert sorted(numbers) == list(range(TURNS))


async def _seqs(store: SessionStore) -> list[int]:
    rows = await store.db.execute_fetchall(
        "SELECT seq FROM messages WHERE owner = 'a' AND session = 's' ORDER BY seq"
    )
    return [row[0] for row in rows]


async def test_concurrent_appends_on_one_connection_are_each_stored_whole(
    tmp_path: Path,
) -> None:
    store = SessionStore(tmp_path / "sessions.sqlite3")
    await store.open()
    try:
        await asyncio.gather(*(store.append("a", "s", turn(n)) for n in range(TURNS)))
        assert_whole_turns(await store.history("a", "s"))
        assert await _seqs(store) == list(range(2 * TURNS))
        info = await store.get("a", "s")
        assert info is not None and info.message_count == 2 * TURNS
    finally:
        await store.close()


async def test_concurrent_appends_from_two_connections_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    stores = [SessionStore(path), SessionStore(path)]
    for store in stores:
        await store.open()
    try:
        await asyncio.gather(
            *(stores[n % 2].append("a", "s", turn(n)) for n in range(TURNS)),
            *(stores[n % 2].history("a", "s") for n in range(TURNS)),
        )
        assert_whole_turns(await stores[0].history("a", "s"))
        assert await _seqs(stores[1]) == list(range(2 * TURNS))
    finally:
        for store in stores:
            await store.close()


async def test_a_delete_between_concurrent_appends_leaves_only_whole_turns(
    tmp_path: Path,
) -> None:
    store = SessionStore(tmp_path / "sessions.sqlite3")
    await store.open()
    try:
        await store.append("a", "s", turn(0))
        results = await asyncio.gather(
            store.delete("a", "s"), *(store.append("a", "s", turn(n)) for n in range(1, 5))
        )
        assert results[0] is True
        history = await store.history("a", "s")
        assert len(history) == 8
        assert [m["role"] for m in history] == ["user", "assistant"] * 4
    finally:
        await store.close()
