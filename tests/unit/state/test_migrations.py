"""Migrations: applied once, idempotent, and building exactly what schema.py describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from proxy.state import DEFAULT_TEAM_ID, migrate, open_state
from proxy.state.config import StateConfig
from proxy.state.engine import create_engine, resolve_url
from proxy.state.schema import metadata


def _diff(connection: sa.Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrate_applies_once(database_url: str, tmp_path: Path) -> None:
    assert await migrate(database_url) == ["0001"]
    assert await migrate(database_url) == []
    engine = create_engine(resolve_url(database_url, data_dir=tmp_path))
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
            differences = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert version == [("0001",)]
    assert differences == []


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
