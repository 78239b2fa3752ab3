"""The cache's configuration: per model (``models[].cache``) and the core ``cache:`` section."""

from __future__ import annotations

from typing import Annotated

import msgspec


class SemanticCacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A near-duplicate prompt gets the cached answer (off unless configured)."""

    embedding_model: str
    """The model (served by this gateway) that embeds the last user message or prompt."""
    threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.95
    """Cosine similarity at or above which a cached answer is returned."""
    max_candidates: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    """Most cached vectors compared per lookup (the newest ones; brute force)."""


class ModelCacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``cache:`` on a model entry: its answers are cached (per team)."""

    ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """How long a cached answer is served."""
    semantic: SemanticCacheConfig | None = None
    """Also answer near-duplicate prompts (by embedding similarity)."""


class CacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The top-level ``cache:`` section: where answers are kept."""

    max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024
    """Bytes of answers kept in this process (least recently used go first). With
    ``state.redis_url`` the cache lives in Redis and its ``maxmemory`` bounds it."""
