"""Who is calling: the identity every request carries once it is authenticated.

Ownership follows it: sessions belong to ``key_id``; RAG collections, media files and
video jobs belong to ``team_id``. A static ``api_keys`` entry and a caller without a key
(auth off) are in the ``default`` team and keep the key ids they always had (a digest
of the key, ``-`` without one), so what they stored before teams existed stays theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from proxy.state.records import DEFAULT_TEAM_ID, ApiKey, Limits, Role, Team

IdentityKind = Literal["master", "static", "virtual", "jwt", "anonymous"]


@dataclass(frozen=True, slots=True)
class Identity:
    key_id: str
    """Owner of per-key data (sessions); the virtual key's id, or a static key's digest."""
    team_id: str = DEFAULT_TEAM_ID
    role: Role = "user"
    kind: IdentityKind = "anonymous"
    key: ApiKey | None = None
    """The virtual key's record (its limits), when the caller used one."""
    team: Team | None = None
    """The team's record (its limits), when it has one."""
    scopes: tuple[tuple[str, Limits], ...] = field(default=())
    """``(scope id, limits)`` for the key and for the team, strictest applied: the scope
    ids are ``key:<id>`` and ``team:<id>``."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def name(self) -> str:
        """How audit entries name this caller (never a secret)."""
        if self.kind == "master":
            return "master"
        return self.key_id


ANONYMOUS = Identity(key_id="-")


def identity_scopes(key: ApiKey | None, team: Team | None) -> tuple[tuple[str, Limits], ...]:
    scopes: list[tuple[str, Limits]] = []
    if key is not None:
        scopes.append((f"key:{key.id}", key))
    if team is not None:
        scopes.append((f"team:{team.id}", team))
    return tuple(scopes)
