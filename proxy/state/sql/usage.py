"""Usage rows: written in batches, summed per group, paged newest first."""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from proxy.state.engine import Database
from proxy.state.records import UsageFilter, UsageGrouping, UsageRecord, UsageTotals
from proxy.state.schema import usage
from proxy.state.sql.common import decode_cursor, encode_cursor, to_record

_RECORD_COLUMNS = [usage.c[f] for f in UsageRecord.__struct_fields__]


class utc_day(FunctionElement[str]):
    """The UTC date ``YYYY-MM-DD`` of a Unix time, the same text on both engines."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d', {compiler.process(element.clauses, **kw)}, 'unixepoch')"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"to_char(to_timestamp({arg}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _group_column(group_by: UsageGrouping) -> sa.ColumnElement[str]:
    if group_by == "day":
        return utc_day(usage.c.time)
    return {"model": usage.c.model, "key": usage.c.key_id, "team": usage.c.team_id}[group_by]


def _where(where: UsageFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if where.team_id is not None:
        clauses.append(usage.c.team_id == where.team_id)
    if where.key_id is not None:
        clauses.append(usage.c.key_id == where.key_id)
    if where.model is not None:
        clauses.append(usage.c.model == where.model)
    if where.since is not None:
        clauses.append(usage.c.time >= where.since)
    if where.until is not None:
        clauses.append(usage.c.time < where.until)
    return clauses


class SqlUsage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many(self, rows: list[UsageRecord]) -> None:
        if not rows:
            return
        async with self._db.write() as conn:
            await conn.execute(sa.insert(usage), [msgspec.structs.asdict(r) for r in rows])

    async def totals(self, where: UsageFilter, group_by: UsageGrouping | None) -> list[UsageTotals]:
        sums = [
            sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(sa.case((usage.c.status >= 400, 1), else_=0)), 0).label(
                "errors"
            ),
            sa.func.coalesce(sa.func.sum(usage.c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(usage.c.completion_tokens), 0).label("completion_tokens"),
            sa.func.coalesce(sa.func.sum(usage.c.cost_usd), 0.0).label("cost_usd"),
            sa.func.coalesce(sa.func.sum(sa.case((usage.c.cached, 1), else_=0)), 0).label("cached"),
        ]
        if group_by is None:
            query = sa.select(*sums).where(*_where(where))
        else:
            group = _group_column(group_by).label("group")
            query = sa.select(group, *sums).where(*_where(where)).group_by(group).order_by(group)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            UsageTotals(
                group=row.get("group"),
                requests=int(row["requests"]),
                errors=int(row["errors"]),
                prompt_tokens=int(row["prompt_tokens"]),
                completion_tokens=int(row["completion_tokens"]),
                cost_usd=float(row["cost_usd"]),
                cached=int(row["cached"]),
            )
            for row in rows
        ]

    async def requests(
        self, where: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[UsageRecord], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sa.select(usage.c.id, *_RECORD_COLUMNS).where(*_where(where))
        if cursor is not None:
            at_time, at_id = decode_cursor(cursor, 2)
            query = query.where(
                sa.or_(usage.c.time < at_time, sa.and_(usage.c.time == at_time, usage.c.id < at_id))
            )
        query = query.order_by(usage.c.time.desc(), usage.c.id.desc()).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1]["time"], page[-1]["id"]) if len(rows) > limit else None
        return [to_record(row, UsageRecord) for row in page], next_cursor

    async def spend(self, *, team_id: str | None, key_id: str | None, since: float) -> float:
        query = sa.select(sa.func.coalesce(sa.func.sum(usage.c.cost_usd), 0.0)).where(
            *_where(UsageFilter(team_id=team_id, key_id=key_id, since=since))
        )
        async with self._db.read() as conn:
            return float((await conn.execute(query)).scalar_one())
