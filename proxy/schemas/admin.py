"""Wire types of the admin API (``/v1/switchyard/admin``) and of ``/v1/switchyard/me``.

Unlike the OpenAI request types, admin requests forbid unknown fields: a misspelt
limit (``rpm`` for ``rpm_limit``) must be a 400 naming it, not a key without the limit
its creator meant. In PATCH bodies an absent field is left as it is (``UNSET``) and
``null`` clears a limit. Times are Unix seconds, as OpenAI's ``created``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse, decode_request
from proxy.state.records import (
    DEFAULT_TEAM_ID,
    ApiKey,
    AuditEntry,
    Team,
    UsageRecord,
    UsageTotals,
)

#: Printable text without control characters (NUL among them: PostgreSQL refuses it)
#: and without surrounding spaces (``" research "`` and ``"research"`` would both exist).
_TEXT = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_TEXT)]
MAX_COUNT = 2**31 - 1
"""The largest limit a database integer column holds on both engines."""
PerMinute = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
"""A requests- or tokens-per-minute limit (``null``: none)."""
Usd = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
UnixTime = Annotated[float, msgspec.Meta(ge=0, le=253402300799)]
"""Unix seconds, at the latest 9999-12-31."""
ModelPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_TEXT)]
"""A glob over model names (``gpt-4o*``)."""
ExtensionName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_TEXT)]
"""A registered extension's name (``persona``, ``rag``, ``tools``, ``session``, ...)."""
Period = Literal["day", "month"]
RoleName = Literal["user", "admin"]


class AdminRequest(WireRequest, kw_only=True, forbid_unknown_fields=True):
    """Base of the admin request bodies: an unknown field is an error naming it."""


class TeamCreate(AdminRequest, kw_only=True):
    name: Name
    rpm_limit: PerMinute | None = None
    tpm_limit: PerMinute | None = None
    max_budget_usd: Usd | None = None
    budget_period: Period = "month"
    allowed_models: list[ModelPattern] | None = None
    allowed_extensions: list[ExtensionName] | None = None
    metadata: dict[str, Any] = {}


class TeamUpdate(AdminRequest, kw_only=True):
    """Absent: unchanged; ``null``: no limit of that kind."""

    name: Name | UnsetType = UNSET
    rpm_limit: PerMinute | UnsetType | None = UNSET
    tpm_limit: PerMinute | UnsetType | None = UNSET
    max_budget_usd: Usd | UnsetType | None = UNSET
    budget_period: Period | UnsetType = UNSET
    allowed_models: list[ModelPattern] | UnsetType | None = UNSET
    allowed_extensions: list[ExtensionName] | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class KeyCreate(AdminRequest, kw_only=True):
    name: Name
    team_id: Name = DEFAULT_TEAM_ID
    role: RoleName = "user"
    rpm_limit: PerMinute | None = None
    tpm_limit: PerMinute | None = None
    max_parallel: PerMinute | None = None
    """Requests running at once."""
    max_budget_usd: Usd | None = None
    budget_period: Period = "month"
    allowed_models: list[ModelPattern] | None = None
    allowed_extensions: list[ExtensionName] | None = None
    expires_at: UnixTime | None = None
    metadata: dict[str, Any] = {}


class KeyUpdate(AdminRequest, kw_only=True):
    """Absent: unchanged; ``null``: no limit of that kind (or no expiry). A key stays in
    its team: what it stored belongs to that team."""

    name: Name | UnsetType = UNSET
    role: RoleName | UnsetType = UNSET
    rpm_limit: PerMinute | UnsetType | None = UNSET
    tpm_limit: PerMinute | UnsetType | None = UNSET
    max_parallel: PerMinute | UnsetType | None = UNSET
    max_budget_usd: Usd | UnsetType | None = UNSET
    budget_period: Period | UnsetType = UNSET
    allowed_models: list[ModelPattern] | UnsetType | None = UNSET
    allowed_extensions: list[ExtensionName] | UnsetType | None = UNSET
    expires_at: UnixTime | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


DEFAULT_GRACE_S = 300.0
"""How long a rotated key's previous secret keeps working by default: five minutes, so
clients that hold it can be switched over without a burst of 401s."""


MAX_GRACE_S = 30 * 86400.0
"""A previous secret works at most 30 days after a rotation (a rotation is meant to end it)."""


class KeyRotate(AdminRequest, kw_only=True):
    grace_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_GRACE_S)] = DEFAULT_GRACE_S
    """Seconds the previous secret still works (0: it stops at once)."""


R = TypeVar("R", bound=AdminRequest)


def decode_admin(raw: bytes, kind: type[R]) -> R:
    """An admin request body, or ``InvalidRequest`` naming the offending field."""
    return decode_request(raw, kind).params


def changes_of(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body sets (``UNSET`` ones left out)."""
    return {f: getattr(body, f) for f in body.__struct_fields__ if getattr(body, f) is not UNSET}


def _time(value: float | None) -> int | None:
    return None if value is None else int(value)


class TeamObject(WireResponse, kw_only=True):
    id: str
    object: str = "switchyard.team"
    name: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_budget_usd: float | None = None
    budget_period: str = "month"
    allowed_models: list[str] | None = None
    allowed_extensions: list[str] | None = None
    metadata: dict[str, Any] = {}
    created_at: int
    updated_at: int


class KeyObject(WireResponse, kw_only=True):
    id: str
    object: str = "switchyard.key"
    name: str
    team_id: str
    role: str
    prefix: str
    """The secret's first characters, to recognise it."""
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel: int | None = None
    max_budget_usd: float | None = None
    budget_period: str = "month"
    allowed_models: list[str] | None = None
    allowed_extensions: list[str] | None = None
    expires_at: int | None = None
    metadata: dict[str, Any] = {}
    created_at: int
    updated_at: int
    revoked_at: int | None = None
    rotated_at: int | None = None
    previous_valid_until: int | None = None
    """After a rotation: until when the previous secret still works."""
    key: str | UnsetType = UNSET
    """The secret: only in the answer that created it (create, rotate)."""


class TeamDeleted(WireResponse, kw_only=True):
    id: str
    object: str = "switchyard.team.deleted"
    deleted: bool = True
    revoked_keys: list[str] = []


class TeamList(WireResponse, kw_only=True):
    object: str = "list"
    data: list[TeamObject]


class KeyList(WireResponse, kw_only=True):
    object: str = "list"
    data: list[KeyObject]


class UsageGroup(WireResponse, kw_only=True):
    group: str | None = None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: int = 0
    """Requests answered from the response cache (free)."""


class UsageList(WireResponse, kw_only=True):
    object: str = "list"
    data: list[UsageGroup]


class UsageRequest(WireResponse, kw_only=True):
    """One accounted request (never its text)."""

    object: str = "switchyard.usage.request"
    time: float
    request_id: str
    key_id: str
    team_id: str
    model: str
    deployment: str
    route: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_ms: float
    upstream_ms: float
    ttft_ms: float | None = None
    cached: bool = False


class UsageRequestPage(WireResponse, kw_only=True):
    object: str = "list"
    data: list[UsageRequest]
    has_more: bool
    next_cursor: str | None = None


class AuditObject(WireResponse, kw_only=True):
    id: int | None = None
    object: str = "switchyard.audit_entry"
    time: float
    actor: str
    action: str
    target: str
    details: dict[str, Any] = {}


class AuditPage(WireResponse, kw_only=True):
    object: str = "list"
    data: list[AuditObject]
    has_more: bool
    next_cursor: str | None = None


def team_object(team: Team) -> TeamObject:
    return TeamObject(
        id=team.id,
        name=team.name,
        rpm_limit=team.rpm_limit,
        tpm_limit=team.tpm_limit,
        max_budget_usd=team.max_budget_usd,
        budget_period=team.budget_period,
        allowed_models=team.allowed_models,
        allowed_extensions=team.allowed_extensions,
        metadata=team.metadata,
        created_at=int(team.created_at),
        updated_at=int(team.updated_at),
    )


def key_object(key: ApiKey, secret: str | None = None) -> KeyObject:
    return KeyObject(
        id=key.id,
        name=key.name,
        team_id=key.team_id,
        role=key.role,
        prefix=key.prefix,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        max_parallel=key.max_parallel,
        max_budget_usd=key.max_budget_usd,
        budget_period=key.budget_period,
        allowed_models=key.allowed_models,
        allowed_extensions=key.allowed_extensions,
        expires_at=_time(key.expires_at),
        metadata=key.metadata,
        created_at=int(key.created_at),
        updated_at=int(key.updated_at),
        revoked_at=_time(key.revoked_at),
        rotated_at=_time(key.rotated_at),
        previous_valid_until=_time(key.previous_valid_until),
        key=UNSET if secret is None else secret,
    )


def usage_group(totals: UsageTotals) -> UsageGroup:
    return UsageGroup(**msgspec.structs.asdict(totals))


def usage_request(row: UsageRecord) -> UsageRequest:
    return UsageRequest(**msgspec.structs.asdict(row))


def audit_object(entry: AuditEntry) -> AuditObject:
    return AuditObject(**msgspec.structs.asdict(entry))


class MeKey(WireResponse, kw_only=True):
    id: str
    name: str | None = None
    """A virtual key's name (``null`` for the master key, static keys and JWTs)."""
    role: str
    kind: str
    """``master``, ``static``, ``virtual``, ``jwt`` or ``anonymous``."""


class MeTeam(WireResponse, kw_only=True):
    id: str
    name: str | None = None


class EffectiveLimits(WireResponse, kw_only=True):
    """Per kind, the strictest of the key's and the team's limits (``null``: none)."""

    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel: int | None = None
    max_budget_usd: float | None = None
    allowed_models: list[str] | None = None
    allowed_extensions: list[str] | None = None


class BudgetState(WireResponse, kw_only=True):
    max_budget_usd: float
    period: str
    spent_usd: float
    remaining_usd: float
    resets_at: int


class PeriodUsage(WireResponse, kw_only=True):
    since: int
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class RateWindow(WireResponse, kw_only=True):
    """One kind (requests or tokens) in the current minute, as its strictest scope sees it."""

    scope: str
    limit: int
    remaining: int
    reset_s: float


class RateSnapshotObject(WireResponse, kw_only=True):
    requests: RateWindow | None = None
    """``null``: no requests-per-minute limit applies."""
    tokens: RateWindow | None = None


class Me(WireResponse, kw_only=True):
    object: str = "switchyard.me"
    key: MeKey
    team: MeTeam
    limits: EffectiveLimits
    rate: RateSnapshotObject
    budget: dict[str, BudgetState] = {}
    """Per scope with a budget."""
    usage_this_period: PeriodUsage
    """This key's totals since its budget period began (a month unless the key's or
    team's budget says a day)."""


class CacheModelStats(WireResponse, kw_only=True):
    model: str
    entries: int
    bytes: int
    hits: int
    misses: int
    hit_rate: float
    """``hits / (hits + misses)``; 0 before any request."""


class CacheStats(WireResponse, kw_only=True):
    """The response cache, in total and by model (counts are since the cache began:
    this process's, or with Redis every replica's)."""

    object: str = "switchyard.cache"
    enabled: bool
    backend: str | None = None
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    data: list[CacheModelStats] = []


class CacheFlushed(WireResponse, kw_only=True):
    object: str = "switchyard.cache.flushed"
    removed: int
    """Live entries removed."""
    model: str | None = None
    team: str | None = None


def _rate(hits: int, misses: int) -> float:
    return round(hits / (hits + misses), 4) if hits + misses else 0.0


def cache_stats(backend: str | None, by_model: dict[str, Any]) -> CacheStats:
    """``by_model``: ``proxy.cache.backends.ModelStats`` by model name."""
    data = [
        CacheModelStats(
            model=model,
            entries=s.entries,
            bytes=s.bytes,
            hits=s.hits,
            misses=s.misses,
            hit_rate=_rate(s.hits, s.misses),
        )
        for model, s in sorted(by_model.items())
    ]
    hits, misses = sum(d.hits for d in data), sum(d.misses for d in data)
    return CacheStats(
        enabled=backend is not None,
        backend=backend,
        entries=sum(d.entries for d in data),
        bytes=sum(d.bytes for d in data),
        hits=hits,
        misses=misses,
        hit_rate=_rate(hits, misses),
        data=data,
    )
