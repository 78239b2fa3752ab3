"""The state layer: every stored thing, behind typed repositories, on one of two engines.

``open_state(config, data_dir)`` applies the migrations and returns a ``StateStore``;
handlers, extensions and the tenancy layer use its repositories and never SQL. SQLite
(aiosqlite, WAL) is the embedded default; PostgreSQL (asyncpg, pooled) serves replicas.
"""

from proxy.state.records import DEFAULT_TEAM_ID

__all__ = ["DEFAULT_TEAM_ID"]
