"""Who is calling: the identity every request carries once it is authenticated.

Ownership follows it: sessions belong to ``key_id``; RAG collections, media files and
video jobs belong to ``team_id``. A static ``api_keys`` entry and a caller without a key
(auth off) are in the ``default`` team and keep the key ids they always had (a digest
of the key, ``-`` without one), so what they stored before teams existed stays theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from proxy.state.records import DEFAULT_TEAM_ID, ApiKey, BudgetPeriod, Limits, Role, Team
from proxy.tenancy.limits import ScopeLimit

IdentityKind = Literal["master", "static", "virtual", "jwt", "anonymous"]


@dataclass(frozen=True, slots=True)
class Identity:
    key_id: str
    """Owner of per-key data (sessions); the virtual key's id, or a static key's digest."""
    team_id: str = DEFAULT_TEAM_ID
    role: Role = "user"
    kind: IdentityKind = "anonymous"
    key: ApiKey | None = None
    """The virtual key's record (its limits), when the caller used one."""
    team: Team | None = None
    """The team's record (its limits), when it has one."""
    scopes: tuple[tuple[str, Limits], ...] = field(default=())
    """``(scope id, limits)`` for the key and for the team, strictest applied: the scope
    ids are ``key:<id>`` and ``team:<id>``."""
    plan: AdmissionPlan = field(init=False, repr=False, compare=False)
    """What admission checks for this identity, worked out once (identities are cached
    with their key lookup, so the hot path builds none of it per request)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", AdmissionPlan.of(self))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def name(self) -> str:
        """How audit entries name this caller (never a secret)."""
        if self.kind == "master":
            return "master"
        return self.key_id


@dataclass(frozen=True, slots=True)
class AdmissionPlan:
    model_patterns: tuple[list[str], ...]
    """Each scope's ``allowed_models`` that restricts anything; all must match."""
    extension_lists: tuple[tuple[str, list[str]], ...]
    rate: tuple[ScopeLimit, ...]
    budgets: tuple[tuple[str, float, BudgetPeriod], ...]
    spend: tuple[tuple[str, BudgetPeriod], ...]
    wants_tokens: bool
    parallel: tuple[str, int] | None

    @property
    def checks_anything(self) -> bool:
        return bool(self.model_patterns or self.extension_lists or self.rate or self.budgets) or (
            self.parallel is not None
        )

    @classmethod
    def of(cls, identity: Identity) -> AdmissionPlan:
        scopes = identity.scopes
        key = identity.key
        return cls(
            model_patterns=tuple(
                limits.allowed_models for _s, limits in scopes if limits.allowed_models is not None
            ),
            extension_lists=tuple(
                (scope, limits.allowed_extensions)
                for scope, limits in scopes
                if limits.allowed_extensions is not None
            ),
            rate=tuple(
                ScopeLimit(scope, limits.rpm_limit, limits.tpm_limit)
                for scope, limits in scopes
                if limits.rpm_limit is not None or limits.tpm_limit is not None
            ),
            budgets=tuple(
                (scope, limits.max_budget_usd, limits.budget_period)
                for scope, limits in scopes
                if limits.max_budget_usd is not None
            ),
            spend=tuple((scope, limits.budget_period) for scope, limits in scopes),
            wants_tokens=any(limits.tpm_limit is not None for _s, limits in scopes),
            parallel=(
                (f"key:{key.id}", key.max_parallel)
                if key is not None and key.max_parallel is not None
                else None
            ),
        )


def identity_scopes(key: ApiKey | None, team: Team | None) -> tuple[tuple[str, Limits], ...]:
    scopes: list[tuple[str, Limits]] = []
    if key is not None:
        scopes.append((f"key:{key.id}", key))
    if team is not None:
        scopes.append((f"team:{team.id}", team))
    return tuple(scopes)
