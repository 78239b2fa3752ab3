"""AdminService against the real state store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import Conflict, InvalidRequest, NotFound
from proxy.schemas.admin import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate, decode_admin
from proxy.state import open_state
from proxy.state.config import StateConfig
from proxy.state.records import UsageFilter
from proxy.tenancy.admin import AdminService
from proxy.tenancy.secrets import hash_secret

ACTOR = "key_admin"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    else:
        database = request.getfixturevalue("fresh_postgres_url")
    opened = await open_state(
        StateConfig(database=database), data_dir=str(tmp_path), base_dir=str(tmp_path)
    )
    try:
        yield opened
    finally:
        await opened.aclose()


class Recorder:
    def __init__(self) -> None:
        self.changed: list[str] = []

    async def __call__(self, key_id: str) -> None:
        self.changed.append(key_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> Recorder:
    return Recorder()


@pytest.fixture
def service(store: Any, clock: Clock, changes: Recorder) -> AdminService:
    return AdminService(store, on_key_change=changes, clock=clock)


def team_body(**fields: Any) -> TeamCreate:
    return TeamCreate(**{"name": "research", **fields})


def key_body(**fields: Any) -> KeyCreate:
    return KeyCreate(**{"name": "ci", **fields})


async def audit_of(service: AdminService, target: str) -> list[Any]:
    entries, _ = await service.audit_entries(100, None, target)
    return entries


async def test_team_lifecycle_with_audit(service: AdminService, clock: Clock) -> None:
    team = await service.create_team(ACTOR, team_body(rpm_limit=60, metadata={"cc": "42"}))
    assert re.fullmatch(r"team_[0-9a-f]{24}", team.id)
    assert (team.name, team.rpm_limit, team.metadata) == ("research", 60, {"cc": "42"})
    assert (await service.get_team(team.id)).rpm_limit == 60
    assert team.id in [t.id for t in await service.list_teams()]

    clock.now = T0 + 10
    body = decode_admin(b'{"rpm_limit": null, "tpm_limit": 1000}', TeamUpdate)
    updated = await service.update_team(ACTOR, team.id, body)
    assert (updated.rpm_limit, updated.tpm_limit, updated.name) == (None, 1000, "research")
    assert updated.updated_at == T0 + 10

    entries = await audit_of(service, team.id)
    assert [e.action for e in entries] == ["team.update", "team.create"]
    assert entries[0].details == {"rpm_limit": None, "tpm_limit": 1000}
    assert entries[0].actor == ACTOR
    assert entries[1].details["name"] == "research"


async def test_duplicate_team_names_are_conflicts(service: AdminService) -> None:
    await service.create_team(ACTOR, team_body())
    other = await service.create_team(ACTOR, team_body(name="ops"))
    with pytest.raises(Conflict) as created:
        await service.create_team(ACTOR, team_body())
    assert (created.value.http_status, created.value.param) == (409, "name")
    with pytest.raises(Conflict) as renamed:
        await service.update_team(ACTOR, other.id, TeamUpdate(name="research"))
    assert renamed.value.param == "name"
    assert (await service.get_team(other.id)).name == "ops"


async def test_unknown_ids_are_not_found(service: AdminService) -> None:
    for call in (
        service.get_team("team_nope"),
        service.update_team(ACTOR, "team_nope", TeamUpdate(rpm_limit=1)),
        service.delete_team(ACTOR, "team_nope"),
        service.get_key("key_nope"),
        service.update_key(ACTOR, "key_nope", KeyUpdate(name="x")),
        service.revoke_key(ACTOR, "key_nope"),
        service.rotate_key(ACTOR, "key_nope"),
    ):
        with pytest.raises(NotFound):
            await call


async def test_create_key_stores_only_the_hash(
    store: Any, service: AdminService, changes: Recorder
) -> None:
    team = await service.create_team(ACTOR, team_body())
    key, secret = await service.create_key(
        ACTOR, key_body(team_id=team.id, role="admin", tpm_limit=500, max_parallel=2)
    )
    assert re.fullmatch(r"sk-sy-[A-Za-z0-9_-]{43}", secret)
    assert key.prefix == secret[:12]
    assert (key.team_id, key.role, key.tpm_limit, key.max_parallel) == (team.id, "admin", 500, 2)
    found = await store.keys.find_by_hash(hash_secret(secret), T0)
    assert found is not None and found.id == key.id
    assert await store.keys.find_by_hash(hash_secret(secret + "x"), T0) is None
    (entry,) = await audit_of(service, key.id)
    assert entry.action == "key.create"
    assert entry.details["team_id"] == team.id
    text = repr(entry.details)
    assert secret not in text and hash_secret(secret) not in text
    assert changes.changed == []


async def test_a_key_needs_an_existing_team(service: AdminService) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await service.create_key(ACTOR, key_body(team_id="team_missing"))
    assert (refused.value.http_status, refused.value.param) == (400, "team_id")
    key, _ = await service.create_key(ACTOR, key_body())
    assert key.team_id == "default"
    assert (await service.get_team("default")).id == "default"
    again, _ = await service.create_key(ACTOR, key_body(name="second"))
    assert again.team_id == "default"


async def test_expiry_in_the_past_is_refused(service: AdminService) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await service.create_key(ACTOR, key_body(expires_at=T0 - 1))
    assert refused.value.param == "expires_at"
    key, _ = await service.create_key(ACTOR, key_body(expires_at=T0 + 3600))
    with pytest.raises(InvalidRequest):
        await service.update_key(ACTOR, key.id, KeyUpdate(expires_at=T0))
    cleared = await service.update_key(ACTOR, key.id, KeyUpdate(expires_at=None))
    assert cleared.expires_at is None


async def test_update_key_changes_only_what_is_sent(
    service: AdminService, changes: Recorder, clock: Clock
) -> None:
    key, _ = await service.create_key(ACTOR, key_body(rpm_limit=10, tpm_limit=20))
    clock.now += 1
    body = decode_admin(b'{"rpm_limit": null, "name": "renamed"}', KeyUpdate)
    updated = await service.update_key(ACTOR, key.id, body)
    assert (updated.name, updated.rpm_limit, updated.tpm_limit) == ("renamed", None, 20)
    assert changes.changed == [key.id]
    entries = await audit_of(service, key.id)
    assert entries[0].action == "key.update"
    assert entries[0].details == {"name": "renamed", "rpm_limit": None}


async def test_revoke_reaches_the_cache_once(
    service: AdminService, changes: Recorder, clock: Clock
) -> None:
    key, _ = await service.create_key(ACTOR, key_body())
    clock.now += 1
    revoked = await service.revoke_key(ACTOR, key.id)
    assert revoked.revoked_at == T0 + 1
    assert changes.changed == [key.id]
    clock.now += 1
    again = await service.revoke_key(ACTOR, key.id)
    assert again.revoked_at == T0 + 1
    assert changes.changed == [key.id]
    assert [e.action for e in await audit_of(service, key.id)] == ["key.revoke", "key.create"]
    assert [k.id for k in await service.list_keys()] == []
    assert [k.id for k in await service.list_keys(include_revoked=True)] == [key.id]
    with pytest.raises(Conflict):
        await service.update_key(ACTOR, key.id, KeyUpdate(name="x"))
    with pytest.raises(Conflict):
        await service.rotate_key(ACTOR, key.id)


async def test_rotation_keeps_the_old_secret_for_the_grace_time(
    store: Any, service: AdminService, changes: Recorder, clock: Clock
) -> None:
    key, old = await service.create_key(ACTOR, key_body())
    clock.now += 1
    rotated, new = await service.rotate_key(ACTOR, key.id, 59)
    assert new != old and rotated.prefix == new[:12]
    assert (rotated.rotated_at, rotated.previous_valid_until) == (T0 + 1, T0 + 60)
    assert changes.changed == [key.id]
    assert (await store.keys.find_by_hash(hash_secret(new), T0 + 61)).id == key.id
    assert (await store.keys.find_by_hash(hash_secret(old), T0 + 59)).id == key.id
    assert await store.keys.find_by_hash(hash_secret(old), T0 + 61) is None
    (entry, _) = await audit_of(service, key.id)
    assert entry.action == "key.rotate"
    assert entry.details == {"grace_s": 59, "prefix": new[:12]}
    with pytest.raises(InvalidRequest):
        await service.rotate_key(ACTOR, key.id, -1)


async def test_rotation_without_grace_ends_the_old_secret_at_once(
    store: Any, service: AdminService
) -> None:
    key, old = await service.create_key(ACTOR, key_body())
    _, new = await service.rotate_key(ACTOR, key.id, 0)
    assert await store.keys.find_by_hash(hash_secret(old), T0) is None
    assert (await store.keys.find_by_hash(hash_secret(new), T0)).id == key.id


async def test_a_team_change_is_announced_once(service: AdminService, changes: Recorder) -> None:
    team = await service.create_team(ACTOR, team_body())
    await service.create_key(ACTOR, key_body(team_id=team.id))
    await service.create_key(ACTOR, key_body(team_id=team.id, name="two"))
    await service.create_key(ACTOR, key_body(name="elsewhere"))
    changes.changed.clear()
    await service.update_team(ACTOR, team.id, TeamUpdate(tpm_limit=5))
    assert changes.changed == [team.id]  # one broadcast: every cache forgets all of it


async def test_deleting_a_team_revokes_its_keys(
    service: AdminService, changes: Recorder, clock: Clock
) -> None:
    team = await service.create_team(ACTOR, team_body())
    member, _ = await service.create_key(ACTOR, key_body(team_id=team.id))
    outsider, _ = await service.create_key(ACTOR, key_body(name="outsider"))
    clock.now += 1
    assert await service.delete_team(ACTOR, team.id) == [member.id]
    assert changes.changed == [member.id]
    assert (await service.get_key(member.id)).revoked_at == T0 + 1
    assert (await service.get_key(outsider.id)).revoked_at is None
    with pytest.raises(NotFound):
        await service.get_team(team.id)
    (entry, *_) = await audit_of(service, team.id)
    assert (entry.action, entry.details) == ("team.delete", {"revoked_keys": [member.id]})
    # The name is free again once the team is gone.
    await service.create_team(ACTOR, team_body())


async def test_the_default_team_cannot_be_deleted(service: AdminService) -> None:
    await service.create_key(ACTOR, key_body())
    with pytest.raises(InvalidRequest) as refused:
        await service.delete_team(ACTOR, "default")
    assert refused.value.param == "team_id"


async def test_find_team_by_id_or_name(service: AdminService) -> None:
    team = await service.create_team(ACTOR, team_body())
    assert (await service.find_team(team.id)).id == team.id
    assert (await service.find_team("research")).id == team.id
    with pytest.raises(NotFound):
        await service.find_team("nobody")


async def test_malformed_cursors_are_invalid_requests(service: AdminService) -> None:
    with pytest.raises(InvalidRequest) as usage:
        await service.usage_requests(UsageFilter(), 10, "not-a-cursor")
    assert usage.value.param == "cursor"
    with pytest.raises(InvalidRequest) as audit:
        await service.audit_entries(10, "not-a-cursor")
    assert audit.value.param == "cursor"


async def test_audit_pages(service: AdminService, clock: Clock) -> None:
    for n in range(3):
        clock.now += 1
        await service.create_team(ACTOR, team_body(name=f"t{n}"))
    first, cursor = await service.audit_entries(2, None)
    assert [e.details["name"] for e in first] == ["t2", "t1"]
    assert cursor is not None
    rest, end = await service.audit_entries(2, cursor)
    assert [e.details["name"] for e in rest] == ["t0"]
    assert end is None
