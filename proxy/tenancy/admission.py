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

from proxy.errors import ModelNotFound, PermissionDenied, shown
from proxy.tenancy.identity import Identity
from proxy.tenancy.limits import Grant


def may_use_model(identity: Identity, model: str) -> bool:
    for patterns in identity.plan.model_patterns:
        if not any(fnmatchcase(model, p) for p in patterns):
            return False
    return True


def check_model(identity: Identity, model: str) -> None:
    if not may_use_model(identity, model):
        raise ModelNotFound(
            f"The model '{shown(model)}' does not exist or you do not have access to it.",
            param="model",
        )


def check_extensions(identity: Identity, names: Iterable[str]) -> None:
    lists = identity.plan.extension_lists
    if not lists:
        return
    for name in names:
        for scope, allowed in lists:
            if name not in allowed:
                raise PermissionDenied(
                    f"The extension '{name}' is not allowed for {scope.replace(':', ' ', 1)}.",
                    param="switchyard",
                )


@dataclass(slots=True)
class Admission:
    """A request let through: what it holds until it ends."""

    identity: Identity
    model: str
    grant: Grant | None = None
    parallel_scope: str | None = None
