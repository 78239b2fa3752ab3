"""Bearer JWT verification against a JWKS served over a real socket, and a static key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from proxy.errors import AuthenticationFailed
from proxy.tenancy.jwt import AuthConfig, JwtConfig, JwtVerifier, looks_like_jwt
from tests.support.servers import answer_lifespan, serve_asgi

ISSUER = "https://idp.test/realms/acme"
AUDIENCE = "switchyard"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**entry, "kid": kid, "use": "sig"}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "iat": now}
    base["team"] = "research"
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, kid: str = "k1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b""
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [jwk(RSA_KEY, "k1"), jwk(EC_KEY, "ec1")]
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        self.requests += 1
        body = json.dumps({"keys": self.keys}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def jwks() -> Iterator[tuple[JwksServer, str]]:
    app = JwksServer()
    with serve_asgi(app) as running:
        yield app, f"{running.url}/certs"


@pytest.fixture
async def verifier(jwks: tuple[JwksServer, str]) -> AsyncIterator[JwtVerifier]:
    server, url = jwks
    server.keys = [jwk(RSA_KEY, "k1"), jwk(EC_KEY, "ec1")]
    async with httpx.AsyncClient() as http:
        yield JwtVerifier(JwtConfig(jwks_url=url, issuer=ISSUER, audience=AUDIENCE), http)


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier.verify(token)
    assert caught.value.http_status == 401
    return caught.value.message


async def test_valid_rsa_token_gives_its_claims(verifier: JwtVerifier) -> None:
    payload = claims()
    result = await verifier.verify(sign(payload))
    assert (result.subject, result.team, result.role) == ("alice", "research", "user")
    assert result.expires_at == payload["exp"]


async def test_valid_ec_token(verifier: JwtVerifier) -> None:
    result = await verifier.verify(sign(claims(sub="bob"), EC_KEY, "ec1", "ES256"))
    assert (result.subject, result.team) == ("bob", "research")


async def test_expired(verifier: JwtVerifier) -> None:
    now = int(time.time())
    message = await refused(verifier, sign(claims(exp=now - 120, iat=now - 700)))
    assert "expired" in message


async def test_expiry_within_leeway_is_accepted(verifier: JwtVerifier) -> None:
    result = await verifier.verify(sign(claims(exp=int(time.time()) - 5)))
    assert result.subject == "alice"


async def test_not_yet_valid(verifier: JwtVerifier) -> None:
    message = await refused(verifier, sign(claims(nbf=int(time.time()) + 300)))
    assert "not valid yet" in message


async def test_wrong_issuer(verifier: JwtVerifier) -> None:
    assert "issuer" in await refused(verifier, sign(claims(iss="https://evil.test")))


async def test_wrong_audience(verifier: JwtVerifier) -> None:
    assert "audience" in await refused(verifier, sign(claims(aud="another-app")))


async def test_audience_list_in_config(jwks: tuple[JwksServer, str]) -> None:
    config = JwtConfig(jwks_url=jwks[1], issuer=ISSUER, audience=["other", AUDIENCE])
    async with httpx.AsyncClient() as http:
        result = await JwtVerifier(config, http).verify(sign(claims()))
    assert result.subject == "alice"


async def test_tampered_signature(verifier: JwtVerifier) -> None:
    header, payload, signature = sign(claims()).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["team"] = "finance"
    tampered = f"{header}.{b64(json.dumps(forged).encode())}.{signature}"
    assert "signature" in await refused(verifier, tampered)


async def test_signed_by_another_key_under_a_known_kid(verifier: JwtVerifier) -> None:
    assert "signature" in await refused(verifier, sign(claims(), RSA_KEY_2, "k1"))


async def test_unknown_kid_then_rotation_is_accepted_after_one_refetch(
    verifier: JwtVerifier, jwks: tuple[JwksServer, str]
) -> None:
    server, _ = jwks
    await verifier.verify(sign(claims()))
    before = server.requests
    token = sign(claims(), RSA_KEY_2, "k2")
    assert "'k2'" in await refused(verifier, token)
    assert server.requests == before + 1  # refetched once, still unknown
    # Within the refetch interval another unknown kid does not fetch again.
    await refused(verifier, sign(claims(), RSA_KEY_2, "k3"))
    assert server.requests == before + 1


async def test_rotation_new_kid_accepted(jwks: tuple[JwksServer, str]) -> None:
    server, url = jwks
    server.keys = [jwk(RSA_KEY, "k1")]
    clock = [1000.0]
    async with httpx.AsyncClient() as http:
        config = JwtConfig(jwks_url=url, issuer=ISSUER, audience=AUDIENCE)
        verifier = JwtVerifier(config, http, clock=lambda: clock[0])
        await verifier.verify(sign(claims()))
        server.keys = [jwk(RSA_KEY, "k1"), jwk(RSA_KEY_2, "k2")]  # the provider rotates
        before = server.requests
        result = await verifier.verify(sign(claims(sub="carol"), RSA_KEY_2, "k2"))
        assert result.subject == "carol"
        assert server.requests == before + 1
        # The old key is retired; once the cache lapses, its tokens stop verifying.
        server.keys = [jwk(RSA_KEY_2, "k2")]
        clock[0] += config.jwks_cache_s
        assert "'k1'" in await refused(verifier, sign(claims(sub="dave")))


async def test_alg_none_is_refused(verifier: JwtVerifier) -> None:
    token = hand_made({"alg": "none", "kid": "k1"}, claims(), None)
    assert "'none'" in await refused(verifier, token)


async def test_hs256_signed_with_the_public_key_is_refused() -> None:
    pem = public_pem(RSA_KEY)
    token = hand_made({"alg": "HS256", "typ": "JWT"}, claims(), pem.encode())
    async with httpx.AsyncClient() as http:
        config = JwtConfig(public_key=pem, issuer=ISSUER, audience=AUDIENCE)
        assert "'HS256'" in await refused(JwtVerifier(config, http), token)


async def test_header_algorithm_must_fit_the_key(verifier: JwtVerifier) -> None:
    # An EC-signed token claiming the RSA key's kid: refused before verification.
    message = await refused(verifier, sign(claims(), EC_KEY, "k1", "ES256"))
    assert "does not fit" in message


async def test_missing_team_claim(verifier: JwtVerifier) -> None:
    assert "'team'" in await refused(verifier, sign(claims(team=None)))


async def test_missing_subject(verifier: JwtVerifier) -> None:
    assert "'sub'" in await refused(verifier, sign(claims(sub=None)))


async def test_admin_role(verifier: JwtVerifier) -> None:
    assert (await verifier.verify(sign(claims(role="admin")))).role == "admin"
    assert (await verifier.verify(sign(claims(role=["viewer", "admin"])))).role == "admin"
    assert (await verifier.verify(sign(claims(role="viewer")))).role == "user"


async def test_admin_without_team(verifier: JwtVerifier) -> None:
    result = await verifier.verify(sign(claims(team=None, role="admin")))
    assert (result.team, result.role) == (None, "admin")


async def test_custom_claim_names(jwks: tuple[JwksServer, str]) -> None:
    config = JwtConfig(
        jwks_url=jwks[1], issuer=ISSUER, audience=AUDIENCE, team_claim="org",
        role_claim="groups", admin_roles=["ops"],
    )  # fmt: skip
    async with httpx.AsyncClient() as http:
        result = await JwtVerifier(config, http).verify(
            sign(claims(team=None, org="acme", groups=["ops"]))
        )
    assert (result.team, result.role) == ("acme", "admin")


async def test_public_key_pem_text_and_path(tmp_path: Any) -> None:
    pem = public_pem(EC_KEY)
    path = tmp_path / "idp.pem"
    path.write_text(pem)
    token = sign(claims(), EC_KEY, "whatever", "ES256")
    async with httpx.AsyncClient() as http:
        for source in (pem, str(path)):
            config = JwtConfig(public_key=source, issuer=ISSUER, audience=AUDIENCE)
            assert (await JwtVerifier(config, http).verify(token)).subject == "alice"
        config = JwtConfig(public_key=pem, issuer=ISSUER, audience=AUDIENCE)
        assert "signature" in await refused(
            JwtVerifier(config, http), sign(claims(), ec.generate_private_key(ec.SECP256R1()),
                                            alg="ES256")
        )  # fmt: skip


async def test_verified_tokens_are_cached_until_they_expire(verifier: JwtVerifier) -> None:
    token = sign(claims())
    first = await verifier.verify(token)
    assert verifier.verifications == 1
    assert await verifier.verify(token) is first
    assert verifier.verifications == 1
    other = sign(claims(sub="erin"))
    assert (await verifier.verify(other)).subject == "erin"
    assert verifier.verifications == 2


async def test_cache_is_bounded(jwks: tuple[JwksServer, str]) -> None:
    config = JwtConfig(jwks_url=jwks[1], issuer=ISSUER, audience=AUDIENCE)
    async with httpx.AsyncClient() as http:
        verifier = JwtVerifier(config, http, cache_max=2)
        tokens = [sign(claims(sub=f"user{i}")) for i in range(3)]
        for token in tokens:
            await verifier.verify(token)
        await verifier.verify(tokens[0])  # the oldest was dropped: verified again
        assert verifier.verifications == 4
        await verifier.verify(tokens[2])
        assert verifier.verifications == 4


def test_looks_like_jwt() -> None:
    assert looks_like_jwt(sign(claims()))
    assert not looks_like_jwt("sk-abc.def.ghi")
    assert not looks_like_jwt("sk-1234567890abcdef")
    assert not looks_like_jwt("eyJhbGciOi.only-two")
    assert not looks_like_jwt("eyJa.b.c.d")
    assert not looks_like_jwt("eyJa.b c.d")
    assert JwtVerifier.looks_like_jwt("eyJa.b.")


def test_config_needs_exactly_one_key_source() -> None:
    with pytest.raises(ValueError, match="exactly one of jwks_url and public_key"):
        JwtConfig(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="exactly one"):
        JwtConfig(jwks_url="https://x/certs", public_key="k.pem", issuer=ISSUER, audience="a")


def test_config_refuses_symmetric_and_none_algorithms() -> None:
    for algorithm in ("HS256", "none"):
        with pytest.raises(ValueError, match="only asymmetric"):
            JwtConfig(
                jwks_url="https://x/certs", issuer=ISSUER, audience="a", algorithms=[algorithm]
            )


def test_auth_section_decodes_from_yaml_shape() -> None:
    section = msgspec.convert(
        {"jwt": {"jwks_url": "https://idp/certs", "issuer": ISSUER, "audience": AUDIENCE}},
        AuthConfig,
    )
    assert section.jwt is not None and section.jwt.algorithms == ["RS256", "ES256"]
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.convert({"jwt": {"issuer": ISSUER, "audience": AUDIENCE}}, AuthConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert(
            {"jwt": {"jwks_url": "u", "issuer": "i", "audience": "a", "x": 1}}, AuthConfig
        )
