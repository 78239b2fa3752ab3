"""A key's life through the admin API: revocation (also on a second replica sharing the
database, by TTL and by Redis broadcast), rotation with a grace period, expiry, and the
audit log of it all; then the other ways in: JWTs, static keys, and no auth at all.

Bounds are asserted as the product promises them: a revoked key stops working on this
replica at once and on another within ``state.key_cache_ttl_s`` (1 s) without Redis; with
Redis the broadcast reaches the other replica long before its cache would run out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.tenancy.secrets import hash_secret
from tests.support.servers import RunningServer, serve_gateway
from tests.support.tenancy import (
    MASTER_KEY,
    Admin,
    ask,
    chat_model,
    me,
    ok,
    refused_within,
    sdk,
    tenancy_config,
)


def models(fake_url: str) -> list[dict[str, Any]]:
    return [chat_model("gpt-test", "upstream-gpt", fake_url)]


@pytest.fixture
def gateway(engine: dict[str, Any], fake_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with serve_gateway(tenancy_config(tmp_path, models(fake_url), state=engine)) as running:
        yield running


def works(gateway: RunningServer, secret: str) -> None:
    """One authenticated call that needs no upstream."""
    with sdk(gateway, secret) as client:
        client.models.list()


# ------------------------------------------------------------------------- revocation


def test_a_revoked_key_is_refused_at_once(gateway: RunningServer) -> None:
    with Admin(gateway) as admin:
        team = admin.team("revokers")
        key = admin.key(team["id"])
        with sdk(gateway, key["key"]) as client:
            ask(client)
            revoked = admin.revoke(key["id"])
            assert revoked["revoked_at"] is not None
            with pytest.raises(openai.AuthenticationError) as refused:
                ask(client)
    assert "revoked" in refused.value.message


@pytest.mark.parametrize("with_redis", [False, True], ids=["ttl", "redis-broadcast"])
def test_revocation_reaches_a_second_replica(
    with_redis: bool, fake_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    state: dict[str, Any] = {"database": request.getfixturevalue("fresh_postgres_url")}
    if with_redis:
        # A cache entry would live far longer than the bound: only the broadcast explains it.
        state |= {"redis_url": request.getfixturevalue("fresh_redis_url"), "key_cache_ttl_s": 60}
    bound_s = 0.5 if with_redis else 1.0
    with ExitStack() as stack:
        first, second = (
            stack.enter_context(
                serve_gateway(tenancy_config(tmp_path / n, models(fake_url), state=state))
            )
            for n in ("a", "b")
        )
        with Admin(first) as admin:
            team = admin.team("replicated")
            key = admin.key(team["id"])
            works(first, key["key"])
            works(second, key["key"])  # now cached on the second replica too
            admin.revoke(key["id"])
        with sdk(second, key["key"]) as client:
            took = refused_within(client.models.list, openai.AuthenticationError, 1.5)
        with pytest.raises(openai.AuthenticationError):
            works(first, key["key"])
    assert took <= bound_s


# ----------------------------------------------------------------- rotation and expiry


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(gateway: RunningServer) -> None:
    grace_s = 2.0
    with Admin(gateway) as admin:
        team = admin.team("rotators")
        key = admin.key(team["id"])
        old = key["key"]
        works(gateway, old)  # cached before the rotation
        began = time.monotonic()
        rotated = admin.rotate(key["id"], grace_s)
    new = rotated["key"]
    assert new != old and rotated["id"] == key["id"]
    assert rotated["previous_valid_until"] is not None
    works(gateway, new)
    works(gateway, old)
    with sdk(gateway, old) as client:
        refused_within(client.models.list, openai.AuthenticationError, grace_s + 1.5)
    ended = time.monotonic() - began
    assert grace_s - 0.5 <= ended <= grace_s + 0.5
    works(gateway, new)
    assert me(gateway, new)["key"]["id"] == key["id"]


def test_an_expiring_key_works_then_is_refused(gateway: RunningServer) -> None:
    with Admin(gateway) as admin:
        team = admin.team("expiring")
        began = time.monotonic()
        key = admin.key(team["id"], expires_at=time.time() + 1.5)
    works(gateway, key["key"])
    with sdk(gateway, key["key"]) as client:
        refused_within(client.models.list, openai.AuthenticationError, 3.0)
        ended = time.monotonic() - began
        with pytest.raises(openai.AuthenticationError) as refused:
            ask(client)
    assert 1.0 <= ended <= 2.0
    assert "expired" in refused.value.message


# --------------------------------------------------------------------------- audit


def test_the_audit_log_lists_changes_newest_first_without_secrets(
    gateway: RunningServer,
) -> None:
    with Admin(gateway) as admin:
        team = admin.team("audited")
        key = admin.key(team["id"], "audited-key")
        ok(admin.http.patch(f"/keys/{key['id']}", json={"rpm_limit": 7}))
        rotated = admin.rotate(key["id"], 0)
        admin.revoke(key["id"])
        response = admin.audit()
    entries = ok(response)["data"]
    assert [(e["action"], e["target"]) for e in entries[:5]] == [
        ("key.revoke", key["id"]),
        ("key.rotate", key["id"]),
        ("key.update", key["id"]),
        ("key.create", key["id"]),
        ("team.create", team["id"]),
    ]
    assert {e["actor"] for e in entries[:5]} == {"master"}
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)
    assert entries[2]["details"] == {"rpm_limit": 7}
    for secret in (key["key"], rotated["key"]):
        assert secret not in response.text
        assert hash_secret(secret) not in response.text
    assert MASTER_KEY not in response.text


# ----------------------------------------------------------------------------- JWT


ISSUER = "https://idp.test/realms/acme"
AUDIENCE = "switchyard"


@pytest.fixture(scope="module")
def signing_keys() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def token(key: Any, **claims: Any) -> str:
    import jwt

    now = int(time.time())
    payload = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    return jwt.encode({**payload, **claims}, key, algorithm="RS256")


def test_jwt_callers_act_in_their_team_and_admins_administer(
    signing_keys: tuple[Any, Any], fake_url: str, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    good, other = signing_keys
    pem = (
        good.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    jwt_config = {"issuer": ISSUER, "audience": AUDIENCE, "public_key": pem}
    config = tenancy_config(tmp_path, models(fake_url), auth={"jwt": jwt_config})
    with serve_gateway(config) as gateway, Admin(gateway) as admin:
        team = admin.team("jwt-team", rpm_limit=5)
        by_name, by_id = token(good, team="jwt-team"), token(good, team=team["id"], sub="bob")
        for bearer in (by_name, by_id):
            with sdk(gateway, bearer) as client:
                answer = client.chat.completions.with_raw_response.create(
                    model="gpt-test", messages=[{"role": "user", "content": "via jwt"}]
                )
            assert answer.parse().choices[0].message.content == "Hello! You said: via jwt"
            assert answer.headers["x-ratelimit-limit-requests"] == "5"  # the team's limit
        who = me(gateway, by_name)
        assert (who["key"]["kind"], who["key"]["id"], who["team"]["id"]) == (
            "jwt", "jwt:alice", team["id"],
        )  # fmt: skip
        by_team = {row["group"]: row for row in admin.usage(group_by="team")}
        assert by_team[team["id"]]["requests"] == 2
        assert by_team[team["id"]]["prompt_tokens"] == 2 + 2
        by_key = {row["group"] for row in admin.usage(group_by="key")}
        assert {"jwt:alice", "jwt:bob"} <= by_key
        for bad in (
            token(other, team="jwt-team"),  # signed by a key the gateway does not trust
            token(good, team="jwt-team", aud="someone-else"),
            token(good, team="no-such-team"),
            token(good),  # a user without a team claim
        ):
            with sdk(gateway, bad) as client, pytest.raises(openai.AuthenticationError):
                ask(client)
        user_headers = {"Authorization": f"Bearer {by_name}"}
        denied = httpx.get(f"{gateway.url}/v1/switchyard/admin/teams", headers=user_headers)
        assert denied.status_code == 403
        with Admin(gateway, token(good, sub="root", role="admin")) as jwt_admin:
            listed = ok(jwt_admin.http.get("/teams"))["data"]
            assert team["id"] in [t["id"] for t in listed]
            made = jwt_admin.team("made-by-jwt")
        actors = {(e["action"], e["target"]): e["actor"] for e in ok(admin.audit())["data"]}
        assert actors[("team.create", made["id"])] == "jwt:root"


# ------------------------------------------------------- static keys and no auth at all


def test_static_keys_are_the_default_team(fake_url: str, tmp_path: Path) -> None:
    static = "sk-static-configured-key"
    config = tenancy_config(tmp_path, models(fake_url), server={"api_keys": [static]})
    with serve_gateway(config) as gateway:
        with sdk(gateway, static) as client:
            assert ask(client, "static").choices[0].message.content == "Hello! You said: static"
        who = me(gateway, static)
        assert (who["key"]["kind"], who["team"]["id"]) == ("static", "default")
        with (
            sdk(gateway, "sk-static-but-wrong") as client,
            pytest.raises(openai.AuthenticationError),
        ):
            ask(client)
        with Admin(gateway) as admin:
            rows = {row["group"]: row for row in admin.usage(group_by="team")}
            assert rows["default"]["requests"] == 1


def test_without_any_key_configured_calls_need_no_key(fake_url: str, tmp_path: Path) -> None:
    config = {"server": {"data_dir": str(tmp_path)}, "models": models(fake_url)}
    with serve_gateway(config) as gateway:
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "open"}]}
        answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=15)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Hello! You said: open"
        with sdk(gateway, "sk-anything") as client:
            assert ask(client, "any").choices[0].message.content == "Hello! You said: any"
        assert httpx.get(f"{gateway.url}/v1/switchyard/me").json()["key"]["kind"] == "anonymous"
        admin = httpx.get(f"{gateway.url}/v1/switchyard/admin/teams")
        assert admin.status_code == 403  # nobody is an admin without a master key
