"""Virtual keys' secrets: how they are made, stored and shown.

A secret is ``sk-sy-`` followed by 32 random bytes (256 bits) in URL-safe base64. Only
its hex SHA-256 is stored. A fast, unsalted hash is the right choice here, unlike for
passwords: a password is guessable, so its hash must be slow and salted, but a 256-bit
random secret cannot be guessed at any hashing speed, and a deterministic hash lets the
auth layer find a key with one indexed lookup per request.
"""

from __future__ import annotations

import hashlib
import secrets

SECRET_PREFIX = "sk-sy-"
#: How many leading characters of a secret listings show (``sk-sy-`` and 6 more).
SHOWN_PREFIX_LENGTH = 12


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_prefix(secret: str) -> str:
    """The start of a secret, for people to recognise a key in listings."""
    return secret[:SHOWN_PREFIX_LENGTH]
