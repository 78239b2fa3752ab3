"""The repositories' interfaces: what handlers, extensions and the tenancy layer may ask
of the state store. Both engines (SQLite, PostgreSQL) implement exactly these, and the
same repository tests run against both.

Every method that reads or writes something owned takes the owner; there is no query
without it. ``None`` from a getter means "no such thing for this owner".
"""

from __future__ import annotations

import builtins
from typing import Any, Protocol

from proxy.state.records import (
    ApiKey,
    AuditEntry,
    SessionInfo,
    Team,
    UsageFilter,
    UsageGrouping,
    UsageRecord,
    UsageTotals,
)


class Conflict(Exception):
    """A unique name is taken (a team's name); the message says which."""


class TeamRepository(Protocol):
    async def create(self, team: Team) -> Team:
        """Insert; raises ``Conflict`` when the name is taken (case-sensitive)."""
        ...

    async def get(self, team_id: str) -> Team | None:
        """A team that exists and is not deleted."""
        ...

    async def named(self, ref: str) -> Team | None:
        """A live team by id, else by name (the CLI's ``--team``, a JWT's team claim)."""
        ...

    async def list(self) -> list[Team]:
        """Every team that is not deleted, oldest first."""
        ...

    async def update(self, team_id: str, changes: dict[str, Any], now: float) -> Team | None:
        """Set the given fields (names of ``Team`` fields), ``updated_at = now``; raises
        ``Conflict`` on a taken name; ``None`` when there is no such team."""
        ...

    async def delete(self, team_id: str, now: float) -> bool:
        """Mark deleted (usage keeps its team id); False when there was no such team."""
        ...


class KeyRepository(Protocol):
    async def create(self, key: ApiKey, key_hash: str) -> ApiKey:
        """Insert a key with the hash of its secret (hex SHA-256, see ``proxy.tenancy``)."""
        ...

    async def get(self, key_id: str) -> ApiKey | None:
        """The key, revoked or not."""
        ...

    async def list(self, team_id: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
        """Keys (of one team, when given), oldest first."""
        ...

    async def update(self, key_id: str, changes: dict[str, Any], now: float) -> ApiKey | None:
        """Set the given fields of a key that is not revoked; ``None`` otherwise."""
        ...

    async def revoke(self, key_id: str, now: float) -> ApiKey | None:
        """Set ``revoked_at`` (once); ``None`` when there is no such key."""
        ...

    async def revoke_team(self, team_id: str, now: float) -> builtins.list[str]:
        """Revoke every live key of a team; the ids revoked."""
        ...

    async def rotate(
        self, key_id: str, new_hash: str, new_prefix: str, grace_until: float, now: float
    ) -> ApiKey | None:
        """Replace the secret; the previous hash keeps working until ``grace_until``.
        ``None`` when there is no such live key."""
        ...

    async def find_by_hash(self, key_hash: str, now: float) -> ApiKey | None:
        """The key whose current secret has this hash, or whose previous secret has it
        and ``previous_valid_until > now``. Revoked and expired keys are returned too
        (the caller says why they are refused)."""
        ...

    async def any_admin(self) -> bool:
        """Whether a live admin key exists (the CLI's hint for a first set-up)."""
        ...


class UsageRepository(Protocol):
    async def insert_many(self, rows: list[UsageRecord]) -> None:
        """One transaction for the whole batch."""
        ...

    async def totals(self, where: UsageFilter, group_by: UsageGrouping | None) -> list[UsageTotals]:
        """Sums per group, groups sorted by name (days ascending)."""
        ...

    async def requests(
        self, where: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[UsageRecord], str | None]:
        """Rows newest first, ``limit`` at most, and the cursor of the next page (``None``
        at the end). A cursor is opaque to callers; a malformed one raises ``ValueError``."""
        ...

    async def spend(self, *, team_id: str | None, key_id: str | None, since: float) -> float:
        """Cost in USD since ``since`` of one key or one team."""
        ...


class AuditRepository(Protocol):
    async def add(self, entry: AuditEntry) -> AuditEntry: ...

    async def list(
        self, limit: int, cursor: str | None, *, target: str | None = None
    ) -> tuple[list[AuditEntry], str | None]:
        """Newest first, paged like ``UsageRepository.requests``."""
        ...


class SessionRepository(Protocol):
    """Conversations, owned by a key (its id); see ``extensions.sessions``."""

    async def history(self, owner: str, session: str) -> list[dict[str, Any]]: ...

    async def append(self, owner: str, session: str, messages: list[dict[str, Any]]) -> None:
        """Add messages at the end (creating the session), atomically, also with several
        writers on one session at once (each gets consecutive sequence numbers)."""
        ...

    async def list(self, owner: str) -> list[SessionInfo]:
        """Most recently updated first."""
        ...

    async def get(self, owner: str, session: str) -> SessionInfo | None: ...

    async def delete(self, owner: str, session: str) -> bool: ...
