"""The admin API and /v1/switchyard/me through a running gateway (real SQLite store,
fake upstream), driven with httpx as an operator's script would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import RunningServer, serve_gateway

MASTER = "sk-master-for-admin-tests"
ADMIN = "/v1/switchyard/admin"
INPUT_PER_1M = 1000.0
OUTPUT_PER_1M = 3000.0
HELLO_COST = (2 * INPUT_PER_1M + 5 * OUTPUT_PER_1M) / 1e6
"""What ``chat`` costs: the fake upstream counts words, two in "hello there" and five in
its answer "Hello! You said: hello there" (0.017 USD; swapped prices would make 0.011)."""


@pytest.fixture(scope="module")
def admin_gateway(
    fake_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("admin-api")
    config = {
        "server": {"master_key": MASTER, "data_dir": str(data)},
        "state": {"database": f"sqlite:///{data / 'state.sqlite3'}"},
        "models": [
            model_entry(
                "gpt-test",
                "upstream-gpt",
                fake_url,
                price={"input_per_1m": INPUT_PER_1M, "output_per_1m": OUTPUT_PER_1M},
            )
        ],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def http(admin_gateway: RunningServer, fake: FakeOpenAI) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    with httpx.Client(base_url=admin_gateway.url, headers=headers, timeout=15) as c:
        yield c


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, param: str | None) -> dict[str, Any]:
    """The OpenAI error object of a refusal, after checking its status and ``param``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert error["message"]
    return error  # type: ignore[no-any-return]


def new_team(http: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    return ok(http.post(f"{ADMIN}/teams", json={"name": name, **fields}))  # type: ignore[no-any-return]


def new_key(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    return ok(http.post(f"{ADMIN}/keys", json={"name": "k", **fields}))  # type: ignore[no-any-return]


def as_key(admin_gateway: RunningServer, secret: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.Client(base_url=admin_gateway.url, headers=headers, timeout=15)


def chat(admin_gateway: RunningServer, secret: str) -> openai.types.chat.ChatCompletion:
    with openai.OpenAI(
        base_url=f"{admin_gateway.url}/v1", api_key=secret, max_retries=0, timeout=15
    ) as client:
        return client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hello there"}]
        )


def test_team_lifecycle(http: httpx.Client) -> None:
    team = new_team(http, "lifecycle", rpm_limit=100, metadata={"owner": "ana"})
    assert team["object"] == "switchyard.team"
    assert (team["name"], team["rpm_limit"], team["tpm_limit"]) == ("lifecycle", 100, None)
    assert team["metadata"] == {"owner": "ana"} and team["budget_period"] == "month"
    assert ok(http.get(f"{ADMIN}/teams/{team['id']}")) == team
    listing = ok(http.get(f"{ADMIN}/teams"))
    assert listing["object"] == "list"
    assert team["id"] in [t["id"] for t in listing["data"]]

    patched = ok(
        http.patch(f"{ADMIN}/teams/{team['id']}", json={"rpm_limit": None, "tpm_limit": 9000})
    )
    assert (patched["rpm_limit"], patched["tpm_limit"], patched["name"]) == (
        None,
        9000,
        "lifecycle",
    )

    member = new_key(http, team_id=team["id"])
    deleted = ok(http.delete(f"{ADMIN}/teams/{team['id']}"))
    assert deleted == {
        "id": team["id"],
        "object": "switchyard.team.deleted",
        "deleted": True,
        "revoked_keys": [member["id"]],
    }
    refused(http.get(f"{ADMIN}/teams/{team['id']}"), 404, "team_id")
    assert ok(http.get(f"{ADMIN}/keys/{member['id']}"))["revoked_at"] is not None


def test_key_lifecycle_and_auth(
    http: httpx.Client, admin_gateway: RunningServer, fake: FakeOpenAI
) -> None:
    team = new_team(http, "keys-team", tpm_limit=100000)
    created = new_key(http, name="svc", team_id=team["id"], rpm_limit=50, max_parallel=3)
    secret = created.pop("key")
    assert secret.startswith("sk-sy-") and created["prefix"] == secret[:12]
    assert created["object"] == "switchyard.key"
    assert (created["team_id"], created["role"], created["rpm_limit"]) == (team["id"], "user", 50)
    assert created["revoked_at"] is None and created["expires_at"] is None

    shown = ok(http.get(f"{ADMIN}/keys/{created['id']}"))
    assert "key" not in shown
    assert shown == created
    listed = ok(http.get(f"{ADMIN}/keys", params={"team_id": team["id"]}))
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert secret not in str(listed)

    assert chat(admin_gateway, secret).choices[0].message.content

    patched = ok(http.patch(f"{ADMIN}/keys/{created['id']}", json={"name": "svc-2"}))
    assert (patched["name"], patched["rpm_limit"]) == ("svc-2", 50)

    rotated = ok(http.post(f"{ADMIN}/keys/{created['id']}/rotate", json={"grace_s": 0}))
    new_secret = rotated["key"]
    assert new_secret != secret and rotated["rotated_at"] is not None
    with pytest.raises(openai.AuthenticationError):
        chat(admin_gateway, secret)
    assert chat(admin_gateway, new_secret).choices

    revoked = ok(http.delete(f"{ADMIN}/keys/{created['id']}"))
    assert revoked["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError):
        chat(admin_gateway, new_secret)
    assert created["id"] not in [k["id"] for k in ok(http.get(f"{ADMIN}/keys"))["data"]]
    everything = ok(http.get(f"{ADMIN}/keys", params={"include_revoked": "true"}))
    assert created["id"] in [k["id"] for k in everything["data"]]


def test_rotation_grace_keeps_the_old_secret(
    http: httpx.Client, admin_gateway: RunningServer
) -> None:
    created = new_key(http, name="graceful")
    rotated = ok(http.post(f"{ADMIN}/keys/{created['id']}/rotate"))
    assert rotated["previous_valid_until"] - rotated["rotated_at"] in (299, 300, 301)
    assert chat(admin_gateway, created["key"]).choices
    assert chat(admin_gateway, rotated["key"]).choices


def test_non_admin_keys_are_refused(http: httpx.Client, admin_gateway: RunningServer) -> None:
    user = new_key(http, name="plain")
    with as_key(admin_gateway, user["key"]) as client:
        for method, path in (
            ("GET", "/teams"),
            ("POST", "/teams"),
            ("GET", "/keys"),
            ("GET", f"/keys/{user['id']}"),
            ("DELETE", f"/keys/{user['id']}"),
            ("GET", "/usage"),
            ("GET", "/audit"),
        ):
            error = refused(client.request(method, ADMIN + path, json={}), 403, None)
            assert error["message"] == "This key is not an admin key."
            assert error["code"] == "permission_denied"
    assert ok(http.get(f"{ADMIN}/keys/{user['id']}"))["revoked_at"] is None
    admin = new_key(http, name="second-admin", role="admin")
    with as_key(admin_gateway, admin["key"]) as client:
        assert ok(client.get(f"{ADMIN}/teams"))["object"] == "list"
    with httpx.Client(base_url=admin_gateway.url, timeout=15) as anonymous:
        assert anonymous.get(f"{ADMIN}/teams").status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/teams", {"name": "x", "rpm": 5}, "rpm"),
        ("/teams", {"name": ""}, "name"),
        ("/teams", {"name": "x" * 201}, "name"),
        ("/teams", {}, "name"),
        ("/teams", {"name": "x", "max_budget_usd": -1}, "max_budget_usd"),
        ("/teams", {"name": "x", "tpm_limit": 0}, "tpm_limit"),
        ("/teams", {"name": "x", "budget_period": "week"}, "budget_period"),
        ("/teams", {"name": "x", "allowed_models": "gpt-*"}, "allowed_models"),
        ("/keys", {"name": "x", "team_id": "team_missing"}, "team_id"),
        ("/keys", {"name": "x", "role": "root"}, "role"),
        ("/keys", {"name": "x", "max_parallel": 0}, "max_parallel"),
        ("/keys", {"name": "x", "expires_at": -5}, "expires_at"),
        ("/keys", {"name": "x", "expires_at": 1000}, "expires_at"),
        ("/keys", {"name": "x", "metadata": []}, "metadata"),
    ],
)
def test_bad_bodies_name_their_field(
    http: httpx.Client, path: str, body: dict[str, Any], param: str
) -> None:
    refused(http.post(ADMIN + path, json=body), 400, param)


def test_bad_patch_and_rotate_bodies(http: httpx.Client) -> None:
    team = new_team(http, "patch-target")
    key = new_key(http, name="patch-key")
    refused(http.patch(f"{ADMIN}/teams/{team['id']}", json={"team_id": "x"}), 400, "team_id")
    refused(http.patch(f"{ADMIN}/teams/{team['id']}", json={"rpm_limit": -1}), 400, "rpm_limit")
    refused(http.patch(f"{ADMIN}/keys/{key['id']}", json={"team_id": team["id"]}), 400, "team_id")
    refused(http.post(f"{ADMIN}/keys/{key['id']}/rotate", json={"grace_s": -1}), 400, "grace_s")
    refused(http.patch(f"{ADMIN}/teams/{team['id']}", content=b"{nope"), 400, None)
    refused(http.patch(f"{ADMIN}/teams/{team['id']}", content=b"[1]"), 400, None)


def test_conflicts_and_unknown_ids(http: httpx.Client) -> None:
    new_team(http, "taken")
    other = new_team(http, "free")
    error = refused(http.post(f"{ADMIN}/teams", json={"name": "taken"}), 409, "name")
    assert error["code"] == "conflict"
    refused(http.patch(f"{ADMIN}/teams/{other['id']}", json={"name": "taken"}), 409, "name")
    refused(http.delete(f"{ADMIN}/teams/default"), 400, "team_id")
    refused(http.get(f"{ADMIN}/teams/team_nope"), 404, "team_id")
    refused(http.patch(f"{ADMIN}/teams/team_nope", json={}), 404, "team_id")
    refused(http.delete(f"{ADMIN}/teams/team_nope"), 404, "team_id")
    refused(http.get(f"{ADMIN}/keys/key_nope"), 404, "key_id")
    refused(http.patch(f"{ADMIN}/keys/key_nope", json={"name": "x"}), 404, "key_id")
    refused(http.delete(f"{ADMIN}/keys/key_nope"), 404, "key_id")
    refused(http.post(f"{ADMIN}/keys/key_nope/rotate"), 404, "key_id")
    gone = new_key(http, name="gone")
    ok(http.delete(f"{ADMIN}/keys/{gone['id']}"))
    refused(http.patch(f"{ADMIN}/keys/{gone['id']}", json={"name": "x"}), 409, "key_id")
    refused(http.post(f"{ADMIN}/keys/{gone['id']}/rotate"), 409, "key_id")


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/usage", {"group_by": "week"}, "group_by"),
        ("/usage", {"since": "yesterday"}, "since"),
        ("/usage", {"until": "-3"}, "until"),
        ("/usage", {"since": "200", "until": "100"}, "until"),
        ("/usage", {"team": "t"}, "team"),
        ("/usage/requests", {"limit": "0"}, "limit"),
        ("/usage/requests", {"limit": "1001"}, "limit"),
        ("/usage/requests", {"limit": "ten"}, "limit"),
        ("/usage/requests", {"cursor": "garbage"}, "cursor"),
        ("/audit", {"cursor": "garbage"}, "cursor"),
        ("/audit", {"limit": "-1"}, "limit"),
        ("/keys", {"include_revoked": "maybe"}, "include_revoked"),
    ],
)
def test_bad_query_parameters(
    http: httpx.Client, path: str, params: dict[str, str], param: str
) -> None:
    refused(http.get(ADMIN + path, params=params), 400, param)


def test_usage_counts_a_request_that_just_ended(
    http: httpx.Client, admin_gateway: RunningServer
) -> None:
    team = new_team(http, "usage-team")
    key = new_key(http, name="usage-key", team_id=team["id"])
    chat(admin_gateway, key["key"])
    chat(admin_gateway, key["key"])
    usage = ok(http.get(f"{ADMIN}/usage", params={"key_id": key["id"], "group_by": "model"}))
    assert usage["object"] == "list"
    (group,) = usage["data"]
    assert (group["group"], group["requests"], group["errors"]) == ("gpt-test", 2, 0)
    assert group["prompt_tokens"] > 0 and group["completion_tokens"] > 0
    by_team = ok(http.get(f"{ADMIN}/usage", params={"team_id": team["id"], "group_by": "team"}))
    assert [(g["group"], g["requests"]) for g in by_team["data"]] == [(team["id"], 2)]

    first = ok(http.get(f"{ADMIN}/usage/requests", params={"key_id": key["id"], "limit": 1}))
    assert first["has_more"] is True and first["next_cursor"]
    (row,) = first["data"]
    assert (row["key_id"], row["team_id"], row["model"], row["status"]) == (
        key["id"],
        team["id"],
        "gpt-test",
        200,
    )
    rest = ok(
        http.get(
            f"{ADMIN}/usage/requests",
            params={"key_id": key["id"], "limit": 1, "cursor": first["next_cursor"]},
        )
    )
    assert rest["has_more"] is False and rest["next_cursor"] is None
    assert rest["data"][0]["request_id"] != row["request_id"]
    empty = ok(http.get(f"{ADMIN}/usage", params={"key_id": key["id"], "since": "4102444800"}))
    assert all(g["requests"] == 0 for g in empty["data"])


def test_audit_records_who_did_what(http: httpx.Client) -> None:
    team = new_team(http, "audited")
    ok(http.patch(f"{ADMIN}/teams/{team['id']}", json={"tpm_limit": 10}))
    page = ok(http.get(f"{ADMIN}/audit", params={"target": team["id"]}))
    assert [e["action"] for e in page["data"]] == ["team.update", "team.create"]
    assert {e["actor"] for e in page["data"]} == {"master"}
    assert page["data"][0]["details"] == {"tpm_limit": 10}
    key = new_key(http, name="audited-key")
    (created,) = ok(http.get(f"{ADMIN}/audit", params={"target": key["id"]}))["data"]
    assert key["key"] not in str(created)
    first = ok(http.get(f"{ADMIN}/audit", params={"limit": 1}))
    assert first["has_more"] is True and len(first["data"]) == 1


def test_me_shows_limits_budget_and_usage(http: httpx.Client, admin_gateway: RunningServer) -> None:
    team = new_team(http, "me-team", rpm_limit=100, max_budget_usd=50, allowed_models=["gpt-*"])
    key = new_key(
        http,
        name="me-key",
        team_id=team["id"],
        rpm_limit=20,
        max_budget_usd=5,
        budget_period="day",
        allowed_models=["gpt-test", "other"],
    )
    answer = chat(admin_gateway, key["key"])
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 5)
    with as_key(admin_gateway, key["key"]) as client:
        me = ok(client.get("/v1/switchyard/me"))
        again = ok(client.get("/v1/switchyard/me"))
    assert me["object"] == "switchyard.me"
    assert me["key"] == {"id": key["id"], "name": "me-key", "role": "user", "kind": "virtual"}
    assert me["team"] == {"id": team["id"], "name": "me-team"}
    limits = me["limits"]
    assert (limits["rpm_limit"], limits["max_budget_usd"]) == (20, 5.0)
    assert limits["allowed_models"] == ["gpt-test"]
    requests = me["rate"]["requests"]
    assert (requests["scope"], requests["limit"]) == (f"key:{key['id']}", 20)
    # The key's 20 less the one chat call (the team's 100 has more left); /me is no call.
    assert requests["remaining"] == 19 and 0 < requests["reset_s"] <= 60
    assert again["rate"]["requests"]["remaining"] == 19
    assert me["rate"]["tokens"] is None
    budget = me["budget"]
    assert set(budget) == {f"key:{key['id']}", f"team:{team['id']}"}
    key_budget, team_budget = budget[f"key:{key['id']}"], budget[f"team:{team['id']}"]
    assert (key_budget["period"], team_budget["period"]) == ("day", "month")
    assert (key_budget["max_budget_usd"], team_budget["max_budget_usd"]) == (5, 50)
    assert key_budget["spent_usd"] == pytest.approx(HELLO_COST, rel=1e-9, abs=0)
    assert team_budget["spent_usd"] == pytest.approx(HELLO_COST, rel=1e-9, abs=0)
    assert key_budget["remaining_usd"] == pytest.approx(5 - HELLO_COST, rel=1e-9, abs=0)
    period = me["usage_this_period"]
    assert (period["requests"], period["errors"]) == (1, 0)
    assert (period["prompt_tokens"], period["completion_tokens"]) == (2, 5)
    assert period["cost_usd"] == pytest.approx(HELLO_COST, rel=1e-9, abs=0)
    with as_key(admin_gateway, MASTER) as client:
        master = ok(client.get("/v1/switchyard/me"))
    assert (master["key"]["kind"], master["key"]["role"]) == ("master", "admin")


def test_admin_routes_are_documented(http: httpx.Client) -> None:
    document = ok(http.get("/docs/openapi.json"))
    paths = document["paths"]
    for path, methods in {
        f"{ADMIN}/teams": {"get", "post"},
        f"{ADMIN}/teams/{{team_id}}": {"get", "patch", "delete"},
        f"{ADMIN}/keys": {"get", "post"},
        f"{ADMIN}/keys/{{key_id}}": {"get", "patch", "delete"},
        f"{ADMIN}/keys/{{key_id}}/rotate": {"post"},
        f"{ADMIN}/usage": {"get"},
        f"{ADMIN}/usage/requests": {"get"},
        f"{ADMIN}/audit": {"get"},
        "/v1/switchyard/me": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert paths[path][method]["summary"], (path, method)
    body = paths[f"{ADMIN}/keys"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/KeyCreate")
    assert "rpm_limit" in document["components"]["schemas"]["KeyCreate"]["properties"]
