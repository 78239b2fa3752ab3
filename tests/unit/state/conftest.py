"""The state store on both engines: SQLite in tmp_path, PostgreSQL in a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.state import StateStore, open_state
from proxy.state.config import StateConfig

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty database of each engine, as ``state.database`` takes it."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_postgres_url"))
    return f"sqlite:///{tmp_path / 'state' / 'switchyard.sqlite3'}"


@pytest.fixture
async def state_store(database_url: str, tmp_path: Path) -> AsyncIterator[StateStore]:
    store = await open_state(StateConfig(database=database_url), data_dir=str(tmp_path))
    try:
        yield store
    finally:
        await store.aclose()
