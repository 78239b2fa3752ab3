"""Bearer JWTs from an OIDC provider: verified against its JWKS (or one public key).

Only asymmetric algorithms are accepted, and only those configured: a token saying
``alg: none`` or ``HS256`` (signed with the public key as an HMAC secret, the classic
algorithm-confusion attack) is refused before any key is touched, and the header's
algorithm must match the key's type. The JWKS is fetched with the app's own httpx client,
kept ``jwks_cache_s``, and fetched again once when a token names a key id it lacks (at most
every ``JWKS_REFETCH_MIN_S``, so junk kids cannot hammer the provider).

The hot path does not verify a signature per request: a verified token's claims are kept,
keyed by the whole token, until it expires (bounded, oldest dropped first).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509 import load_pem_x509_certificate

from proxy.errors import AuthenticationFailed, ServiceUnavailable

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
JWKS_REFETCH_MIN_S = 10.0
"""An unknown key id triggers at most one JWKS fetch per this many seconds."""
VERIFIED_CACHE_MAX = 10_000

_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
"""Three base64url segments, the first a JSON object (``{"`` encodes as ``eyJ``)."""


class JwtConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    issuer: str
    """The ``iss`` every token must carry, exactly (``https://idp.example.com/realms/x``)."""
    audience: str | list[str]
    """The ``aud`` this gateway answers to; a token must name one of these."""
    jwks_url: str | None = None
    """The provider's JWKS endpoint (``.../protocol/openid-connect/certs``). Exactly one of
    ``jwks_url`` and ``public_key``."""
    public_key: str | None = None
    """One verification key instead of a JWKS: PEM text (public key or certificate) or the
    path of a PEM file."""
    team_claim: str = "team"
    """The claim naming the caller's team; a token without it is refused (unless admin)."""
    role_claim: str = "role"
    """The claim holding the caller's role: a string or a list of strings."""
    admin_roles: list[str] = msgspec.field(default_factory=lambda: ["admin"])
    """Role values that make the caller an admin; anything else is a user."""
    algorithms: list[str] = msgspec.field(default_factory=lambda: ["RS256", "ES256"])
    """Accepted signature algorithms; asymmetric only (RS*, PS*, ES*, EdDSA)."""
    leeway_s: float = 30.0
    """Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds."""
    jwks_cache_s: float = 300.0
    """How long a fetched JWKS is used before it is fetched again."""

    def __post_init__(self) -> None:
        if (self.jwks_url is None) == (self.public_key is None):
            raise ValueError("auth.jwt: set exactly one of jwks_url and public_key")
        if not self.algorithms:
            raise ValueError("auth.jwt.algorithms: name at least one algorithm")
        refused = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"auth.jwt.algorithms: {refused} not accepted; only asymmetric algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}) can be verified with a public key"
            )
        if self.leeway_s < 0 or self.jwks_cache_s <= 0:
            raise ValueError("auth.jwt: leeway_s must be >= 0 and jwks_cache_s > 0")


class AuthConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``auth:`` section: ways of authenticating beyond API keys."""

    jwt: JwtConfig | None = None
    """Accept bearer JWTs from an OIDC provider. Unset: only keys."""


@dataclass(frozen=True, slots=True)
class JwtClaims:
    subject: str
    team: str | None
    """None only for an admin whose token names no team."""
    role: Literal["user", "admin"]
    expires_at: float
    """``exp``, seconds since the epoch."""


def looks_like_jwt(token: str) -> bool:
    """Cheap shape test, so keys (``sk-...``) never reach the verifier."""
    return _JWT_SHAPE.fullmatch(token) is not None


PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)


def _key_fits(algorithm: str, key: Any) -> bool:
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm.startswith("ES"):
        curve = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}[algorithm]
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == curve
    return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)


def load_public_key(text_or_path: str) -> PublicKey:
    """A PEM public key or certificate, given as text or as a file path."""
    text = text_or_path
    if "-----BEGIN" not in text:
        path = os.path.expanduser(text)
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError as exc:
            raise ValueError(f"auth.jwt.public_key: cannot read {path!r}: {exc}") from exc
    data = text.encode()
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: Any = load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"auth.jwt.public_key: not a PEM public key: {exc}") from exc
    if not isinstance(key, PublicKey):
        raise ValueError("auth.jwt.public_key: an RSA, EC or Ed25519/Ed448 public key is needed")
    return key


_FAILURES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the JWT has expired"),
    (jwt.ImmatureSignatureError, "the JWT is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "the JWT's issuer is not the configured one"),
    (jwt.InvalidAudienceError, "the JWT's audience is not this gateway"),
    (jwt.InvalidSignatureError, "the JWT's signature does not verify"),
)


class JwtVerifier:
    """Verifies bearer JWTs; one per app, created in the lifespan with the shared client."""

    looks_like_jwt = staticmethod(looks_like_jwt)

    def __init__(
        self,
        config: JwtConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_max: int = VERIFIED_CACHE_MAX,
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._cache_max = cache_max
        self._audience = config.audience
        self._admin_roles = frozenset(config.admin_roles)
        self._static_key = load_public_key(config.public_key) if config.public_key else None
        self._keys: dict[str | None, tuple[Any, str | None]] = {}
        """kid -> (public key, the JWK's ``alg`` if it names one)."""
        self._fetched_at: float | None = None
        self._last_refetch: float | None = None
        self._generation = 0
        self._fetch_lock = asyncio.Lock()
        self._verified: dict[str, JwtClaims] = {}
        self.verifications = 0
        """Signature verifications done (cache misses): for tests and metrics."""

    async def verify(self, token: str) -> JwtClaims:
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + self._config.leeway_s > time.time():
                return cached
            del self._verified[token]
        claims = await self._verify(token)
        if len(self._verified) >= self._cache_max:
            self._evict()
        self._verified[token] = claims
        return claims

    def _evict(self) -> None:
        now = time.time() - self._config.leeway_s
        for token in [t for t, c in self._verified.items() if c.expires_at <= now]:
            del self._verified[token]
        while len(self._verified) >= self._cache_max:
            del self._verified[next(iter(self._verified))]

    async def _verify(self, token: str) -> JwtClaims:
        if not looks_like_jwt(token):
            raise AuthenticationFailed("the bearer token is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"malformed JWT header: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in self._config.algorithms:
            raise AuthenticationFailed(
                f"JWT algorithm {algorithm!r} is not accepted "
                f"(accepted: {', '.join(self._config.algorithms)})"
            )
        key = await self._key_for(header.get("kid"), algorithm)
        self.verifications += 1
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._config.issuer,
                leeway=self._config.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"the JWT has no {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            for kind, message in _FAILURES:
                if isinstance(exc, kind):
                    raise AuthenticationFailed(message) from exc
            raise AuthenticationFailed(f"invalid JWT: {exc}") from exc
        return self._claims(payload)

    def _claims(self, payload: dict[str, Any]) -> JwtClaims:
        subject = payload["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed("the JWT's 'sub' claim is not a non-empty string")
        roles = payload.get(self._config.role_claim)
        role_values = roles if isinstance(roles, list) else [roles]
        admin = any(isinstance(r, str) and r in self._admin_roles for r in role_values)
        team = payload.get(self._config.team_claim)
        if team is not None and (not isinstance(team, str) or not team):
            raise AuthenticationFailed(
                f"the JWT's {self._config.team_claim!r} claim is not a non-empty string"
            )
        if team is None and not admin:
            raise AuthenticationFailed(f"the JWT has no {self._config.team_claim!r} claim")
        return JwtClaims(
            subject=subject,
            team=team,
            role="admin" if admin else "user",
            expires_at=float(payload["exp"]),
        )

    async def _key_for(self, kid: Any, algorithm: str) -> Any:
        if self._static_key is not None:
            key, jwk_alg = self._static_key, None
        else:
            if kid is not None and not isinstance(kid, str):
                raise AuthenticationFailed("the JWT's 'kid' header is not a string")
            key, jwk_alg = await self._jwks_key(kid)
        if (jwk_alg is not None and jwk_alg != algorithm) or not _key_fits(algorithm, key):
            raise AuthenticationFailed(f"the JWT's algorithm {algorithm} does not fit its key")
        return key

    async def _jwks_key(self, kid: str | None) -> tuple[Any, str | None]:
        fetched = False
        if (
            self._fetched_at is None
            or self._clock() - self._fetched_at >= self._config.jwks_cache_s
        ):
            fetched = await self._refresh()
        found = self._lookup(kid)
        if found is None and not fetched and self._may_refetch():
            self._last_refetch = self._clock()
            await self._refresh()
            found = self._lookup(kid)
        if found is None:
            if kid is None:
                raise AuthenticationFailed(
                    "the JWT names no key id ('kid') and the JWKS has several"
                )
            raise AuthenticationFailed(f"the JWT's key id {kid!r} is not in the provider's JWKS")
        return found

    def _may_refetch(self) -> bool:
        last = self._last_refetch
        return last is None or self._clock() - last >= JWKS_REFETCH_MIN_S

    def _lookup(self, kid: str | None) -> tuple[Any, str | None] | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> bool:
        """Fetch the JWKS, once for all requests waiting at the same time: True when this
        call (or one it waited for) got a fresh set."""
        generation = self._generation
        async with self._fetch_lock:
            if self._generation != generation:
                return True
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                if self._keys:
                    # Keep verifying with the keys we have; try again in JWKS_REFETCH_MIN_S.
                    self._fetched_at = (
                        self._clock() - self._config.jwks_cache_s + JWKS_REFETCH_MIN_S
                    )
                    return False
                raise ServiceUnavailable(f"cannot fetch the JWKS: {exc}") from exc
            self._keys = keys
            self._fetched_at = self._clock()
            self._generation += 1
            return True

    async def _fetch(self) -> dict[str | None, tuple[Any, str | None]]:
        assert self._config.jwks_url is not None
        response = await self._http.get(self._config.jwks_url, timeout=10.0)
        if response.status_code != 200:
            raise ValueError(f"{self._config.jwks_url} answered {response.status_code}")
        document = response.json()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{self._config.jwks_url} is not a JWKS (no 'keys' list)")
        keys: dict[str | None, tuple[Any, str | None]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or algorithm this gateway does not verify with
            if isinstance(jwk.key, PublicKey):
                keys[entry.get("kid")] = (jwk.key, entry.get("alg"))
        return keys
