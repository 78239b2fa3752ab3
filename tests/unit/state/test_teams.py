"""TeamRepository on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.state import DEFAULT_TEAM_ID, StateStore
from proxy.state.records import Team
from proxy.state.repositories import Conflict


def team(id: str, name: str, at: float = 100.0, **fields: Any) -> Team:
    return Team(id=id, name=name, created_at=at, updated_at=at, **fields)  # type: ignore[arg-type]


async def test_the_default_team_exists(state_store: StateStore) -> None:
    default = await state_store.teams.get(DEFAULT_TEAM_ID)
    assert default is not None and default.name == "default"
    assert [t.id for t in await state_store.teams.list()] == [DEFAULT_TEAM_ID]


async def test_create_get_round_trips_every_field(state_store: StateStore) -> None:
    full = team(
        "t1",
        "research",
        rpm_limit=60,
        tpm_limit=1000,
        max_budget_usd=12.5,
        budget_period="day",
        allowed_models=["gpt-*", "local/*"],
        allowed_extensions=[],
        metadata={"owner": "ana", "nested": {"a": [1, 2.5, None]}},
    )
    assert await state_store.teams.create(full) == full
    assert await state_store.teams.get("t1") == full
    unrestricted = team("t2", "ops")
    await state_store.teams.create(unrestricted)
    got = await state_store.teams.get("t2")
    assert got is not None and got.allowed_models is None and got.allowed_extensions is None
    assert (await state_store.teams.get("t1")).allowed_extensions == []  # type: ignore[union-attr]
    assert await state_store.teams.get("nope") is None


async def test_list_is_oldest_first_and_leaves_out_deleted(state_store: StateStore) -> None:
    await state_store.teams.create(team("b", "second", at=2e9 + 2))
    await state_store.teams.create(team("a", "first", at=2e9 + 1))
    await state_store.teams.create(team("c", "third", at=2e9 + 3))
    assert await state_store.teams.delete("b", now=2e9 + 10)
    assert [t.id for t in await state_store.teams.list()] == [DEFAULT_TEAM_ID, "a", "c"]
    assert await state_store.teams.get("b") is None


async def test_duplicate_name_conflicts_on_create_and_update(state_store: StateStore) -> None:
    await state_store.teams.create(team("t1", "research"))
    with pytest.raises(Conflict, match="research"):
        await state_store.teams.create(team("t2", "research"))
    await state_store.teams.create(team("t3", "Research"))  # case-sensitive
    with pytest.raises(Conflict, match="research"):
        await state_store.teams.update("t3", {"name": "research"}, now=200.0)
    assert (await state_store.teams.get("t3")).name == "Research"  # type: ignore[union-attr]
    # Setting a team's own name again is no conflict.
    renamed = await state_store.teams.update("t1", {"name": "research"}, now=200.0)
    assert renamed is not None and renamed.updated_at == 200.0


async def test_a_deleted_teams_name_can_be_taken_again(state_store: StateStore) -> None:
    await state_store.teams.create(team("old", "research"))
    assert await state_store.teams.delete("old", now=150.0)
    await state_store.teams.create(team("new", "research"))
    assert await state_store.teams.delete("new", now=160.0)
    await state_store.teams.create(team("newer", "research"))
    assert [t.id for t in await state_store.teams.list() if t.id != DEFAULT_TEAM_ID] == ["newer"]


async def test_update_sets_fields_and_updated_at(state_store: StateStore) -> None:
    await state_store.teams.create(team("t1", "research", allowed_models=["a"]))
    updated = await state_store.teams.update(
        "t1", {"rpm_limit": 5, "allowed_models": None, "metadata": {"k": "v"}}, now=300.0
    )
    assert updated is not None
    assert (updated.rpm_limit, updated.allowed_models, updated.metadata) == (5, None, {"k": "v"})
    assert (updated.created_at, updated.updated_at) == (100.0, 300.0)
    assert await state_store.teams.get("t1") == updated


async def test_update_refuses_unknown_or_fixed_fields(state_store: StateStore) -> None:
    await state_store.teams.create(team("t1", "research"))
    with pytest.raises(ValueError, match="colour"):
        await state_store.teams.update("t1", {"colour": "red"}, now=1.0)
    with pytest.raises(ValueError, match="id"):
        await state_store.teams.update("t1", {"id": "t9"}, now=1.0)


async def test_update_and_delete_of_missing_or_deleted_team(state_store: StateStore) -> None:
    assert await state_store.teams.update("nope", {"rpm_limit": 1}, now=1.0) is None
    assert not await state_store.teams.delete("nope", now=1.0)
    await state_store.teams.create(team("t1", "research"))
    assert await state_store.teams.delete("t1", now=1.0)
    assert not await state_store.teams.delete("t1", now=2.0)
    assert await state_store.teams.update("t1", {"rpm_limit": 1}, now=3.0) is None


async def test_named_finds_a_live_team_by_id_then_by_name(state_store: StateStore) -> None:
    await state_store.teams.create(team("t_a", "research"))
    await state_store.teams.create(team("t_b", "t_a"))  # a name that is another team's id
    assert (await state_store.teams.named("t_a")).id == "t_a"  # type: ignore[union-attr]
    assert (await state_store.teams.named("research")).id == "t_a"  # type: ignore[union-attr]
    assert await state_store.teams.named("Research") is None  # names match as written
    await state_store.teams.delete("t_a", 200.0)
    assert await state_store.teams.named("research") is None
    assert (await state_store.teams.named("t_a")).id == "t_b"  # type: ignore[union-attr]
