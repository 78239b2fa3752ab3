"""Authenticator and KeyCache against a real (SQLite) state store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.errors import AuthenticationFailed
from proxy.keys import key_id
from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig
from proxy.state.records import ApiKey, Team
from proxy.tenancy.authn import Authenticator
from proxy.tenancy.keys import KeyCache
from proxy.tenancy.secrets import hash_secret


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingKeys:
    """The real key repository, counting the lookups that reach it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.lookups = 0

    async def find_by_hash(self, key_hash: str, now: float) -> ApiKey | None:
        self.lookups += 1
        return await self.inner.find_by_hash(key_hash, now)  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = await open_state(StateConfig(), data_dir=str(tmp_path))
    await store.teams.create(
        Team(id="team_a", name="a", rpm_limit=7, created_at=1.0, updated_at=1.0)
    )
    try:
        yield store
    finally:
        await store.aclose()


async def add_key(store: StateStore, secret: str, **fields: object) -> ApiKey:
    record = ApiKey(  # type: ignore[arg-type]
        id=fields.pop("id", "key_1"),
        name="k",
        team_id=fields.pop("team_id", "team_a"),
        prefix=secret[:12],
        created_at=1.0,
        updated_at=1.0,
        **fields,
    )
    return await store.keys.create(record, hash_secret(secret))


def authenticator(
    store: StateStore, clock: Clock, *, ttl_s: float = 1.0, **kw: object
) -> tuple[Authenticator, CountingKeys]:
    keys = CountingKeys(store.keys)
    cache = KeyCache(keys, store.teams, ttl_s=ttl_s, clock=clock, wall_clock=clock)  # type: ignore[arg-type]
    options: dict[str, object] = {"master_key": None, "static_keys": [], **kw}
    return Authenticator(cache=cache, clock=clock, **options), keys  # type: ignore[arg-type]


async def test_a_virtual_key_is_its_team_member_with_both_scopes(store: StateStore) -> None:
    await add_key(store, "sk-sy-virtual", rpm_limit=3)
    auth, _ = authenticator(store, Clock(), master_key="sk-master")

    identity = await auth.identify("sk-sy-virtual")

    assert (identity.kind, identity.key_id, identity.team_id, identity.role) == (
        "virtual",
        "key_1",
        "team_a",
        "user",
    )
    assert [scope for scope, _ in identity.scopes] == ["key:key_1", "team:team_a"]
    assert [limits.rpm_limit for _, limits in identity.scopes] == [3, 7]


async def test_master_and_static_keys_are_in_the_default_team_with_their_old_ids(
    store: StateStore,
) -> None:
    auth, keys = authenticator(store, Clock(), master_key="sk-master", static_keys=["sk-static"])

    master = await auth.identify("sk-master")
    static = await auth.identify("sk-static")

    assert (master.kind, master.role, master.team_id, master.scopes) == (
        "master",
        "admin",
        "default",
        (),
    )
    assert (static.kind, static.role, static.team_id) == ("static", "user", "default")
    assert static.key_id == key_id("sk-static")  # what sessions were stored under before
    assert keys.lookups == 0  # neither went to the key table


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"revoked_at": 900.0}, "revoked"),
        ({"expires_at": 1000.0}, "expired"),
    ],
)
async def test_revoked_and_expired_keys_are_refused_saying_why(
    store: StateStore, fields: dict[str, float], message: str
) -> None:
    await add_key(store, "sk-sy-old", **fields)
    auth, _ = authenticator(store, Clock(1000.0), master_key="sk-master")

    with pytest.raises(AuthenticationFailed, match=message):
        await auth.identify("sk-sy-old")


async def test_with_auth_on_unknown_and_missing_keys_are_401(store: StateStore) -> None:
    auth, _ = authenticator(store, Clock(), static_keys=["sk-static"])
    with pytest.raises(AuthenticationFailed, match="Incorrect API key"):
        await auth.identify("sk-nope")
    with pytest.raises(AuthenticationFailed, match="Missing API key"):
        await auth.identify(None)


async def test_with_auth_off_callers_are_anonymous_but_virtual_keys_still_count(
    store: StateStore,
) -> None:
    await add_key(store, "sk-sy-virtual")
    auth, _ = authenticator(store, Clock())
    assert not auth.required

    nobody = await auth.identify(None)
    stranger = await auth.identify("sk-anything")
    member = await auth.identify("sk-sy-virtual")

    assert (nobody.kind, nobody.key_id, nobody.team_id) == ("anonymous", "-", "default")
    assert stranger.key_id == key_id("sk-anything")
    assert (member.kind, member.team_id) == ("virtual", "team_a")


async def test_lookups_are_cached_for_the_ttl_then_see_a_revocation(store: StateStore) -> None:
    await add_key(store, "sk-sy-virtual")
    clock = Clock()
    auth, keys = authenticator(store, clock, ttl_s=1.0, master_key="m")

    for _ in range(50):
        await auth.identify("sk-sy-virtual")
    assert keys.lookups == 1

    await store.keys.revoke("key_1", clock.now)
    clock.now += 0.5
    await auth.identify("sk-sy-virtual")  # still cached: the TTL bounds the delay
    clock.now += 0.6
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await auth.identify("sk-sy-virtual")
    assert keys.lookups == 2


async def test_a_local_change_is_seen_at_once(store: StateStore) -> None:
    await add_key(store, "sk-sy-virtual")
    auth, _ = authenticator(store, Clock(), ttl_s=60.0, master_key="m")
    await auth.identify("sk-sy-virtual")

    await store.keys.revoke("key_1", 1000.0)
    await auth.cache.changed("key_1")

    with pytest.raises(AuthenticationFailed, match="revoked"):
        await auth.identify("sk-sy-virtual")


async def test_concurrent_misses_for_one_secret_share_one_query(store: StateStore) -> None:
    import asyncio

    await add_key(store, "sk-sy-virtual")
    auth, keys = authenticator(store, Clock(), master_key="m")

    found = await asyncio.gather(*(auth.identify("sk-sy-virtual") for _ in range(20)))

    assert {i.key_id for i in found} == {"key_1"}
    assert keys.lookups == 1


async def test_unknown_secrets_are_cached_too(store: StateStore) -> None:
    auth, keys = authenticator(store, Clock(), master_key="m")
    for _ in range(10):
        with pytest.raises(AuthenticationFailed):
            await auth.identify("sk-bad")
    assert keys.lookups == 1


async def test_a_key_whose_team_was_deleted_is_refused(store: StateStore) -> None:
    await add_key(store, "sk-sy-virtual")
    await store.teams.delete("team_a", 1000.0)
    auth, _ = authenticator(store, Clock(), master_key="m")

    with pytest.raises(AuthenticationFailed, match="team"):
        await auth.identify("sk-sy-virtual")


async def test_a_lookup_that_began_before_a_revocation_is_not_cached(store: StateStore) -> None:
    import asyncio

    await add_key(store, "sk-sy-virtual")
    auth, keys = authenticator(store, Clock(), ttl_s=60.0, master_key="m")
    entered, release = asyncio.Event(), asyncio.Event()
    real = keys.find_by_hash

    async def slow_find(key_hash: str, now: float) -> ApiKey | None:
        found = await real(key_hash, now)  # read before the revocation
        entered.set()
        await release.wait()
        return found

    keys.find_by_hash = slow_find  # type: ignore[method-assign]
    first = asyncio.create_task(auth.identify("sk-sy-virtual"))
    await entered.wait()
    await store.keys.revoke("key_1", 1000.0)
    await auth.cache.changed("key_1")
    release.set()
    assert (await first).key_id == "key_1"  # answered as of when it was read
    keys.find_by_hash = real  # type: ignore[method-assign]
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await auth.identify("sk-sy-virtual")


async def test_made_up_keys_never_push_real_ones_out_of_the_cache(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.tenancy import keys as keys_module

    monkeypatch.setattr(keys_module, "MAX_ENTRIES", 5)
    await add_key(store, "sk-sy-virtual")
    auth, keys = authenticator(store, Clock(), ttl_s=60.0, master_key="m")
    await auth.identify("sk-sy-virtual")
    for n in range(20):
        with pytest.raises(AuthenticationFailed):
            await auth.identify(f"sk-junk-{n}")
    lookups = keys.lookups
    await auth.identify("sk-sy-virtual")
    assert keys.lookups == lookups  # still cached


async def test_concurrent_misses_for_a_team_share_one_query(store: StateStore) -> None:
    import asyncio

    auth, _ = authenticator(store, Clock(), master_key="m", static_keys=["sk-static"])
    queries = 0
    real = store.teams.get

    async def counted(team_id: str) -> Team | None:
        nonlocal queries
        queries += 1
        return await real(team_id)

    auth.cache.teams.get = counted  # type: ignore[method-assign]
    found = await asyncio.gather(*(auth.identify("sk-static") for _ in range(30)))
    assert {i.team_id for i in found} == {"default"}
    assert queries == 1
