"""Who may read and write a RAG collection.

A collection belongs to the identity that created it (today the API key's id; a team
once tenancy exists): the owner is an opaque string, written into the collection's
Chroma metadata under ``OWNER_KEY`` and passed into every ``RagStore`` method. To any
other identity the collection does not exist: every route answers the same 404 as for
an unknown name, and searches never return its chunks.

Two kinds of collection are *shared*: readable by everyone, writable by nobody through
the API (403, ``permission_denied``). Those an admin lists in
``rag.shared_collections``, and those created before collections had owners (no
``OWNER_KEY`` in their metadata), so that existing embedded stores keep working.

The owner comes from ``proxy.context.owner_of``, as for sessions.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any

from proxy.errors import NotFound, PermissionDenied

#: Collection metadata key holding the owner (namespaced: old collections may carry
#: user metadata called ``owner``).
OWNER_KEY = "switchyard:owner"


class Access(enum.Enum):
    NONE = "none"
    READ = "read"
    WRITE = "write"


def stored_owner(metadata: Mapping[str, Any] | None) -> str | None:
    """The owner recorded in a collection's metadata; None for a pre-ownership one."""
    owner = (metadata or {}).get(OWNER_KEY)
    return owner if isinstance(owner, str) else None


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
