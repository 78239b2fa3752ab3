"""Teams: soft-deleted, with a name unique among the live ones."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy.state.engine import Database
from proxy.state.records import Team
from proxy.state.repositories import Conflict
from proxy.state.schema import teams
from proxy.state.sql.common import checked_changes, to_record

_FIXED = frozenset({"id", "created_at", "updated_at"})
_LIVE = teams.c.deleted_at.is_(None)


class SqlTeams:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, team: Team) -> Team:
        async with self._db.write() as conn:
            await self._check_name(conn, team.name, None)
            try:
                await conn.execute(sa.insert(teams).values(msgspec.structs.asdict(team)))
            except sa.exc.IntegrityError as exc:
                raise Conflict(f"a team named {team.name!r} or with id {team.id!r} exists") from exc
        return team

    async def get(self, team_id: str) -> Team | None:
        return await self._one(teams.c.id == team_id)

    async def named(self, ref: str) -> Team | None:
        """By id, else by name (live teams' names are unique)."""
        return await self.get(ref) or await self._one(teams.c.name == ref)

    async def _one(self, where: Any) -> Team | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(teams).where(where, _LIVE))).mappings().first()
        return to_record(row, Team) if row is not None else None

    async def list(self) -> list[Team]:
        query = sa.select(teams).where(_LIVE).order_by(teams.c.created_at, teams.c.id)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [to_record(row, Team) for row in rows]

    async def update(self, team_id: str, changes: dict[str, Any], now: float) -> Team | None:
        values = checked_changes(changes, Team, _FIXED)
        async with self._db.write() as conn:
            if "name" in values:
                await self._check_name(conn, values["name"], team_id)
            query = (
                sa.update(teams)
                .where(teams.c.id == team_id, _LIVE)
                .values(**values, updated_at=now)
                .returning(*teams.c)
            )
            try:
                row = (await conn.execute(query)).mappings().first()
            except sa.exc.IntegrityError as exc:
                raise Conflict(f"a team named {values.get('name')!r} exists") from exc
        return to_record(row, Team) if row is not None else None

    async def delete(self, team_id: str, now: float) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(teams)
                .where(teams.c.id == team_id, _LIVE)
                .values(deleted_at=now, updated_at=now)
            )
        return result.rowcount > 0

    @staticmethod
    async def _check_name(conn: AsyncConnection, name: str, own: str | None) -> None:
        """Raise ``Conflict`` when a live team other than ``own`` has ``name``. The unique
        index decides in a race; this check gives the same answer without relying on
        the driver's wording of a constraint error."""
        query = sa.select(teams.c.id).where(teams.c.name == name, _LIVE)
        if own is not None:
            query = query.where(teams.c.id != own)
        if (await conn.execute(query.limit(1))).first() is not None:
            raise Conflict(f"a team named {name!r} exists")
