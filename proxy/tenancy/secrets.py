"""Virtual keys' secrets: made here, shown once, stored only as a hash.

A secret is 256 random bits, so a fast hash (SHA-256) is the right one: there is
nothing to brute-force, unlike a password, and the hot path hashes on every request.
"""

from __future__ import annotations

import hashlib
import secrets

SECRET_PREFIX = "sk-sy-"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_prefix(secret: str) -> str:
    """What listings show of a secret, for people to recognise it: its first 12 chars."""
    return secret[:12]
