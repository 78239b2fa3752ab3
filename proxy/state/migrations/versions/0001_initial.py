"""Initial schema: teams (with the default team), keys, usage, audit, sessions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Json = sa.JSON(none_as_null=True)
_LIVE = sa.text("deleted_at IS NULL")


def _limits() -> list[sa.Column[object]]:
    return [
        sa.Column("rpm_limit", sa.Integer, nullable=True),
        sa.Column("tpm_limit", sa.Integer, nullable=True),
        sa.Column("max_budget_usd", sa.Double, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=False, server_default="month"),
        sa.Column("allowed_models", _Json, nullable=True),
        sa.Column("allowed_extensions", _Json, nullable=True),
    ]


def _serial() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)


def upgrade() -> None:
    teams = op.create_table(
        "teams",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        *_limits(),
        sa.Column("metadata", _Json, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("deleted_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_teams"),
    )
    op.create_index(
        "uq_teams_live_name",
        "teams",
        ["name"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    now = time.time()
    op.bulk_insert(
        teams,
        [
            {
                "id": "default",
                "name": "default",
                "budget_period": "month",
                "allowed_models": None,
                "allowed_extensions": None,
                "metadata": {},
                "created_at": now,
                "updated_at": now,
            }
        ],
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("previous_hash", sa.String(128), nullable=True),
        *_limits(),
        sa.Column("max_parallel", sa.Integer, nullable=True),
        sa.Column("expires_at", sa.Double, nullable=True),
        sa.Column("metadata", _Json, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
        sa.Column("rotated_at", sa.Double, nullable=True),
        sa.Column("previous_valid_until", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name="fk_api_keys_team_id_teams"),
    )
    op.create_index("uq_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_index("ix_api_keys_previous_hash", "api_keys", ["previous_hash"])
    op.create_index("ix_api_keys_team_id", "api_keys", ["team_id"])

    op.create_table(
        "usage",
        _serial(),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Double, nullable=False),
        sa.Column("duration_ms", sa.Double, nullable=False),
        sa.Column("upstream_ms", sa.Double, nullable=False),
        sa.Column("ttft_ms", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage"),
    )
    op.create_index("ix_usage_team_id_time", "usage", ["team_id", "time"])
    op.create_index("ix_usage_key_id_time", "usage", ["key_id", "time"])
    op.create_index("ix_usage_time", "usage", ["time"])

    op.create_table(
        "audit",
        _serial(),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", _Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_target_id", "audit", ["target", "id"])

    op.create_table(
        "sessions",
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("updated", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("owner", "id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_owner_updated", "sessions", ["owner", "updated"])
    op.create_table(
        "messages",
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("session", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("owner", "session", "seq", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["owner", "session"],
            ["sessions.owner", "sessions.id"],
            name="fk_messages_session_sessions",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "legacy_imports",
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("imported_at", sa.Double, nullable=False),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("messages", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_legacy_imports"),
    )


def downgrade() -> None:
    for table in ("legacy_imports", "messages", "sessions", "audit", "usage", "api_keys", "teams"):
        op.drop_table(table)
