"""Migrations: applied once, idempotent, and building exactly what schema.py describes.

"Exactly" is checked twice: Alembic's ``compare_metadata`` (with server defaults), and a
dump of the catalog of a database built by the migrations against one built by
``metadata.create_all``. The dump catches what ``compare_metadata`` does not look at,
such as the ``WHERE`` of a partial index.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from proxy.state import DEFAULT_TEAM_ID, migrate, migrations, open_state
from proxy.state.config import StateConfig
from proxy.state.engine import create_engine, resolve_url
from proxy.state.schema import metadata
from tests.conftest import run_in_own_loop


def _diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_server_default": True})
    return list(compare_metadata(context, metadata))


@pytest.fixture
def other_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same engine as ``database_url``."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'other' / 'switchyard.sqlite3'}"
        return
    import asyncpg

    base, _, _ = database_url.rpartition("/")
    name = f"t_{uuid.uuid4().hex[:16]}"

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(f"{base}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    run_in_own_loop(lambda: execute(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        run_in_own_loop(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_SQLITE_CATALOG = "SELECT type, name, tbl_name, sql FROM sqlite_master"
_PG_INDEXES = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
_PG_COLUMNS = """
SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length,
       is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public'
"""
_PG_CONSTRAINTS = """
SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
"""
_PG_SEQUENCES = """
SELECT sequence_name, data_type, start_value, increment
FROM information_schema.sequences WHERE sequence_schema = 'public'
"""


def _normalise_sql(sql: str | None) -> str | None:
    return None if sql is None else re.sub(r"\s+", " ", sql).replace("( ", "(").strip()


async def _catalog(url: str, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table, column, default, index and constraint, outside Alembic's own table."""
    engine = create_engine(resolve_url(url, data_dir=tmp_path))
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                rows = (await conn.execute(sa.text(_SQLITE_CATALOG))).all()
                return {
                    "sqlite_master": sorted(
                        (kind, name, table, _normalise_sql(sql))
                        for kind, name, table, sql in rows
                        if table != "alembic_version"
                    )
                }
            dump: dict[str, list[tuple[Any, ...]]] = {}
            for label, query in (
                ("indexes", _PG_INDEXES),
                ("columns", _PG_COLUMNS),
                ("constraints", _PG_CONSTRAINTS),
                ("sequences", _PG_SEQUENCES),
            ):
                rows = (await conn.execute(sa.text(query))).all()
                dump[label] = sorted(tuple(row) for row in rows if row[0] != "alembic_version")
            return dump
    finally:
        await engine.dispose()


def _revisions() -> list[str]:
    """Every shipped revision, oldest first."""
    scripts = ScriptDirectory(str(Path(migrations.__file__).parent))
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


async def test_migrate_applies_once(database_url: str, tmp_path: Path) -> None:
    revisions = _revisions()
    assert revisions == ["0001", "0002", "0003", "0004", "0005"]
    assert await migrate(database_url) == revisions
    assert await migrate(database_url) == []
    engine = create_engine(resolve_url(database_url, data_dir=tmp_path))
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
            differences = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert version == [(revisions[-1],)]
    assert differences == []


async def test_migrations_build_the_catalog_create_all_builds(
    database_url: str, other_database_url: str, tmp_path: Path
) -> None:
    await migrate(database_url)
    engine = create_engine(resolve_url(other_database_url, data_dir=tmp_path))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    migrated = await _catalog(database_url, tmp_path)
    created = await _catalog(other_database_url, tmp_path)
    assert all(migrated.values())
    assert migrated == created


async def test_open_state_twice_keeps_data_and_one_default_team(
    database_url: str, tmp_path: Path
) -> None:
    config = StateConfig(database=database_url)
    first = await open_state(config, data_dir=str(tmp_path))
    try:
        default = await first.teams.get(DEFAULT_TEAM_ID)
        await first.sessions.append("o", "s", [{"role": "user", "content": "kept"}])
    finally:
        await first.aclose()
    second = await open_state(config, data_dir=str(tmp_path))
    try:
        assert [t.id for t in await second.teams.list()] == [DEFAULT_TEAM_ID]
        assert await second.teams.get(DEFAULT_TEAM_ID) == default
        assert await second.sessions.history("o", "s") == [{"role": "user", "content": "kept"}]
    finally:
        await second.aclose()


async def test_default_database_is_created_in_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    store = await open_state(StateConfig(), data_dir=str(data_dir))
    try:
        assert store.engine_name == "sqlite"
        assert (await store.teams.get(DEFAULT_TEAM_ID)) is not None
    finally:
        await store.aclose()
    assert (data_dir / "switchyard.sqlite3").is_file()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = await open_state(StateConfig(), data_dir=str(tmp_path))
    try:
        async with store.database.read() as conn:
            values = [
                (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            ]
    finally:
        await store.aclose()
    assert values == ["wal", 1, 1, 30000]
