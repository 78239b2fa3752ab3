"""Virtual keys: looked up by the hash of their secret, rotated with a grace period."""

from __future__ import annotations

import builtins
import time
from typing import Any

import msgspec
import sqlalchemy as sa

from proxy.state.engine import Database
from proxy.state.records import ApiKey
from proxy.state.repositories import Conflict
from proxy.state.schema import api_keys
from proxy.state.sql.common import checked_changes, to_record

_FIXED = frozenset(
    {"id", "team_id", "prefix", "created_at", "updated_at", "revoked_at", "rotated_at"}
    | {"previous_valid_until"}
)
"""Fields ``update`` may not set: identity, and what ``revoke`` and ``rotate`` own."""
_LIVE = api_keys.c.revoked_at.is_(None)


class SqlKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, key: ApiKey, key_hash: str) -> ApiKey:
        values = msgspec.structs.asdict(key)
        async with self._db.write() as conn:
            try:
                await conn.execute(sa.insert(api_keys).values(**values, key_hash=key_hash))
            except sa.exc.IntegrityError as exc:
                raise Conflict(
                    f"key {key.id!r} or its secret exists, or no team {key.team_id!r}"
                ) from exc
        return key

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._one(sa.select(api_keys).where(api_keys.c.id == key_id))

    async def list(self, team_id: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if team_id is not None:
            query = query.where(api_keys.c.team_id == team_id)
        if not include_revoked:
            query = query.where(_LIVE)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [to_record(row, ApiKey) for row in rows]

    async def update(self, key_id: str, changes: dict[str, Any], now: float) -> ApiKey | None:
        values = checked_changes(changes, ApiKey, _FIXED)
        return await self._write_one(
            sa.update(api_keys)
            .where(api_keys.c.id == key_id, _LIVE)
            .values(**values, updated_at=now)
        )

    async def revoke(self, key_id: str, now: float) -> ApiKey | None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, _LIVE)
                .values(revoked_at=now, updated_at=now)
            )
            row = (
                (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)))
                .mappings()
                .first()
            )
        return to_record(row, ApiKey) if row is not None else None

    async def revoke_team(self, team_id: str, now: float) -> builtins.list[str]:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.team_id == team_id, _LIVE)
                .values(revoked_at=now, updated_at=now)
                .returning(api_keys.c.id)
            )
            return sorted(result.scalars().all())

    async def rotate(
        self, key_id: str, new_hash: str, new_prefix: str, grace_until: float, now: float
    ) -> ApiKey | None:
        try:
            return await self._write_one(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, _LIVE)
                .values(
                    previous_hash=api_keys.c.key_hash,
                    key_hash=new_hash,
                    prefix=new_prefix,
                    previous_valid_until=grace_until,
                    rotated_at=now,
                    updated_at=now,
                )
            )
        except sa.exc.IntegrityError as exc:
            raise Conflict("another key has this secret") from exc

    async def find_by_hash(self, key_hash: str, now: float) -> ApiKey | None:
        current = api_keys.c.key_hash == key_hash
        previous = sa.and_(
            api_keys.c.previous_hash == key_hash, api_keys.c.previous_valid_until > now
        )
        # The current secret wins over a previous one (hashes of random secrets do not
        # collide, but the answer must not depend on the engine's row order).
        return await self._one(
            sa.select(api_keys)
            .where(sa.or_(current, previous))
            .order_by(sa.case((current, 0), else_=1))
            .limit(1)
        )

    async def any_admin(self) -> bool:
        query = (
            sa.select(api_keys.c.id)
            .where(api_keys.c.role == "admin", _LIVE)
            .where(sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > time.time()))
            .limit(1)
        )
        async with self._db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def _one(self, query: sa.Select[Any]) -> ApiKey | None:
        async with self._db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return to_record(row, ApiKey) if row is not None else None

    async def _write_one(self, statement: sa.Update) -> ApiKey | None:
        async with self._db.write() as conn:
            row = (await conn.execute(statement.returning(*api_keys.c))).mappings().first()
        return to_record(row, ApiKey) if row is not None else None
