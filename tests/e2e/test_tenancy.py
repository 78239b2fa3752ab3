"""Teams, virtual keys, limits, budgets and usage, driven as a user drives them: the admin
API over HTTP with the master key, the model API with the official ``openai`` package.

Every test runs on both state engines, real servers each: SQLite with limits counted in
process, and PostgreSQL with limits, spend and key changes in Redis.

The fake upstream reports usage as words: ``prompt_tokens`` is the number of words in
the messages, ``completion_tokens`` the words of its answer ``Hello! You said: <text>``
(three more than the text). Costs below are worked out by hand from those numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenancy import MASTER_KEY, Admin, ask, chat_model, me, sdk, tenancy_config

INPUT_PER_1M = 2000.0
OUTPUT_PER_1M = 4000.0


@pytest.fixture
def gateway(engine: dict[str, Any], fake_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    models = [
        chat_model("gpt-test", "upstream-gpt", fake_url),
        chat_model("gpt-mini", "upstream-mini", fake_url),
        chat_model("claude-like", "upstream-claude", fake_url),
        chat_model(
            "priced",
            "upstream-priced",
            fake_url,
            price={"input_per_1m": INPUT_PER_1M, "output_per_1m": OUTPUT_PER_1M},
        ),
    ]
    with serve_gateway(tenancy_config(tmp_path, models, state=engine)) as running:
        yield running


@pytest.fixture
def admin(gateway: RunningServer) -> Iterator[Admin]:
    with Admin(gateway) as client:
        yield client


def raw_ask(client: openai.OpenAI, text: str = "hi", model: str = "gpt-test") -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}]
    )


# ------------------------------------------------------------------- keys and models


def test_a_new_key_calls_the_upstream_and_sees_only_its_models(
    gateway: RunningServer, admin: Admin, fake: Any
) -> None:
    team = admin.team("research", allowed_models=["gpt-*"])
    created = admin.key(team["id"], "alice")
    assert created["key"].startswith(created["prefix"])
    with sdk(gateway, created["key"]) as client:
        answer = ask(client, "ping pong")
        assert answer.choices[0].message.content == "Hello! You said: ping pong"
        assert fake.last("/v1/chat/completions").body["model"] == "upstream-gpt"
        assert sorted(m.id for m in client.models.list()) == ["gpt-mini", "gpt-test"]
        with pytest.raises(openai.NotFoundError) as forbidden:
            ask(client, model="claude-like")
        with pytest.raises(openai.NotFoundError) as unknown:
            ask(client, model="no-such-model")
    assert forbidden.value.code == unknown.value.code == "model_not_found"
    assert forbidden.value.status_code == 404
    assert len(fake.received("/v1/chat/completions")) == 1  # the refusal never went upstream


def test_an_unknown_key_is_refused_and_the_master_key_sees_every_model(
    gateway: RunningServer,
) -> None:
    with sdk(gateway, "sk-not-a-key") as client, pytest.raises(openai.AuthenticationError):
        ask(client)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    missing = httpx.post(f"{gateway.url}/v1/chat/completions", json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    with sdk(gateway, MASTER_KEY) as client:
        listed = {m.id for m in client.models.list()}
    assert {"gpt-test", "gpt-mini", "claude-like", "priced"} <= listed  # no team filter


# ------------------------------------------------------------------------ rate limits


def test_rpm_limit_counts_down_in_headers_then_refuses(
    gateway: RunningServer, admin: Admin
) -> None:
    team = admin.team("rpm-team")
    secret = admin.key(team["id"], rpm_limit=2)["key"]
    with sdk(gateway, secret) as client:
        first, second = raw_ask(client), raw_ask(client)
        with pytest.raises(openai.RateLimitError) as refused:
            raw_ask(client)
    for response, remaining in ((first, "1"), (second, "0")):
        assert response.headers["x-ratelimit-limit-requests"] == "2"
        assert response.headers["x-ratelimit-remaining-requests"] == remaining
        assert response.parse().choices[0].message.content == "Hello! You said: hi"
    error = refused.value
    assert error.code == "rate_limit_exceeded"
    headers = error.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


def test_a_stricter_team_limit_is_shared_by_its_keys(gateway: RunningServer, admin: Admin) -> None:
    team = admin.team("shared-rpm", rpm_limit=2)
    one = admin.key(team["id"], "one", rpm_limit=10)["key"]
    two = admin.key(team["id"], "two", rpm_limit=10)["key"]
    other_team = admin.team("bystander", rpm_limit=2)
    bystander = admin.key(other_team["id"])["key"]
    with sdk(gateway, one) as first, sdk(gateway, two) as second:
        a = raw_ask(first)
        b = raw_ask(second)
        assert a.headers["x-ratelimit-limit-requests"] == "2"  # the team's, not the key's 10
        assert (
            a.headers["x-ratelimit-remaining-requests"],
            b.headers["x-ratelimit-remaining-requests"],
        ) == ("1", "0")
        for client in (first, second):
            with pytest.raises(openai.RateLimitError) as refused:
                ask(client)
            assert refused.value.code == "rate_limit_exceeded"
    with sdk(gateway, bystander) as client:  # another team's window is its own
        assert raw_ask(client).headers["x-ratelimit-remaining-requests"] == "1"


def test_tpm_reserves_the_estimate_and_settles_on_real_usage(
    gateway: RunningServer, admin: Admin
) -> None:
    team = admin.team("tpm-team")
    secret = admin.key(team["id"], tpm_limit=100)["key"]
    messages = [{"role": "user", "content": "one two three"}]
    with sdk(gateway, secret) as client:
        with pytest.raises(openai.RateLimitError) as too_large:
            client.chat.completions.create(model="gpt-test", messages=messages, max_tokens=500)
        assert too_large.value.code == "rate_limit_exceeded"
        assert too_large.value.response.headers["x-should-retry"] == "false"
        assert "tokens per minute" in too_large.value.message

        def call() -> Any:
            return client.chat.completions.with_raw_response.create(
                model="gpt-test", messages=messages, max_tokens=60
            )

        first = call()
        estimate = 100 - int(first.headers["x-ratelimit-remaining-tokens"])
        assert estimate > 50  # two reservations do not fit: the second needs the settlement
        used = first.parse().usage.total_tokens
        assert used == 3 + 6
        second = call()
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert remaining == 100 - used - estimate
    rate = me(gateway, secret)["rate"]["tokens"]
    assert (rate["limit"], rate["remaining"]) == (100, 100 - 2 * used)


# --------------------------------------------------------------------- budget, usage


def test_budget_is_spent_then_refused_and_usage_shows_the_cost(
    gateway: RunningServer, admin: Admin, fake: Any
) -> None:
    team = admin.team("paying")
    key = admin.key(team["id"], "spender", max_budget_usd=0.05)
    secret = key["key"]
    # "one two three": 3 prompt tokens; "Hello! You said: one two three": 6 completion.
    cost = (3 * INPUT_PER_1M + 6 * OUTPUT_PER_1M) / 1e6
    assert cost == pytest.approx(0.03)
    with sdk(gateway, secret) as client:
        answer = ask(client, "one two three", model="priced")
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 6)
        now = me(gateway, secret)  # at once: the request has ended
        budget = now["budget"][f"key:{key['id']}"]
        assert budget["spent_usd"] == pytest.approx(cost)
        assert budget["remaining_usd"] == pytest.approx(0.05 - cost)
        assert now["usage_this_period"]["cost_usd"] == pytest.approx(cost)
        ask(client, "one two three", model="priced")  # 0.03 spent < 0.05: still let through
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client, "one two three", model="priced")
        assert refused.value.code == "insufficient_quota"
        assert refused.value.response.headers["x-should-retry"] == "false"  # SDKs stop
        assert len(fake.received("/v1/chat/completions")) == 2
        with pytest.raises(openai.RateLimitError):  # every model: the budget is the key's
            ask(client, "free of charge")
    after = me(gateway, secret)["budget"][f"key:{key['id']}"]
    assert after["spent_usd"] == pytest.approx(2 * cost)
    rows = {row["group"]: row for row in admin.usage(group_by="key")}
    mine = rows[key["id"]]
    # Two priced calls, and two refused ones (accounted, without tokens).
    assert mine["requests"] == 4 and mine["errors"] == 2
    assert mine["prompt_tokens"] == 3 + 3
    assert mine["completion_tokens"] == 6 + 6
    assert mine["cost_usd"] == pytest.approx(2 * cost)
    by_team = {row["group"]: row for row in admin.usage(group_by="team")}
    assert by_team[team["id"]]["cost_usd"] == pytest.approx(2 * cost)


def test_a_team_budget_stops_every_key_of_the_team(gateway: RunningServer, admin: Admin) -> None:
    team = admin.team("frugal", max_budget_usd=0.02)
    one, two = admin.key(team["id"], "one")["key"], admin.key(team["id"], "two")["key"]
    with sdk(gateway, one) as first, sdk(gateway, two) as second:
        ask(first, "one two three", model="priced")  # 0.03 spent: over the team's budget
        with pytest.raises(openai.RateLimitError) as refused:
            ask(second, "one two three", model="priced")
    assert refused.value.code == "insufficient_quota"


def test_admin_api_needs_an_admin(gateway: RunningServer, admin: Admin) -> None:
    team = admin.team("users")
    user = admin.key(team["id"])["key"]
    elevated = admin.key(team["id"], "ops", role="admin")["key"]
    headers = {"Authorization": f"Bearer {user}"}
    denied = httpx.get(f"{gateway.url}/v1/switchyard/admin/teams", headers=headers)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    with Admin(gateway, elevated) as ops:
        assert team["id"] in [t["id"] for t in ops.http.get("/teams").json()["data"]]
    anonymous = httpx.get(f"{gateway.url}/v1/switchyard/admin/teams")
    assert anonymous.status_code == 401
