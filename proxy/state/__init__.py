"""The state layer: every stored thing, behind typed repositories, on one of two engines.

``open_state(config, data_dir=...)`` applies the migrations and returns a ``StateStore``;
handlers, extensions and the tenancy layer use its repositories and never SQL. SQLite
(aiosqlite, WAL) is the embedded default; PostgreSQL (asyncpg, pooled) serves replicas.
``migrate(url)`` is the same migration step for the CLI.
"""

from proxy.state.engine import resolve_url
from proxy.state.legacy import import_legacy_sessions
from proxy.state.migrate import migrate
from proxy.state.records import DEFAULT_TEAM_ID
from proxy.state.store import StateStore, open_state

__all__ = [
    "DEFAULT_TEAM_ID",
    "StateStore",
    "import_legacy_sessions",
    "migrate",
    "open_state",
    "resolve_url",
]
