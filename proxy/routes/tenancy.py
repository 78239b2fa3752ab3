"""``GET /v1/switchyard/me`` (any key: what it is, its limits, where it stands) and the
helpers the admin routes share: the caller's identity, the services from the app state.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from litestar import Request, Response, get

from proxy.app_state import AppState
from proxy.context import request_info
from proxy.gateway import json_response
from proxy.schemas.admin import (
    BudgetState,
    EffectiveLimits,
    Me,
    MeKey,
    MeTeam,
    PeriodUsage,
    RateSnapshotObject,
    RateWindow,
)
from proxy.state.records import BudgetPeriod, Limits, UsageFilter
from proxy.tenancy.admin import AdminService, AdminStore
from proxy.tenancy.budget import period_bounds
from proxy.tenancy.identity import Identity
from proxy.tenancy.limits import RateStatus
from proxy.tenancy.service import Tenancy


def identity_of(scope: Any) -> Identity | None:
    """The caller, as the auth guard found it."""
    return request_info(scope).identity


def actor_of(scope: Any) -> str:
    """How audit entries name the caller."""
    identity = identity_of(scope)
    return "-" if identity is None else identity.name


def _state(request: Request[Any, Any, Any]) -> AppState:
    return request.app.state.switchyard  # type: ignore[no-any-return]


def tenancy_of(request: Request[Any, Any, Any]) -> Tenancy:
    return _state(request).tenancy


def admin_service(request: Request[Any, Any, Any]) -> AdminService:
    state = _state(request)
    store: AdminStore = state.store
    return AdminService(store, on_key_change=state.tenancy.key_changed)


N = TypeVar("N", int, float)


def _smallest(values: Iterable[N | None]) -> N | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


def _both_allow(mine: list[str] | None, theirs: list[str] | None) -> list[str] | None:
    """Patterns a name must match in both lists, as one list: each pattern of one list
    that a pattern of the other covers (``gpt-4o`` under ``gpt-*``). Conservative: two
    globs that only overlap (``a*`` and ``*b``) are left out."""
    if mine is None or theirs is None:
        return mine if theirs is None else theirs
    covered = [p for p in mine if any(fnmatchcase(p, q) for q in theirs)]
    covered += [q for q in theirs if q not in covered and any(fnmatchcase(q, p) for p in mine)]
    return covered


def _common(mine: list[str] | None, theirs: list[str] | None) -> list[str] | None:
    if mine is None or theirs is None:
        return mine if theirs is None else theirs
    return [name for name in mine if name in theirs]


def effective_limits(
    scopes: tuple[tuple[str, Limits], ...], max_parallel: int | None
) -> EffectiveLimits:
    """Per kind, the strictest of the scopes' limits (the key's and its team's)."""
    limits = [lim for _, lim in scopes]
    models: list[str] | None = None
    extensions: list[str] | None = None
    for lim in limits:
        models = _both_allow(models, lim.allowed_models)
        extensions = _common(extensions, lim.allowed_extensions)
    return EffectiveLimits(
        rpm_limit=_smallest(lim.rpm_limit for lim in limits),
        tpm_limit=_smallest(lim.tpm_limit for lim in limits),
        max_parallel=max_parallel,
        max_budget_usd=_smallest(lim.max_budget_usd for lim in limits),
        allowed_models=models,
        allowed_extensions=extensions,
    )


def _window(status: RateStatus | None) -> RateWindow | None:
    if status is None:
        return None
    return RateWindow(
        scope=status.scope, limit=status.limit, remaining=status.remaining, reset_s=status.reset_s
    )


@get("/me", summary="The calling key: its team, limits, rate, budget and usage")
async def me_handler(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Mounted at ``/v1/switchyard/me`` by ``admin_router``, behind the auth guard."""
    identity = identity_of(request.scope) or Identity(key_id="-")
    state = _state(request)
    tenancy: Tenancy = state.tenancy
    await tenancy.settled()
    snapshot = await tenancy.limiter.snapshot(identity.plan.rate)
    budget: dict[str, BudgetState] = {}
    period: BudgetPeriod = "month"
    now = time.time()
    for scope, limits in identity.scopes:
        if limits.max_budget_usd is None:
            continue
        if not budget:
            period = limits.budget_period
        spent = await tenancy.spend.spent(scope, limits.budget_period)
        _, end = period_bounds(limits.budget_period, now)
        budget[scope] = BudgetState(
            max_budget_usd=limits.max_budget_usd,
            period=limits.budget_period,
            spent_usd=spent,
            remaining_usd=max(0.0, limits.max_budget_usd - spent),
            resets_at=int(end),
        )
    since, _ = period_bounds(period, now)
    await tenancy.usage.flush()
    totals = await state.store.usage.totals(UsageFilter(key_id=identity.key_id, since=since), None)
    usage = PeriodUsage(since=int(since))
    if totals:
        t = totals[0]
        usage = PeriodUsage(
            since=int(since),
            requests=t.requests,
            errors=t.errors,
            prompt_tokens=t.prompt_tokens,
            completion_tokens=t.completion_tokens,
            cost_usd=t.cost_usd,
        )
    key, team = identity.key, identity.team
    body = Me(
        key=MeKey(
            id=identity.key_id,
            name=key.name if key else None,
            role=identity.role,
            kind=identity.kind,
        ),
        team=MeTeam(id=identity.team_id, name=team.name if team else None),
        limits=effective_limits(identity.scopes, key.max_parallel if key else None),
        rate=RateSnapshotObject(
            requests=_window(snapshot.requests), tokens=_window(snapshot.tokens)
        ),
        budget=budget,
        usage_this_period=usage,
    )
    return json_response(body)
