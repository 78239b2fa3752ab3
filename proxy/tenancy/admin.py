"""Teams and virtual keys, as administered: one service for the HTTP API and the CLI.

Every change writes an audit entry (who, what, which id, the changed fields: never a
secret nor its hash) and, for every key whose secret or limits changed, calls
``on_key_change(key_id)`` so that the auth layer's cache forgets it at once: a revoked
key must stop working now, not when a cache entry runs out. A team's change counts as
a change of each of its keys, since an identity carries its team's limits.
"""

from __future__ import annotations

import secrets as _random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from extensions.base import registered_extensions
from proxy.errors import Conflict, InvalidRequest, NotFound, shown
from proxy.schemas.admin import (
    DEFAULT_GRACE_S,
    KeyCreate,
    KeyUpdate,
    TeamCreate,
    TeamUpdate,
    changes_of,
)
from proxy.state import repositories as repos
from proxy.state.records import (
    DEFAULT_TEAM_ID,
    ApiKey,
    AuditEntry,
    Team,
    UsageFilter,
    UsageGrouping,
    UsageRecord,
    UsageTotals,
)
from proxy.tenancy.secrets import hash_secret, new_secret, secret_prefix

KeyChanged = Callable[[str], Awaitable[None]]


class AdminStore(Protocol):
    """What the service needs of ``proxy.state``'s ``StateStore``."""

    @property
    def teams(self) -> repos.TeamRepository: ...

    @property
    def keys(self) -> repos.KeyRepository: ...

    @property
    def usage(self) -> repos.UsageRepository: ...

    @property
    def audit(self) -> repos.AuditRepository: ...


def _new_id(kind: str) -> str:
    return f"{kind}_{_random.token_hex(12)}"


def _audited(changes: dict[str, Any]) -> dict[str, Any]:
    """Changed fields as an audit entry stores them (JSON values)."""
    return msgspec.to_builtins(changes)  # type: ignore[no-any-return]


class AdminService:
    def __init__(
        self,
        store: AdminStore,
        *,
        on_key_change: KeyChanged | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.on_key_change = on_key_change
        self.clock = clock

    async def _audit(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        entry = AuditEntry(
            time=self.clock(), actor=actor, action=action, target=target, details=details
        )
        await self.store.audit.add(entry)

    async def record(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        """Audit an admin action that is not a change of teams or keys (a cache flush, a
        configuration reload)."""
        await self._audit(actor, action, target, _audited(details))

    async def _changed(self, key_ids: list[str]) -> None:
        """Tell the auth caches (here and, through Redis, on every replica): one message
        per change, whatever the number of keys it touched (each cache forgets all)."""
        if self.on_key_change is not None and key_ids:
            await self.on_key_change(key_ids[0] if len(key_ids) == 1 else "*")

    # Teams

    async def create_team(self, actor: str, body: TeamCreate) -> Team:
        _check_extensions(body.allowed_extensions)
        now = self.clock()
        fields = changes_of(body)
        team = Team(id=_new_id("team"), created_at=now, updated_at=now, **fields)
        try:
            team = await self.store.teams.create(team)
        except repos.Conflict:
            raise _name_taken(body.name) from None
        await self._audit(actor, "team.create", team.id, _audited(fields))
        return team

    async def get_team(self, team_id: str) -> Team:
        team = await self.store.teams.get(team_id) if _plausible_id(team_id) else None
        if team is None:
            raise NotFound(f"No team with id '{shown(team_id)}'.", param="team_id")
        return team

    async def find_team(self, ref: str) -> Team:
        """A team by id or, failing that, by name (the CLI's ``--team``)."""
        team = await self.store.teams.named(ref) if _plausible_id(ref) else None
        if team is None:
            raise NotFound(f"No team with id or name '{shown(ref)}'.", param="team")
        return team

    async def list_teams(self) -> list[Team]:
        return await self.store.teams.list()

    async def update_team(self, actor: str, team_id: str, body: TeamUpdate) -> Team:
        changes = changes_of(body)
        _check_extensions(changes.get("allowed_extensions"))
        await self.get_team(team_id)
        try:
            team = await self.store.teams.update(team_id, changes, self.clock())
        except repos.Conflict:
            raise _name_taken(str(changes.get("name"))) from None
        if team is None:
            raise NotFound(f"No team with id '{shown(team_id)}'.", param="team_id")
        await self._audit(actor, "team.update", team_id, _audited(changes))
        await self._changed([team_id])  # its keys' identities carry its limits
        return team

    async def delete_team(self, actor: str, team_id: str) -> list[str]:
        """Delete a team and revoke its keys; the ids of the keys revoked."""
        if team_id == DEFAULT_TEAM_ID:
            raise InvalidRequest("The default team cannot be deleted.", param="team_id")
        await self.get_team(team_id)
        now = self.clock()
        revoked = await self.store.keys.revoke_team(team_id, now)
        if not await self.store.teams.delete(team_id, now):
            raise NotFound(f"No team with id '{shown(team_id)}'.", param="team_id")
        await self._audit(actor, "team.delete", team_id, {"revoked_keys": revoked})
        await self._changed(revoked)
        return revoked

    # Keys

    async def _ensure_default_team(self) -> None:
        """The default team exists once something needs it (a key created in it)."""
        if await self.store.teams.get(DEFAULT_TEAM_ID) is None:
            now = self.clock()
            default = Team(id=DEFAULT_TEAM_ID, name=DEFAULT_TEAM_ID, created_at=now, updated_at=now)
            try:
                await self.store.teams.create(default)
            except repos.Conflict:
                raise _name_taken(DEFAULT_TEAM_ID) from None

    async def create_key(self, actor: str, body: KeyCreate) -> tuple[ApiKey, str]:
        """A new key and its secret (returned only here; only its hash is stored)."""
        now = self.clock()
        _check_expiry(body.expires_at, now)
        _check_extensions(body.allowed_extensions)
        if body.team_id == DEFAULT_TEAM_ID:
            await self._ensure_default_team()
        elif await self.store.teams.get(body.team_id) is None:
            raise InvalidRequest(f"No team with id '{shown(body.team_id)}'.", param="team_id")
        secret = new_secret()
        fields = changes_of(body)
        key = ApiKey(
            id=_new_id("key"),
            prefix=secret_prefix(secret),
            created_at=now,
            updated_at=now,
            **fields,
        )
        key = await self.store.keys.create(key, hash_secret(secret))
        await self._audit(actor, "key.create", key.id, _audited({**fields, "prefix": key.prefix}))
        return key, secret

    async def get_key(self, key_id: str) -> ApiKey:
        key = await self.store.keys.get(key_id) if _plausible_id(key_id) else None
        if key is None:
            raise NotFound(f"No key with id '{shown(key_id)}'.", param="key_id")
        return key

    async def list_keys(
        self, team_id: str | None = None, *, include_revoked: bool = False
    ) -> list[ApiKey]:
        return await self.store.keys.list(team_id, include_revoked)

    async def _live_key(self, key_id: str) -> ApiKey:
        key = await self.get_key(key_id)
        if key.revoked_at is not None:
            raise Conflict(f"The key '{shown(key_id)}' is revoked.", param="key_id")
        return key

    async def update_key(self, actor: str, key_id: str, body: KeyUpdate) -> ApiKey:
        changes = changes_of(body)
        _check_extensions(changes.get("allowed_extensions"))
        expires_at = changes.get("expires_at")
        _check_expiry(expires_at, self.clock())
        await self._live_key(key_id)
        key = await self.store.keys.update(key_id, changes, self.clock())
        if key is None:  # revoked between the two calls
            raise Conflict(f"The key '{shown(key_id)}' is revoked.", param="key_id")
        await self._audit(actor, "key.update", key_id, _audited(changes))
        await self._changed([key_id])
        return key

    async def revoke_key(self, actor: str, key_id: str) -> ApiKey:
        """Revoke a key (once: revoking it again changes nothing)."""
        before = await self.get_key(key_id)
        if before.revoked_at is not None:
            return before
        key = await self.store.keys.revoke(key_id, self.clock())
        if key is None:
            raise NotFound(f"No key with id '{shown(key_id)}'.", param="key_id")
        await self._audit(actor, "key.revoke", key_id, {})
        await self._changed([key_id])
        return key

    async def rotate_key(
        self, actor: str, key_id: str, grace_s: float = DEFAULT_GRACE_S
    ) -> tuple[ApiKey, str]:
        """A new secret for a key; the previous one keeps working for ``grace_s``."""
        if grace_s < 0:
            raise InvalidRequest("grace_s must be 0 or more.", param="grace_s")
        await self._live_key(key_id)
        now = self.clock()
        secret = new_secret()
        prefix = secret_prefix(secret)
        key = await self.store.keys.rotate(key_id, hash_secret(secret), prefix, now + grace_s, now)
        if key is None:
            raise Conflict(f"The key '{shown(key_id)}' is revoked.", param="key_id")
        await self._audit(actor, "key.rotate", key_id, {"grace_s": grace_s, "prefix": prefix})
        await self._changed([key_id])
        return key, secret

    # Usage and audit

    async def usage_totals(
        self, where: UsageFilter, group_by: UsageGrouping | None
    ) -> list[UsageTotals]:
        return await self.store.usage.totals(where, group_by)

    async def usage_requests(
        self, where: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[UsageRecord], str | None]:
        try:
            return await self.store.usage.requests(where, limit, cursor)
        except ValueError:
            raise _bad_cursor() from None

    async def audit_entries(
        self, limit: int, cursor: str | None, target: str | None = None
    ) -> tuple[list[AuditEntry], str | None]:
        try:
            return await self.store.audit.list(limit, cursor, target=target)
        except ValueError:
            raise _bad_cursor() from None


def _plausible_id(ident: str) -> bool:
    """Whether an id from a URL could name anything stored (ids are short and printable):
    any other one is a 404 without a query (a NUL byte would make PostgreSQL fail)."""
    return len(ident) <= 200 and ident.isprintable()


def _check_extensions(names: list[str] | None) -> None:
    """Only extensions this server has: a misspelt name would silently allow none."""
    if not names:
        return
    known = registered_extensions()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidRequest(
            f"Unknown extension '{shown(unknown[0])}' (known: {', '.join(sorted(known))}).",
            param="allowed_extensions",
        )


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A team named '{shown(name)}' already exists.", param="name")


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(
        "The cursor is not one this list handed out (use next_cursor as it came).",
        param="cursor",
    )


def _check_expiry(expires_at: float | None, now: float) -> None:
    """A key set to expire before now is a mistake, not a way to disable it (revoke)."""
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest(
            "expires_at is in the past: give a future time in Unix seconds.",
            param="expires_at",
        )
