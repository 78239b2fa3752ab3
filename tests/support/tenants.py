"""Teams and virtual keys with chosen secrets, written straight into a gateway's state
store before it starts (the admin API makes its own secrets; tests that are about
something else want fixed ones)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from proxy.state import open_state
from proxy.state.config import StateConfig
from proxy.state.records import ApiKey, Team
from proxy.tenancy.secrets import hash_secret, secret_prefix


def seed_keys(
    data_dir: Path,
    keys: dict[str, str],
    database: str | None = None,
    teams: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``keys``: secret -> team id; each team is created (named after its id) once, with
    the fields ``teams`` gives it (limits, allowed lists)."""

    async def seed() -> None:
        store = await open_state(StateConfig(database=database), data_dir=str(data_dir))
        now = time.time()
        try:
            for team_id in dict.fromkeys(keys.values()):
                if await store.teams.get(team_id) is None:
                    await store.teams.create(
                        Team(
                            id=team_id,
                            name=team_id,
                            created_at=now,
                            updated_at=now,
                            **(teams or {}).get(team_id, {}),
                        )
                    )
            for index, (secret, team_id) in enumerate(keys.items()):
                record = ApiKey(
                    id=f"key_seed_{team_id}_{index}",
                    name=f"seeded {index}",
                    team_id=team_id,
                    prefix=secret_prefix(secret),
                    created_at=now,
                    updated_at=now,
                )
                await store.keys.create(record, hash_secret(secret))
        finally:
            await store.aclose()

    asyncio.run(seed())
