"""The ``state:`` section: where teams, keys, usage, audit, sessions, media metadata and
video jobs live."""

from __future__ import annotations

from typing import Annotated

import msgspec


class StateConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database: str | None = None
    """``sqlite:///path`` (relative paths are relative to the config file) or
    ``postgresql://user:pass@host:5432/db``. Unset: ``sqlite:///{server.data_dir}/switchyard.sqlite3``."""
    redis_url: str | None = None
    """``redis://host:6379/0``: rate-limit counters, spend and the key-revocation broadcast
    shared by replicas. Unset: the same limits, counted in this process."""
    pool_size: Annotated[int, msgspec.Meta(ge=1)] = 10
    """PostgreSQL connections per process."""
    usage_flush_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """Usage rows are written in batches: at least this often..."""
    usage_flush_rows: Annotated[int, msgspec.Meta(ge=1)] = 500
    """...or as soon as this many are queued."""
    key_cache_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """How long a key lookup is trusted without Redis (revocation takes at most this
    long to reach every replica). With Redis, changes are broadcast at once and lookups
    live ``max(key_cache_ttl_s, 10)`` s, the fallback for a lost broadcast."""

    def __post_init__(self) -> None:
        if self.database is not None:
            from proxy.state.engine import check_database_url

            check_database_url(self.database)
