"""Alembic's environment, driven only by ``proxy.state.migrate``: it is handed an open
connection (in ``config.attributes``) and never reads an ``alembic.ini`` or a URL."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.migration import MigrationContext, MigrationInfo

from proxy.state.schema import metadata

config = context.config
connection = config.attributes["connection"]
applied: list[str] = config.attributes["applied"]


def _record(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    applied.append(str(step.up_revision_id))


context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it; batch mode does that for later revisions.
    render_as_batch=connection.dialect.name == "sqlite",
    on_version_apply=_record,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
