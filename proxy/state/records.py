"""What the state layer stores, as typed records (the repositories' inputs and outputs).

These are storage records, not wire types: the admin API has its own request and
response Structs (``proxy.schemas.admin``) and converts. Times are Unix seconds (float).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["user", "admin"]
BudgetPeriod = Literal["day", "month"]

DEFAULT_TEAM_ID = "default"
"""The team of static ``api_keys``, the master key and callers without a key."""


class Limits(msgspec.Struct, kw_only=True):
    """Limits a team or a key may carry; ``None`` means no limit of that kind."""

    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget_usd: float | None = None
    budget_period: BudgetPeriod = "month"
    allowed_models: list[str] | None = None
    """Glob patterns of model names; ``None``: every model."""
    allowed_extensions: list[str] | None = None
    """Extension names; ``None``: every extension."""


class Team(Limits, kw_only=True):
    id: str
    name: str
    metadata: dict[str, Any] = {}
    created_at: float
    updated_at: float


class ApiKey(Limits, kw_only=True):
    """A virtual key. The secret itself is never stored: only its hash (kept by the
    repository, never returned) and a short ``prefix`` for people to recognise it."""

    id: str
    name: str
    team_id: str
    role: Role = "user"
    prefix: str
    max_parallel: int | None = None
    expires_at: float | None = None
    metadata: dict[str, Any] = {}
    created_at: float
    updated_at: float
    revoked_at: float | None = None
    rotated_at: float | None = None
    previous_valid_until: float | None = None
    """After a rotation: until when the previous secret still works."""


class UsageRecord(msgspec.Struct, kw_only=True):
    """One request, as accounted. Never holds prompt or completion text."""

    time: float
    request_id: str
    key_id: str
    team_id: str
    model: str
    deployment: str
    route: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: float = 0.0
    upstream_ms: float = 0.0
    ttft_ms: float | None = None
    cached: bool = False
    """Answered from the response cache: no upstream call, no cost, no tokens charged."""


class UsageFilter(msgspec.Struct, kw_only=True):
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    since: float | None = None
    """Inclusive lower bound on ``time``."""
    until: float | None = None
    """Exclusive upper bound on ``time``."""


UsageGrouping = Literal["day", "model", "key", "team"]


class UsageTotals(msgspec.Struct, kw_only=True):
    """Totals of one group (``group`` is the day ``YYYY-MM-DD`` (UTC), model, key id or
    team id; ``None`` when not grouped)."""

    group: str | None = None
    requests: int = 0
    errors: int = 0
    """Requests answered with a status of 400 or above (499 included)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached: int = 0
    """Requests answered from the response cache."""


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int | None = None
    """Assigned by the store."""
    time: float
    actor: str
    """Who: a key id, ``master`` or ``cli:<user>``."""
    action: str
    """What: ``team.create``, ``key.rotate``, ..."""
    target: str
    """The id of the team or key acted on."""
    details: dict[str, Any] = {}
    """The changed fields (never a secret)."""


class SessionInfo(msgspec.Struct):
    """A stored conversation, as listed (the messages are read with ``history``)."""

    id: str
    created_at: int
    updated_at: int
    message_count: int
    object: str = "switchyard.session"


class MediaRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A stored file (its bytes are in the media backend under ``storage_key``)."""

    id: str
    owner: str
    """The team it was made for."""
    content_type: str
    size: int
    created: float
    expires: float
    """Never served after this; the retention sweep deletes it."""
    storage_key: str
    """The backend's name for the bytes: ``<id>.<ext>``, built only from a checked id."""


JobStatus = Literal["queued", "in_progress", "completed", "failed"]
ACTIVE_JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "in_progress")


class VideoJobRecord(msgspec.Struct, kw_only=True):
    """A video job as every replica sees it; one replica (``runner_id``) runs it."""

    id: str
    owner: str
    """The team of the key that created it."""
    model: str
    prompt: str
    seconds: str
    size: str
    status: JobStatus = "queued"
    progress: int = 0
    created_at: float
    completed_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    media_id: str | None = None
    runner_id: str
    """The process running it (random per process)."""
    heartbeat_at: float
    """Refreshed by the runner while the job is queued or in progress."""
    media_expires: float | None = None
    """Read only: when its video expires (from the media row), for the wire's ``expires_at``."""


class JobProgress(msgspec.Struct, kw_only=True):
    """What a runner writes while a job runs."""

    status: JobStatus
    progress: int
    heartbeat_at: float


class JobOutcome(msgspec.Struct, kw_only=True):
    """How a job ended."""

    status: Literal["completed", "failed"]
    completed_at: float
    progress: int = 0
    error_code: str | None = None
    error_message: str | None = None
    media_id: str | None = None
    size: str | None = None
    """Replaces the requested size when given (what the engine produced)."""
    seconds: str | None = None


ExtensionJobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE_EXTENSION_JOB_STATUSES: tuple[ExtensionJobStatus, ...] = ("queued", "running")


class ExtensionJobRecord(msgspec.Struct, kw_only=True):
    """A background job an extension runs (a directory index...), as every replica sees
    it. The state layer knows its bookkeeping, never its meaning: ``document`` is the
    extension's own encoding of it (msgspec JSON), opaque here."""

    kind: str
    """Whose jobs these are (an extension's name for them); ids are unique per kind."""
    id: str
    owner: str
    status: ExtensionJobStatus = "queued"
    document: bytes
    runner_id: str
    """The process running it (random per process)."""
    heartbeat_at: float
    """Refreshed by the runner while the job is queued or running."""
    created_at: float
    updated_at: float
    error: str | None = None
    """Why the state layer failed it (``fail_stale``); the extension's own errors are in
    its document."""


class ExtensionJobChange(msgspec.Struct, kw_only=True):
    """What a runner writes: always a heartbeat (``now``), and what changed."""

    now: float
    status: ExtensionJobStatus | None = None
    document: bytes | None = None


class StoredResponse(msgspec.Struct, kw_only=True):
    """A Responses API response (``POST /v1/responses`` with ``store``), owned by the
    caller's team and key. The JSON documents are the dialect's own, opaque here."""

    id: str
    team_id: str
    key_id: str
    """The owner key (``proxy.context.owner_of``: ``-`` for callers without a key)."""
    created_at: float
    model: str
    previous_response_id: str | None = None
    response: bytes
    """The ``response`` object, as ``GET /v1/responses/{id}`` answers it."""
    input_items: bytes
    """Its input items, as ``GET /v1/responses/{id}/input_items`` lists them."""
    messages: bytes
    """The chat messages of the whole chain through this response's output: all that a
    ``previous_response_id`` continuation needs, on any replica."""
