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
    ExtensionJobChange,
    ExtensionJobRecord,
    JobOutcome,
    JobProgress,
    MediaRecord,
    SessionInfo,
    StoredResponse,
    Team,
    UsageFilter,
    UsageGrouping,
    UsageRecord,
    UsageTotals,
    VideoJobRecord,
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


class MediaRepository(Protocol):
    """Generated files' metadata; the bytes live in a media backend (``proxy.media``)."""

    async def add(self, media: MediaRecord) -> None: ...

    async def set_size(self, owner: str, media_id: str, size: int) -> None:
        """The size of a streamed file, once all of it is written."""
        ...

    async def get(self, owner: str, media_id: str, now: float) -> MediaRecord | None:
        """The team's file, unless it expired before ``now``."""
        ...

    async def by_capability(self, media_id: str, now: float) -> MediaRecord | None:
        """The one lookup without an owner: ``GET /v1/media/{id}`` without a key, where
        the unguessable id (192 random bits) is itself the credential, as a signed URL
        is. Every other read asks with the owner."""
        ...

    async def delete(self, owner: str, media_id: str) -> MediaRecord | None:
        """Remove the row; the removed row (its key says which bytes to delete)."""
        ...

    async def expired(self, now: float, limit: int) -> builtins.list[MediaRecord]:
        """Retention (all owners): rows whose ``expires`` is before ``now``, oldest first."""
        ...

    async def forget(self, rows: builtins.list[MediaRecord]) -> int:
        """Retention: delete these rows (by owner and id); how many went."""
        ...

    async def imported(self, marker: str) -> bool:
        """Whether the legacy import named ``marker`` happened."""
        ...

    async def import_once(self, marker: str, rows: builtins.list[MediaRecord]) -> int:
        """Record ``marker`` and insert ``rows`` (skipping ids that exist) in one
        transaction, unless ``marker`` was recorded before; the rows inserted."""
        ...


class VideoJobRepository(Protocol):
    """Video jobs. Writes that a runner makes name the runner: they change nothing once
    another replica has declared the job's runner lost, or the job was deleted."""

    async def create(self, job: VideoJobRecord) -> None: ...

    async def get(self, owner: str, job_id: str) -> VideoJobRecord | None: ...

    async def list(self, owner: str) -> builtins.list[VideoJobRecord]:
        """Newest first."""
        ...

    async def progress(self, owner: str, job_id: str, runner_id: str, update: JobProgress) -> bool:
        """Status, progress and heartbeat of a job still queued or in progress and run by
        ``runner_id``; False when it is not (deleted, finished, or taken as lost)."""
        ...

    async def finish(self, owner: str, job_id: str, runner_id: str, outcome: JobOutcome) -> bool:
        """End a job still queued or in progress and run by ``runner_id``; False when
        it is not."""
        ...

    async def fail_stale(
        self, owner: str | None, before: float, now: float, code: str, message: str
    ) -> int:
        """Mark failed the jobs still queued or in progress whose heartbeat is older than
        ``before`` (of one team, or of all when ``owner`` is ``None``: the sweep)."""
        ...

    async def delete(self, owner: str, job_id: str) -> VideoJobRecord | None:
        """Remove the job; the removed row (its ``media_id`` is deleted by the caller)."""
        ...

    async def forget_finished(self, before: float) -> int:
        """Retention (all owners): delete jobs that ended before ``before``."""
        ...


class LeaseRepository(Protocol):
    """Work one replica does for all of them (the retention sweep)."""

    async def acquire(self, name: str, holder: str, ttl_s: float, now: float) -> bool:
        """Take (or extend) the lease ``name`` for ``ttl_s`` unless another holder has it
        unexpired; whether ``holder`` holds it now. Atomic on both engines."""
        ...

    async def release(self, name: str, holder: str) -> None: ...


class ExtensionJobRepository(Protocol):
    """Background jobs of extensions, by ``kind`` (the extension's name for them). Reads
    take the owner; writes a runner makes name the runner and change nothing once the
    job has ended (finished, or failed by another replica as stale)."""

    async def create(self, job: ExtensionJobRecord) -> None: ...

    async def get(self, kind: str, owner: str, job_id: str) -> ExtensionJobRecord | None: ...

    async def list(self, kind: str, owner: str) -> builtins.list[ExtensionJobRecord]:
        """Newest first."""
        ...

    async def update(
        self, kind: str, owner: str, job_id: str, runner_id: str, change: ExtensionJobChange
    ) -> bool:
        """Heartbeat (and status, document) of a job still queued or running and run by
        ``runner_id``; False when it is not (gone, ended, or failed as stale)."""
        ...

    async def fail_stale(self, kind: str, stale_before: float, reason: str, now: float) -> int:
        """Mark ``failed`` (with ``error = reason``) the jobs of ``kind`` still queued or
        running whose heartbeat is older than ``stale_before``: their runner is gone."""
        ...

    async def forget_finished(self, kind: str, before: float) -> int:
        """Retention (all owners): delete the jobs of ``kind`` that ended before ``before``."""
        ...


class ResponseRepository(Protocol):
    """Stored Responses API responses, owned by a team and a key together: every method
    takes both, and another owner's id reads as no such response."""

    async def add(self, record: StoredResponse) -> None:
        """Insert (ids are random and unique)."""
        ...

    async def get(self, team_id: str, key_id: str, response_id: str) -> StoredResponse | None: ...

    async def delete(self, team_id: str, key_id: str, response_id: str) -> bool:
        """Remove; False when the owner has no such response."""
        ...
