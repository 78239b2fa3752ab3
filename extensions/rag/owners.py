"""Who may read and write a RAG collection.

A collection belongs to the team of the identity that created it: the owner is the
team id, written into the collection's Chroma metadata under ``OWNER_KEY`` and passed
into every ``RagStore`` method; members of a team share its collections. To any
other identity the collection does not exist: every route answers the same 404 as for
an unknown name, and searches never return its chunks.

Two kinds of collection are *shared*: readable by everyone, writable by nobody through
the API (403, ``permission_denied``). Those an admin lists in
``rag.shared_collections``, and those created before collections had owners (no
``OWNER_KEY`` in their metadata), so that existing embedded stores keep working.

Collections made before teams existed carry the creating key's digest (or ``-``
without a key). Every such caller is in team ``default`` now (static ``api_keys`` and
callers without a key are), so those owners count as ``default``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from typing import Any

from proxy.errors import NotFound, PermissionDenied
from proxy.state.records import DEFAULT_TEAM_ID

#: Collection metadata key holding the owner (namespaced: old collections may carry
#: user metadata called ``owner``).
OWNER_KEY = "switchyard:owner"


class Access(enum.Enum):
    NONE = "none"
    READ = "read"
    WRITE = "write"


#: What owners looked like before teams: a key digest (``proxy.keys.key_id``) or ``-``.
_PRE_TEAM_OWNER = re.compile(r"^(-|[0-9a-f]{16})$")


def stored_owner(metadata: Mapping[str, Any] | None) -> str | None:
    """The owning team recorded in a collection's metadata; None for a pre-ownership one."""
    owner = (metadata or {}).get(OWNER_KEY)
    if not isinstance(owner, str):
        return None
    return DEFAULT_TEAM_ID if _PRE_TEAM_OWNER.match(owner) else owner


def access_of(
    name: str, metadata: Mapping[str, Any] | None, owner: str, shared: Collection[str]
) -> Access:
    """What ``owner`` may do with collection ``name`` (see the module doc)."""
    if name in shared:
        return Access.READ
    recorded = stored_owner(metadata)
    if recorded is None:
        return Access.READ
    return Access.WRITE if recorded == owner else Access.NONE


def unknown_collection(name: str) -> NotFound:
    """The one answer for a collection that does not exist or belongs to someone else."""
    return NotFound(f"Unknown RAG collection '{name}'.", param="collection")


def read_only(name: str) -> PermissionDenied:
    return PermissionDenied(
        f"RAG collection '{name}' is shared and read-only: it cannot be changed through the API.",
        param="collection",
    )
