"""Schema migrations: Alembic revisions shipped inside the package, applied in code.

Why Alembic: the schema will change after people have data in it (both engines, and a
replica fleet on PostgreSQL), and Alembic gives ordered, recorded revisions
(``alembic_version``) that are applied once and in order, dialect-neutral
``op.create_table`` / ``op.add_column`` operations, SQLite's copy-and-swap for
``ALTER`` (batch mode), and ``compare_metadata`` to prove that the revisions build
exactly the tables ``schema.py`` describes. Users never see it: there is no
``alembic.ini``; ``migrate(url)`` points Alembic at ``migrations/`` and at a connection
it opened itself, at start-up (``open_state``) and from the CLI.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from proxy.state.engine import Database, create_engine, resolve_url

_SCRIPTS = Path(__file__).with_name("migrations")

_PG_MIGRATION_LOCK = 0x5377_6D69
"""PostgreSQL advisory lock key held while migrating: replicas starting together take
turns, and the later ones find nothing left to apply."""


async def migrate(url: str) -> list[str]:
    """Bring the database at ``url`` to the newest revision; the revisions applied, in
    order (empty when it was already up to date). ``url`` is any form ``state.database``
    accepts (a relative SQLite path is taken relative to the working directory) or what
    ``resolve_url`` returns."""
    resolved = resolve_url(url, data_dir=".")
    db = Database(create_engine(resolved, pool_size=1))
    applied: list[str] = []
    try:
        async with db.write() as conn:
            if db.name == "postgresql":
                await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            await conn.run_sync(_upgrade, applied)
    finally:
        await db.aclose()
    return applied


def _upgrade(connection: sa.Connection, applied: list[str]) -> None:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    config.attributes["applied"] = applied
    command.upgrade(config, "head")
