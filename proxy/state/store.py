"""``StateStore``: the repositories over one engine, and ``open_state`` to get one."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from proxy.state.config import StateConfig
from proxy.state.engine import Database, EngineName, create_engine, resolve_url
from proxy.state.legacy import import_legacy_sessions
from proxy.state.migrate import migrate
from proxy.state.repositories import (
    AuditRepository,
    ExtensionJobRepository,
    KeyRepository,
    LeaseRepository,
    MediaRepository,
    ResponseRepository,
    SessionRepository,
    TeamRepository,
    UsageRepository,
    VideoJobRepository,
)
from proxy.state.sql.audit import SqlAudit
from proxy.state.sql.extension_jobs import SqlExtensionJobs
from proxy.state.sql.jobs import SqlVideoJobs
from proxy.state.sql.keys import SqlKeys
from proxy.state.sql.media import SqlLeases, SqlMedia
from proxy.state.sql.responses import SqlResponses
from proxy.state.sql.sessions import SqlSessions
from proxy.state.sql.teams import SqlTeams
from proxy.state.sql.usage import SqlUsage


class StateStore:
    """Every repository, sharing one engine (one per process; made by ``open_state``,
    closed by the app's lifespan with ``aclose``)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        """The engine and its read/write scopes; for the repositories and the legacy import."""
        self.engine_name: EngineName = database.name
        self.teams: TeamRepository = SqlTeams(database)
        self.keys: KeyRepository = SqlKeys(database)
        self.usage: UsageRepository = SqlUsage(database)
        self.audit: AuditRepository = SqlAudit(database)
        self.sessions: SessionRepository = SqlSessions(database)
        self.media: MediaRepository = SqlMedia(database)
        self.video_jobs: VideoJobRepository = SqlVideoJobs(database)
        self.leases: LeaseRepository = SqlLeases(database)
        self.extension_jobs: ExtensionJobRepository = SqlExtensionJobs(database)
        self.responses: ResponseRepository = SqlResponses(database)

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query (``/health/ready``)."""
        async with self.database.read() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def aclose(self) -> None:
        await self.database.aclose()


async def open_state(
    config: StateConfig,
    *,
    data_dir: str,
    base_dir: str = ".",
    legacy_sessions: Path | None = None,
) -> StateStore:
    """Resolve ``config.database`` (unset: ``{data_dir}/switchyard.sqlite3``; relative
    SQLite paths against ``base_dir``), apply the migrations, open the engine, and copy
    the pre-tenancy sessions file at ``legacy_sessions`` in when it exists and was not
    copied before (``None``: no such import)."""
    url = resolve_url(config.database, data_dir=data_dir, base_dir=base_dir)
    await migrate(url)
    store = StateStore(Database(create_engine(url, pool_size=config.pool_size)))
    try:
        if legacy_sessions is not None:
            await import_legacy_sessions(store, legacy_sessions)
    except BaseException:
        await store.aclose()
        raise
    return store
