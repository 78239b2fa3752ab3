"""What a caller may do with a model, checked once per model call, before the upstream.

In order: the model (the key's and the team's ``allowed_models``: a model it may not use
is a 404 ``model_not_found``, as if it did not exist), the extensions (403 naming the
first it may not use), the budgets (429 ``insufficient_quota``), ``max_parallel`` and
the rate windows (429 ``rate_limit_exceeded``). The stricter of key and team wins,
because both are checked. Nothing is counted for a request that is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from proxy.errors import ModelNotFound, PermissionDenied, shown
from proxy.state.records import BudgetPeriod
from proxy.tenancy.identity import Identity
from proxy.tenancy.limits import Grant, ScopeLimit


def may_use_model(identity: Identity, model: str) -> bool:
    for _scope, limits in identity.scopes:
        patterns = limits.allowed_models
        if patterns is not None and not any(fnmatchcase(model, p) for p in patterns):
            return False
    return True


def check_model(identity: Identity, model: str) -> None:
    if not may_use_model(identity, model):
        raise ModelNotFound(
            f"The model '{shown(model)}' does not exist or you do not have access to it.",
            param="model",
        )


def check_extensions(identity: Identity, names: Iterable[str]) -> None:
    for name in names:
        for scope, limits in identity.scopes:
            allowed = limits.allowed_extensions
            if allowed is not None and name not in allowed:
                raise PermissionDenied(
                    f"The extension '{name}' is not allowed for {scope.replace(':', ' ', 1)}.",
                    param="switchyard",
                )


def rate_scopes(identity: Identity) -> tuple[ScopeLimit, ...]:
    return tuple(
        ScopeLimit(scope, limits.rpm_limit, limits.tpm_limit)
        for scope, limits in identity.scopes
        if limits.rpm_limit is not None or limits.tpm_limit is not None
    )


def budget_scopes(identity: Identity) -> tuple[tuple[str, float, BudgetPeriod], ...]:
    return tuple(
        (scope, limits.max_budget_usd, limits.budget_period)
        for scope, limits in identity.scopes
        if limits.max_budget_usd is not None
    )


def spend_scopes(identity: Identity) -> tuple[tuple[str, BudgetPeriod], ...]:
    """Where a request's cost is added: each scope, in its own budget period."""
    return tuple((scope, limits.budget_period) for scope, limits in identity.scopes)


def wants_tokens(identity: Identity) -> bool:
    return any(limits.tpm_limit is not None for _s, limits in identity.scopes)


def parallel_limit(identity: Identity) -> tuple[str, int] | None:
    key = identity.key
    if key is None or key.max_parallel is None:
        return None
    return f"key:{key.id}", key.max_parallel


@dataclass(slots=True)
class Admission:
    """A request let through: what it holds until it ends."""

    identity: Identity
    model: str
    grant: Grant | None = None
    parallel_scope: str | None = None


def limits_of(identity: Identity) -> dict[str, Any]:
    """The effective limits (per kind, the strictest of key and team), for ``/me``."""
    effective: dict[str, Any] = {}
    for field in ("rpm_limit", "tpm_limit", "max_budget_usd"):
        values = [getattr(limits, field) for _s, limits in identity.scopes]
        present = [v for v in values if v is not None]
        effective[field] = min(present) if present else None
    effective["max_parallel"] = identity.key.max_parallel if identity.key is not None else None
    return effective
