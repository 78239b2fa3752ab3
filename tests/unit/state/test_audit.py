"""AuditRepository on both engines."""

from __future__ import annotations

import pytest

from proxy.state import StateStore
from proxy.state.records import AuditEntry


async def test_add_assigns_increasing_ids_and_round_trips(state_store: StateStore) -> None:
    first = await state_store.audit.add(
        AuditEntry(
            time=1.5,
            actor="master",
            action="team.create",
            target="t1",
            details={"name": "research", "limits": {"rpm": [1, None]}},
        )
    )
    second = await state_store.audit.add(
        AuditEntry(time=2.5, actor="cli:ana", action="key.rotate", target="k1")
    )
    assert first.id is not None and second.id is not None and second.id > first.id
    page, cursor = await state_store.audit.list(10, None)
    assert page == [second, first] and cursor is None
    assert page[1].details == {"name": "research", "limits": {"rpm": [1, None]}}


async def test_list_pages_newest_first_filtered_by_target(state_store: StateStore) -> None:
    added = [
        await state_store.audit.add(
            AuditEntry(time=float(i), actor="m", action="a", target="t1" if i % 3 else "t2")
        )
        for i in range(10)
    ]
    t1 = [e for e in reversed(added) if e.target == "t1"]
    seen: list[AuditEntry] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = await state_store.audit.list(2, cursor, target="t1")
        seen.extend(page)
        pages += 1
        if cursor is None:
            break
    assert seen == t1 and pages == 3
    everything, end = await state_store.audit.list(100, None)
    assert everything == list(reversed(added)) and end is None


async def test_malformed_cursor_raises_value_error(state_store: StateStore) -> None:
    for bad in ("not base64 !", "eyJ4Ijox", "WzEsMl0"):
        with pytest.raises(ValueError):
            await state_store.audit.list(5, bad)
