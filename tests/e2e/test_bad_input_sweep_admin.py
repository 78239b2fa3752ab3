"""The bad-input sweep over the tenancy routes: the admin API and ``/me``.

Every malformed body of the main sweep, deep nesting, 2 MB values and bad query
parameters, on every admin route, sent with the master key: each answer is a 4xx with
an OpenAI error object (or a success), never a 5xx, and nothing stored is lost: the
team and key made first are still there, unchanged, afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.settings import load_settings
from tests.e2e.test_bad_input_sweep import BODIES, _deep, _is_error_object
from tests.support.servers import RunningServer, serve_gateway

MASTER = "sk-admin-sweep-master"
AUTH = {"Authorization": f"Bearer {MASTER}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    data: Path = tmp_path_factory.mktemp("admin-sweep")
    config = {"server": {"master_key": MASTER, "data_dir": str(data)}, "defaults": False}
    # From a file, as ``switchyard serve`` runs: the reload route re-reads it.
    file = data / "switchyard.yaml"
    file.write_text(json.dumps(config), encoding="utf-8")
    with serve_gateway(load_settings(file)) as running:
        base = f"{running.url}/v1/switchyard/admin"
        team = httpx.post(f"{base}/teams", headers=AUTH, json={"name": "kept", "rpm_limit": 5})
        key = httpx.post(
            f"{base}/keys", headers=AUTH, json={"name": "kept", "team_id": team.json()["id"]}
        )
        yield running, team.json()["id"], key.json()["id"]


def _posts(team: str, key: str) -> list[tuple[str, str]]:
    base = "/v1/switchyard/admin"
    return [
        ("POST", f"{base}/teams"),
        ("POST", f"{base}/keys"),
        ("PATCH", f"{base}/teams/{team}"),
        ("PATCH", f"{base}/keys/{key}"),
        ("POST", f"{base}/keys/{key}/rotate"),
        ("POST", f"{base}/reload"),
    ]


def _stored(server: RunningServer, team: str, key: str) -> tuple[Any, Any]:
    base = f"{server.url}/v1/switchyard/admin"
    return (
        httpx.get(f"{base}/teams/{team}", headers=AUTH).json(),
        {
            k: v
            for k, v in httpx.get(f"{base}/keys/{key}", headers=AUTH).json().items()
            if k not in ("updated_at", "rotated_at", "prefix", "previous_valid_until")
        },
    )


EXTRA_BODIES: list[bytes | dict[str, Any]] = [
    {"name": ""},
    {"name": "x" * 10_000},
    {"name": 5},
    {"name": "n", "rpm_limit": -1},
    {"name": "n", "tpm_limit": 0},
    {"name": "n", "max_budget_usd": -0.01},
    {"name": "n", "budget_period": "week"},
    {"name": "n", "role": "root"},
    {"name": "n", "team_id": "team_nope"},
    {"name": "n", "allowed_models": "gpt-*"},
    {"name": "n", "allowed_models": [5]},
    {"name": "n", "expires_at": "tomorrow"},
    {"name": "n", "metadata": []},
    {"name": "n", "unknown_field": 1},
    {"grace_s": -5},
    {"grace_s": "soon"},
]


def test_malformed_bodies_on_every_admin_route_never_get_a_5xx_and_lose_nothing(
    admin: tuple[RunningServer, str, str],
) -> None:
    server, team, key = admin
    rotate = f"/v1/switchyard/admin/keys/{key}/rotate"
    before = _stored(server, team, key)
    wrong = []
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        for method, path in _posts(team, key):
            if path == rotate:
                continue  # a valid body rotates: checked below
            for body in [*BODIES, *EXTRA_BODIES]:
                content = body if isinstance(body, bytes) else json.dumps(body).encode()
                response = http.request(method, path, content=content)
                if response.status_code >= 500 or (
                    response.status_code >= 400 and not _is_error_object(response)
                ):
                    wrong.append((method, path, response.status_code, content[:60]))
            for levels in (1_000, 100_000):
                deep = http.request(method, path, content=_deep(levels))
                if deep.status_code != 400:
                    wrong.append((method, path, deep.status_code, f"depth {levels}"))
    assert wrong == []
    after = _stored(server, team, key)
    assert after[0]["name"] == "kept" and after[0]["rpm_limit"] == 5
    assert after[1]["team_id"] == team and after[1]["revoked_at"] is None
    assert before[1]["id"] == after[1]["id"]


def test_bad_rotation_bodies_are_400_and_rotate_nothing(
    admin: tuple[RunningServer, str, str],
) -> None:
    server, _, key = admin
    path = f"{server.url}/v1/switchyard/admin/keys/{key}/rotate"
    before = httpx.get(f"{server.url}/v1/switchyard/admin/keys/{key}", headers=AUTH).json()
    for body in (b"{", b"[]", json.dumps({"grace_s": -5}).encode(), b'{"grace_s": "x"}'):
        response = httpx.post(path, headers=AUTH, content=body)
        assert response.status_code == 400 and _is_error_object(response), response.text
    after = httpx.get(f"{server.url}/v1/switchyard/admin/keys/{key}", headers=AUTH).json()
    assert after["prefix"] == before["prefix"] and after["rotated_at"] == before["rotated_at"]


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/switchyard/admin/usage?group_by=week", "group_by"),
        ("/v1/switchyard/admin/usage?since=yesterday", "since"),
        ("/v1/switchyard/admin/usage?until=nan", "until"),
        ("/v1/switchyard/admin/usage/requests?limit=0", "limit"),
        ("/v1/switchyard/admin/usage/requests?limit=100000", "limit"),
        ("/v1/switchyard/admin/usage/requests?cursor=%%%", "cursor"),
        ("/v1/switchyard/admin/audit?cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("/v1/switchyard/admin/audit?limit=-1", "limit"),
        ("/v1/switchyard/admin/cache?model=x", "model"),
        ("DELETE /v1/switchyard/admin/cache?modle=x", "modle"),
        ("DELETE /v1/switchyard/admin/cache?model=", "model"),
        ("DELETE /v1/switchyard/admin/cache?team=", "team"),
        ("DELETE /v1/switchyard/admin/cache?team=a%00b", "team"),
    ],
)
def test_bad_query_parameters_are_400_naming_them(
    admin: tuple[RunningServer, str, str], path: str, param: str
) -> None:
    method, _, path = path.rpartition(" ")
    response = httpx.request(method or "GET", f"{admin[0].url}{path}", headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("query", "body", "param"),
    [
        ("?broadcast=maybe", None, "broadcast"),
        ("?broadcast=", None, "broadcast"),
        ("?broadcst=true", None, "broadcst"),
        ("", {"broadcast": "yes"}, "broadcast"),
        ("", {"broadcast": True}, "broadcast"),  # no Redis to broadcast through
        ("", {"broadcast": False, "models": []}, "models"),
        ("", [], None),
    ],
)
def test_bad_reload_requests_are_400_and_reload_nothing(
    admin: tuple[RunningServer, str, str], query: str, body: Any, param: str | None
) -> None:
    server = admin[0]
    generations = server.app.app.state.switchyard.generations
    before = generations.current.number
    content = b"" if body is None else json.dumps(body).encode()
    url = f"{server.url}/v1/switchyard/admin/reload{query}"
    response = httpx.post(url, headers=AUTH, content=content)
    assert response.status_code == 400 and _is_error_object(response), response.text
    if param is not None:
        assert response.json()["error"]["param"] == param
    assert generations.current.number == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/switchyard/admin/teams/team_nope",
        "/v1/switchyard/admin/keys/key_nope",
        "/v1/switchyard/admin/keys/key_nope/rotate",
        "/v1/switchyard/admin/teams/../../etc/passwd",
        "/v1/switchyard/admin/keys/" + "k" * 5000,
    ],
)
def test_unknown_ids_are_404(admin: tuple[RunningServer, str, str], path: str) -> None:
    method = "POST" if path.endswith("/rotate") else "GET"
    response = httpx.request(method, f"{admin[0].url}{path}", headers=AUTH, content=b"{}")
    assert response.status_code == 404 and _is_error_object(response), response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/teams", {"name": "big", "rpm_limit": 2**31}, "rpm_limit"),
        ("POST", "/teams", {"name": "big", "rpm_limit": 10**20}, "rpm_limit"),
        ("POST", "/teams", {"name": "nul\u0000byte"}, "name"),
        ("POST", "/teams", {"name": "  padded  "}, "name"),
        ("POST", "/teams", {"name": "tab\tname"}, "name"),
        ("POST", "/teams", {"name": "rich", "max_budget_usd": 1e308}, "max_budget_usd"),
        ("POST", "/teams", {"name": "typo", "allowed_extensions": ["rags"]}, "allowed_extensions"),
        ("POST", "/keys", {"name": "k", "max_parallel": 2**63}, "max_parallel"),
        ("POST", "/keys", {"name": "k", "expires_at": 1e300}, "expires_at"),
        ("POST", "/keys", {"name": "k", "allowed_models": ["gpt\u0000"]}, "allowed_models[0]"),
        ("PATCH", "/keys/{key}", {"name": "a\u0000b"}, "name"),
        ("POST", "/keys/{key}/rotate", {"grace_s": 1e308}, "grace_s"),
    ],
)
def test_values_no_database_column_can_hold_are_400_naming_the_field(
    admin: tuple[RunningServer, str, str],
    method: str,
    path: str,
    body: dict[str, Any],
    param: str,
) -> None:
    server, _, key = admin
    url = f"{server.url}/v1/switchyard/admin{path.format(key=key)}"
    response = httpx.request(method, url, headers=AUTH, content=json.dumps(body).encode())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_the_cache_routes_refuse_bodies_and_non_admins(
    admin: tuple[RunningServer, str, str],
) -> None:
    server, team, _ = admin
    base = f"{server.url}/v1/switchyard/admin/cache"
    with httpx.Client(timeout=30) as http:
        for body in [*BODIES, *EXTRA_BODIES][:20]:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            for method in ("GET", "DELETE"):
                answer = http.request(method, base, headers=AUTH, content=content)
                assert answer.status_code == 200, answer.text  # the body is not read
        member = http.post(
            f"{server.url}/v1/switchyard/admin/keys",
            headers=AUTH,
            json={"name": "m", "team_id": team},
        ).json()["key"]
        for method in ("GET", "DELETE"):
            refused = http.request(method, base, headers={"Authorization": f"Bearer {member}"})
            assert refused.status_code == 403 and _is_error_object(refused), refused.text
            anonymous = http.request(method, base)
            assert anonymous.status_code == 401 and _is_error_object(anonymous), anonymous.text
    assert httpx.get(base, headers=AUTH).json()["enabled"] is False


def test_control_characters_in_ids_and_queries_are_4xx(
    admin: tuple[RunningServer, str, str],
) -> None:
    base = f"{admin[0].url}/v1/switchyard/admin"
    for path in ("/keys/a%00b", "/teams/a%00b"):
        assert httpx.get(base + path, headers=AUTH).status_code == 404
    for query in ("usage?team_id=a%00b", "usage/requests?model=a%00b", "cache?model=a%00b"):
        answer = httpx.get(f"{base}/{query}", headers=AUTH)
        assert answer.status_code == 400 and _is_error_object(answer), answer.text
