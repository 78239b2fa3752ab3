"""Turning what a request presents into an ``Identity``, or a 401.

In order: the master key, a static ``api_keys`` entry (both compared in constant time
as SHA-256 digests), a JWT from the configured OIDC issuer (when ``auth.jwt`` is set
and the token looks like one), then a virtual key (by the hash of its secret, through
``KeyCache``). With authentication off (none of master key, static keys or JWT
configured), a caller that presents no known key is anonymous in team ``default``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from proxy.errors import AuthenticationFailed, shown
from proxy.keys import key_id
from proxy.state.records import DEFAULT_TEAM_ID, Team
from proxy.tenancy.identity import Identity, identity_scopes
from proxy.tenancy.keys import KeyCache
from proxy.tenancy.secrets import hash_secret, secret_prefix

MAX_MEMO = 10_000


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _matches(candidate: bytes, digests: list[bytes]) -> bool:
    """Constant-time membership: every digest is compared, whatever matched."""
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(candidate, digest)
    return matched


class Authenticator:
    def __init__(
        self,
        *,
        master_key: str | None,
        static_keys: list[str],
        cache: KeyCache,
        jwt: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._master = [_digest(master_key)] if master_key else []
        self._static = [_digest(k) for k in static_keys if k]
        self.cache = cache
        self.jwt = jwt
        self.clock = clock
        self.required = bool(self._master or self._static or jwt is not None)
        #: Identities of default-team callers, rebuilt when the team's record changes.
        self._memo: dict[str, tuple[Team | None, Identity]] = {}

    async def identify(self, presented: str | None) -> Identity:
        if presented is None:
            if self.required:
                raise AuthenticationFailed(
                    "Missing API key: send it as 'Authorization: Bearer <key>'."
                )
            return await self._default_team_identity("-", "anonymous")
        candidate = _digest(presented)
        if self._master and _matches(candidate, self._master):
            return await self._default_team_identity(key_id(presented), "master", admin=True)
        if self._static and _matches(candidate, self._static):
            return await self._default_team_identity(key_id(presented), "static")
        if self.jwt is not None and self.jwt.looks_like_jwt(presented):
            return await self._jwt_identity(presented)
        found = await self.cache.lookup(hash_secret(presented))
        key = found.key
        if key is None:
            if self.required:
                raise AuthenticationFailed("Incorrect API key provided.")
            return await self._default_team_identity(key_id(presented), "anonymous")
        now = self.clock()
        if key.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationFailed("This API key has expired.")
        if secret_prefix(presented) != key.prefix and not (
            key.previous_valid_until is not None and key.previous_valid_until > now
        ):
            # The previous secret of a rotated key, looked up before its grace ended: the
            # cache may hold the entry longer (up to its TTL), the grace ends on time.
            raise AuthenticationFailed("This API key was rotated; its old secret has expired.")
        if found.team is None:
            raise AuthenticationFailed("This API key's team no longer exists.")
        identity = found.identity
        if identity is None:
            identity = found.identity = Identity(
                key_id=key.id,
                team_id=key.team_id,
                role=key.role,
                kind="virtual",
                key=key,
                team=found.team,
                scopes=identity_scopes(key, found.team),
            )
        return identity  # type: ignore[no-any-return]

    async def _default_team_identity(
        self, owner: str, kind: Any, *, admin: bool = False
    ) -> Identity:
        team = await self.cache.team(DEFAULT_TEAM_ID)
        memo = self._memo.get(owner)
        if memo is not None and memo[0] is team and memo[1].kind == kind:
            return memo[1]
        identity = Identity(
            key_id=owner,
            team_id=DEFAULT_TEAM_ID,
            role="admin" if admin else "user",
            kind=kind,
            team=team,
            scopes=() if admin else identity_scopes(None, team),
        )
        if len(self._memo) >= MAX_MEMO:
            self._memo.clear()
        self._memo[owner] = (team, identity)
        return identity

    async def _jwt_identity(self, token: str) -> Identity:
        claims = await self.jwt.verify(token)
        if claims.team is None:  # only admins may come without one (JwtVerifier checks)
            return await self._default_team_identity(f"jwt:{claims.subject}", "jwt", admin=True)
        team: Team | None = await self.cache.team_named(claims.team)
        if team is None:
            raise AuthenticationFailed(
                f"The token's team '{shown(claims.team)}' is not a team here."
            )
        return Identity(
            key_id=f"jwt:{claims.subject}",
            team_id=team.id,
            role=claims.role,
            kind="jwt",
            team=team,
            scopes=identity_scopes(None, team),
        )
