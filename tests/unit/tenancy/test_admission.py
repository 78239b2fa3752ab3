"""Which models and extensions an identity may use, and the scopes it is limited by."""

from __future__ import annotations

import pytest

from proxy.errors import ModelNotFound, PermissionDenied
from proxy.state.records import ApiKey, Team
from proxy.tenancy.admission import (
    check_extensions,
    check_model,
    may_use_model,
)
from proxy.tenancy.identity import Identity, identity_scopes


def identity(
    key: dict[str, object] | None = None, team: dict[str, object] | None = None
) -> Identity:
    team_record = Team(id="t", name="t", created_at=1, updated_at=1, **(team or {}))  # type: ignore[arg-type]
    key_record = (
        ApiKey(id="k", name="k", team_id="t", prefix="p", created_at=1, updated_at=1, **key)  # type: ignore[arg-type]
        if key is not None
        else None
    )
    return Identity(
        key_id="k",
        team_id="t",
        kind="virtual",
        key=key_record,
        team=team_record,
        scopes=identity_scopes(key_record, team_record),
    )


def test_model_globs_of_key_and_team_must_both_allow() -> None:
    who = identity({"allowed_models": ["gpt-*", "local"]}, {"allowed_models": ["gpt-4o*"]})
    assert may_use_model(who, "gpt-4o-mini")
    assert not may_use_model(who, "gpt-3.5")  # the key allows it, the team does not
    assert not may_use_model(who, "local")  # the team does not
    assert may_use_model(identity({}, {}), "anything")  # None: no restriction


def test_an_empty_allow_list_allows_nothing() -> None:
    assert not may_use_model(identity({"allowed_models": []}), "gpt-4o")


def test_a_forbidden_model_reads_like_an_unknown_one() -> None:
    with pytest.raises(ModelNotFound) as refused:
        check_model(identity({"allowed_models": ["a"]}), "b")
    assert refused.value.error_code == "model_not_found"
    assert refused.value.http_status == 404


def test_a_forbidden_extension_is_403_naming_it_and_the_scope() -> None:
    who = identity({"allowed_extensions": ["session", "rag"]}, {"allowed_extensions": ["session"]})
    check_extensions(who, ["session"])
    with pytest.raises(PermissionDenied, match="'rag' is not allowed for team t"):
        check_extensions(who, ["session", "rag"])


def test_rate_and_budget_scopes_carry_only_what_is_limited() -> None:
    who = identity(
        {"rpm_limit": 5, "max_budget_usd": 2.0, "budget_period": "day"}, {"tpm_limit": 100}
    )
    assert [(s.scope, s.rpm, s.tpm) for s in who.plan.rate] == [
        ("key:k", 5, None),
        ("team:t", None, 100),
    ]
    assert who.plan.budgets == (("key:k", 2.0, "day"),)
