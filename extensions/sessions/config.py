"""The ``sessions:`` config section (server-side conversations)."""

from __future__ import annotations

import msgspec


class SessionsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database: str | None = None
    """SQLite file for server-side conversations; unset: ``<data_dir>/sessions.sqlite3``."""
    max_context_tokens: int = 4096
    """History budget for models whose context window is unknown (remote ones)."""
    reserve_tokens: int = 512
    """Room kept free for the answer when trimming history to the context window."""
