"""Reading the API key a request presents, and naming it without revealing it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def key_id(key: str) -> str:
    """A stable, non-reversible identifier for a key (for scoping data to it)."""
    return hashlib.sha256(b"switchyard-key:" + key.encode("utf-8")).hexdigest()[:16]


def presented_key(header: Callable[[str], str | None]) -> str | None:
    """``Authorization: Bearer <key>``, else the ``x-api-key`` header (Anthropic's
    clients), else the ``api-key`` header (Azure clients)."""
    authorization = header("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in ("x-api-key", "api-key"):
        value = header(name)
        if value and value.strip():
            return value.strip()
    return None
