"""The state store on both engines: SQLite in tmp_path, PostgreSQL in a fresh database."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture
def postgres_url() -> str:
    """The local server's admin database (switch to the shared fixture once it exists)."""
    return os.environ.get(
        "SWITCHYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture
async def fresh_postgres(postgres_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"switchyard_state_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database of each engine, as ``state.database`` takes it."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_postgres"))
    return f"sqlite:///{tmp_path / 'state' / 'switchyard.sqlite3'}"


@pytest.fixture
async def state_store(database_url: str, tmp_path: Path) -> AsyncIterator[StateStore]:
    store = await open_state(StateConfig(database=database_url), data_dir=str(tmp_path))
    try:
        yield store
    finally:
        await store.aclose()
