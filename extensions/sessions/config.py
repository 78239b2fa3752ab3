"""The ``sessions:`` config section (server-side conversations)."""

from __future__ import annotations

import msgspec


class SessionsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database: str | None = None
    """The SQLite file sessions were kept in before the state layer (default
    ``<data_dir>/sessions.sqlite3``): when it exists, its sessions are copied into the
    state store once, at start-up, and the file is left as it was."""
    max_context_tokens: int = 4096
    """History budget for models whose context window is unknown (remote ones)."""
    reserve_tokens: int = 512
    """Room kept free for the answer when trimming history to the context window."""
