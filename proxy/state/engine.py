"""The two engines behind one ``Database``: where a URL points, how the engine is made,
and how reads and writes are scoped.

SQLite (``sqlite+aiosqlite``) has one writer at a time. Writes in this process queue on
one ``asyncio.Lock``, and each write transaction starts with ``BEGIN IMMEDIATE``: the
file's write lock is taken before anything is read, so a read-modify-write (the next
sequence number of a session) can never interleave with another one, and several
processes on one file wait for each other (busy timeout) instead of failing on a lock
upgrade. Reads run on other pooled connections at the same time (WAL).

PostgreSQL (``postgresql+asyncpg``) is pooled; writers do not queue in the process, and
the repositories lock the rows they read-modify-write (see ``sql.sessions``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

EngineName = Literal["sqlite", "postgresql"]

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another process's write lock before failing."""

_ACCEPTED = (
    "expected sqlite:///path/to/file.sqlite3 (relative to the config file; "
    "sqlite:////absolute/path for an absolute one) or postgresql://user:pass@host:5432/db"
)


def check_database_url(database: str) -> None:
    """Raise ``ValueError`` unless ``resolve_url`` would accept ``database`` (no file or
    directory is touched: this runs when the config is read)."""
    resolve_url(database, data_dir=".", create=False)


def resolve_url(
    database: str | None,
    *,
    data_dir: str | Path,
    base_dir: str | Path = ".",
    create: bool = True,
) -> str:
    """The SQLAlchemy async URL for ``state.database``: unset means
    ``{data_dir}/switchyard.sqlite3`` (``data_dir`` is relative to the working directory,
    as for media); a relative SQLite path in ``state.database`` is taken relative to
    ``base_dir`` (the config file's directory); ``postgresql://`` gets the asyncpg driver.
    The directory of a SQLite file is created. Raises ``ValueError`` for any other form."""
    if database is None:
        return _sqlite_url(Path(data_dir) / "switchyard.sqlite3", create)
    scheme = database.split(":", 1)[0].lower() if ":" in database else ""
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        rest = database.split(":", 1)[1]
        if not rest.startswith("///") or rest in ("///", "///:memory:"):
            raise ValueError(f"state.database: {database!r} names no SQLite file; {_ACCEPTED}")
        path = Path(rest[3:])
        return _sqlite_url(path if path.is_absolute() else Path(base_dir) / path, create)
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        try:
            url = make_url(database)
        except sa.exc.ArgumentError as exc:
            raise ValueError(f"state.database: malformed PostgreSQL URL; {_ACCEPTED}") from exc
        if not url.database:
            raise ValueError(f"state.database: the PostgreSQL URL names no database; {_ACCEPTED}")
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    shown = f"{scheme}://..." if scheme else repr(database)
    raise ValueError(f"state.database: unsupported URL {shown}; {_ACCEPTED}")


def _sqlite_url(path: Path, create: bool = True) -> str:
    path = path.resolve()
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return URL.create("sqlite+aiosqlite", database=str(path)).render_as_string()


PG_TIMEOUT_S = 5.0
"""Connecting to PostgreSQL, or waiting for a pooled connection, gives up after this."""
PG_COMMAND_TIMEOUT_S = 15.0
"""A statement that has not answered by then fails (the request gets a 503)."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or is too busy now (a retry
    later may succeed), as opposed to a statement it refused."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


def engine_name(url: str) -> EngineName:
    """Which engine a URL from ``resolve_url`` is for."""
    return "sqlite" if make_url(url).get_backend_name() == "sqlite" else "postgresql"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for a URL from ``resolve_url`` (SQLite: WAL, foreign keys, busy timeout
    and explicit ``BEGIN``; PostgreSQL: a pool of ``pool_size`` connections)."""
    name = engine_name(url)
    # hide_parameters: a database error's text would otherwise carry the statement's
    # values (message JSON, key hashes) into the logs.
    if name == "postgresql":
        return create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=PG_TIMEOUT_S,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args={"timeout": PG_TIMEOUT_S, "command_timeout": PG_COMMAND_TIMEOUT_S},
        )
    engine = create_async_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S}, hide_parameters=True
    )
    _configure_sqlite(engine)
    return engine


_WRITE = "switchyard_write"
"""Execution option of the connections that write: their transactions begin IMMEDIATE."""


def _configure_sqlite(engine: AsyncEngine) -> None:
    # The driver's own implicit BEGIN is switched off, so that SQLAlchemy's "begin" event
    # decides how each transaction starts (the way SQLAlchemy's SQLite docs recommend).
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "synchronous=NORMAL",
            f"busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """One engine and how it is used: ``read()`` for queries, ``write()`` for one
    transaction that changes something (committed when the block ends, rolled back on
    an error)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.name: EngineName = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
        self._writer = engine.execution_options(**{_WRITE: True})
        self._write_lock = asyncio.Lock() if self.name == "sqlite" else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    async def aclose(self) -> None:
        await self.engine.dispose()
