"""KeyRepository on both engines."""

from __future__ import annotations

import time
from typing import Any

import pytest

from proxy.state import DEFAULT_TEAM_ID, StateStore
from proxy.state.records import ApiKey, Team
from proxy.state.repositories import Conflict


def key(id: str, team_id: str = DEFAULT_TEAM_ID, at: float = 100.0, **fields: Any) -> ApiKey:
    return ApiKey(  # type: ignore[arg-type]
        id=id,
        name=f"name-{id}",
        team_id=team_id,
        prefix=f"sk-{id}",
        created_at=at,
        updated_at=at,
        **fields,
    )


@pytest.fixture
async def store(state_store: StateStore) -> StateStore:
    await state_store.teams.create(Team(id="t1", name="one", created_at=1.0, updated_at=1.0))
    await state_store.teams.create(Team(id="t2", name="two", created_at=1.0, updated_at=1.0))
    return state_store


async def test_create_get_round_trips_every_field(store: StateStore) -> None:
    full = key(
        "k1",
        "t1",
        role="admin",
        rpm_limit=10,
        tpm_limit=20,
        max_budget_usd=1.25,
        budget_period="day",
        allowed_models=[],
        allowed_extensions=["rag"],
        max_parallel=3,
        expires_at=5e9,
        metadata={"purpose": "ci", "tags": ["a", "b"]},
    )
    assert await store.keys.create(full, "hash1") == full
    assert await store.keys.get("k1") == full
    await store.keys.create(key("k2"), "hash2")
    plain = await store.keys.get("k2")
    assert plain is not None and plain.allowed_models is None and plain.role == "user"
    assert await store.keys.get("missing") is None


async def test_create_conflicts_on_a_taken_secret(store: StateStore) -> None:
    await store.keys.create(key("k1"), "same")
    with pytest.raises(Conflict):
        await store.keys.create(key("k2"), "same")
    assert await store.keys.get("k2") is None


async def test_list_by_team_oldest_first_with_and_without_revoked(store: StateStore) -> None:
    await store.keys.create(key("b", "t1", at=2.0), "hb")
    await store.keys.create(key("a", "t1", at=1.0), "ha")
    await store.keys.create(key("c", "t2", at=3.0), "hc")
    await store.keys.create(key("d", "t1", at=4.0), "hd")
    await store.keys.revoke("d", now=10.0)
    assert [k.id for k in await store.keys.list()] == ["a", "b", "c"]
    assert [k.id for k in await store.keys.list("t1")] == ["a", "b"]
    assert [k.id for k in await store.keys.list("t1", include_revoked=True)] == ["a", "b", "d"]
    assert [k.id for k in await store.keys.list(include_revoked=True)] == ["a", "b", "c", "d"]


async def test_update_live_key_only(store: StateStore) -> None:
    await store.keys.create(key("k1", allowed_models=["x"]), "h1")
    updated = await store.keys.update(
        "k1", {"name": "renamed", "allowed_models": None, "max_parallel": 2}, now=200.0
    )
    assert updated is not None
    assert (updated.name, updated.allowed_models, updated.max_parallel) == ("renamed", None, 2)
    assert (updated.created_at, updated.updated_at) == (100.0, 200.0)
    assert await store.keys.get("k1") == updated
    with pytest.raises(ValueError, match="revoked_at"):
        await store.keys.update("k1", {"revoked_at": 1.0}, now=1.0)
    await store.keys.revoke("k1", now=300.0)
    assert await store.keys.update("k1", {"name": "again"}, now=400.0) is None
    assert (await store.keys.get("k1")).name == "renamed"  # type: ignore[union-attr]
    assert await store.keys.update("missing", {"name": "x"}, now=1.0) is None


async def test_revoke_sets_revoked_at_once(store: StateStore) -> None:
    await store.keys.create(key("k1"), "h1")
    revoked = await store.keys.revoke("k1", now=500.0)
    assert revoked is not None and revoked.revoked_at == 500.0
    again = await store.keys.revoke("k1", now=600.0)
    assert again is not None and again.revoked_at == 500.0
    assert await store.keys.revoke("missing", now=1.0) is None


async def test_revoke_team_revokes_only_that_teams_live_keys(store: StateStore) -> None:
    await store.keys.create(key("a", "t1"), "ha")
    await store.keys.create(key("b", "t1"), "hb")
    await store.keys.create(key("c", "t1"), "hc")
    await store.keys.create(key("x", "t2"), "hx")
    await store.keys.revoke("c", now=50.0)
    assert sorted(await store.keys.revoke_team("t1", now=60.0)) == ["a", "b"]
    assert (await store.keys.get("a")).revoked_at == 60.0  # type: ignore[union-attr]
    assert (await store.keys.get("c")).revoked_at == 50.0  # type: ignore[union-attr]
    assert (await store.keys.get("x")).revoked_at is None  # type: ignore[union-attr]
    assert await store.keys.revoke_team("t1", now=70.0) == []


async def test_rotate_and_find_by_hash_with_grace(store: StateStore) -> None:
    await store.keys.create(key("k1"), "old")
    rotated = await store.keys.rotate("k1", "new", "sk-new", grace_until=1000.0, now=900.0)
    assert rotated is not None
    assert (rotated.prefix, rotated.rotated_at, rotated.previous_valid_until) == (
        "sk-new",
        900.0,
        1000.0,
    )
    assert (await store.keys.find_by_hash("new", now=950.0)).id == "k1"  # type: ignore[union-attr]
    assert (await store.keys.find_by_hash("old", now=999.0)).id == "k1"  # type: ignore[union-attr]
    assert await store.keys.find_by_hash("old", now=1000.0) is None
    assert await store.keys.find_by_hash("old", now=2000.0) is None
    assert (await store.keys.find_by_hash("new", now=2000.0)).id == "k1"  # type: ignore[union-attr]
    assert await store.keys.find_by_hash("unknown", now=1.0) is None
    # A second rotation drops the first secret for good.
    await store.keys.rotate("k1", "newer", "sk-newer", grace_until=3000.0, now=2500.0)
    assert (await store.keys.find_by_hash("new", now=2600.0)).id == "k1"  # type: ignore[union-attr]
    assert await store.keys.find_by_hash("old", now=2600.0) is None


async def test_rotate_needs_a_live_key(store: StateStore) -> None:
    assert await store.keys.rotate("missing", "n", "p", grace_until=1.0, now=0.0) is None
    await store.keys.create(key("k1"), "h1")
    await store.keys.revoke("k1", now=1.0)
    assert await store.keys.rotate("k1", "n", "p", grace_until=5.0, now=2.0) is None
    assert await store.keys.find_by_hash("n", now=3.0) is None


async def test_find_by_hash_returns_revoked_and_expired_keys(store: StateStore) -> None:
    await store.keys.create(key("gone", expires_at=10.0), "h-expired")
    await store.keys.create(key("dead"), "h-revoked")
    await store.keys.revoke("dead", now=5.0)
    expired = await store.keys.find_by_hash("h-expired", now=20.0)
    assert expired is not None and expired.expires_at == 10.0
    revoked = await store.keys.find_by_hash("h-revoked", now=20.0)
    assert revoked is not None and revoked.revoked_at == 5.0


async def test_any_admin_counts_only_live_unexpired_admins(store: StateStore) -> None:
    assert not await store.keys.any_admin()
    await store.keys.create(key("u", role="user"), "hu")
    await store.keys.create(key("old", role="admin", expires_at=time.time() - 60), "ho")
    await store.keys.create(key("rev", role="admin"), "hr")
    await store.keys.revoke("rev", now=1.0)
    assert not await store.keys.any_admin()
    await store.keys.create(key("adm", role="admin", expires_at=time.time() + 3600), "ha")
    assert await store.keys.any_admin()
