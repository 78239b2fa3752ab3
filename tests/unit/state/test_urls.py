"""Which database a ``state.database`` value names."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.state import resolve_url
from proxy.state.engine import engine_name


def test_unset_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    url = resolve_url(None, data_dir=tmp_path / "d")
    assert url == f"sqlite+aiosqlite:///{tmp_path}/d/switchyard.sqlite3"
    assert (tmp_path / "d").is_dir() and engine_name(url) == "sqlite"


def test_a_relative_data_dir_is_relative_to_the_working_directory_like_media(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = resolve_url(None, data_dir="data", base_dir="/the/config/dir")
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'switchyard.sqlite3'}"


def test_relative_sqlite_path_is_relative_to_base_dir(tmp_path: Path) -> None:
    url = resolve_url("sqlite:///db/state.sqlite3", data_dir="ignored", base_dir=tmp_path)
    assert url == f"sqlite+aiosqlite:///{tmp_path}/db/state.sqlite3"
    assert (tmp_path / "db").is_dir()


def test_absolute_sqlite_path(tmp_path: Path) -> None:
    url = resolve_url(f"sqlite:///{tmp_path}/abs.sqlite3", data_dir="x", base_dir="/elsewhere")
    assert url == f"sqlite+aiosqlite:///{tmp_path}/abs.sqlite3"


def test_postgresql_gets_the_asyncpg_driver() -> None:
    for given in ("postgresql://u:p%40ss@db.local:6543/sw", "postgres://u:p%40ss@db.local:6543/sw"):
        url = resolve_url(given, data_dir=".")
        assert url == "postgresql+asyncpg://u:p%40ss@db.local:6543/sw"
        assert engine_name(url) == "postgresql"


@pytest.mark.parametrize(
    "bad",
    ["mysql://root:hunter2@db/sw", "redis://localhost", "state.sqlite3", "sqlite://", "sqlite:///"],
)
def test_other_forms_are_refused_naming_the_accepted_ones(bad: str) -> None:
    with pytest.raises(ValueError) as raised:
        resolve_url(bad, data_dir=".")
    message = str(raised.value)
    assert "sqlite:///" in message and "postgresql://" in message
    assert "hunter2" not in message


def test_postgresql_without_a_database_is_refused() -> None:
    with pytest.raises(ValueError, match="names no database"):
        resolve_url("postgresql://u@host:5432", data_dir=".")
