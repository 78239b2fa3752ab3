"""The state store's tables, as SQLAlchemy Core metadata (one dialect-neutral form).

This describes the schema the migrations build; the repositories query through it. A
change here goes with a new revision under ``migrations/versions`` (the two are
compared by ``tests/unit/state/test_migrations.py``).

Types are chosen to behave alike on both engines: times are Unix seconds as
``DOUBLE``, list and mapping fields are ``JSON`` with SQL ``NULL`` for ``None`` (so
``None``, "no restriction", stays apart from ``[]``), and a message is JSON text kept
byte for byte as it was written.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_Json = sa.JSON(none_as_null=True)
"""``None`` is stored as SQL ``NULL``, never as the JSON text ``null``."""


def _limits() -> list[sa.Column[object]]:
    """The ``Limits`` columns a team and a key both carry."""
    return [
        sa.Column("rpm_limit", sa.Integer, nullable=True),
        sa.Column("tpm_limit", sa.Integer, nullable=True),
        sa.Column("max_budget_usd", sa.Double, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=False, server_default="month"),
        sa.Column("allowed_models", _Json, nullable=True),
        sa.Column("allowed_extensions", _Json, nullable=True),
    ]


teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    *_limits(),
    sa.Column("metadata", _Json, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("deleted_at", sa.Double, nullable=True),
    # A name is unique among live teams only: a deleted team's name can be taken again.
    sa.Index(
        "uq_teams_live_name",
        "name",
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False),
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
    sa.Index("uq_api_keys_key_hash", "key_hash", unique=True),
    sa.Index("ix_api_keys_previous_hash", "previous_hash"),
    sa.Index("ix_api_keys_team_id", "team_id"),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
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
    sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_usage_team_id_time", "team_id", "time"),
    sa.Index("ix_usage_key_id_time", "key_id", "time"),
    sa.Index("ix_usage_time", "time"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("time", sa.Double, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("details", _Json, nullable=False),
    sa.Index("ix_audit_target_id", "target", "id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("updated", sa.Double, nullable=False),
    sa.Index("ix_sessions_owner_updated", "owner", "updated"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("session", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created", sa.Double, nullable=False),
    sa.ForeignKeyConstraint(
        ["owner", "session"],
        ["sessions.owner", "sessions.id"],
        name="fk_messages_session_sessions",
        ondelete="CASCADE",
    ),
)

legacy_imports = sa.Table(
    "legacy_imports",
    metadata,
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("imported_at", sa.Double, nullable=False),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("messages", sa.Integer, nullable=False),
)
"""Which pre-tenancy databases were copied in, so that it happens once."""

media = sa.Table(
    "media",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("expires", sa.Double, nullable=False),
    sa.Column("storage_key", sa.String(200), nullable=False),
    sa.Index("ix_media_owner_id", "owner", "id"),
    sa.Index("ix_media_expires", "expires"),
)
"""Files adapters produced (the bytes live in the media backend under ``storage_key``)."""

video_jobs = sa.Table(
    "video_jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("seconds", sa.String(32), nullable=False),
    sa.Column("size", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("completed_at", sa.Double, nullable=True),
    sa.Column("error_code", sa.String(100), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("media_id", sa.String(64), nullable=True),
    sa.Column("runner_id", sa.String(64), nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
    sa.Index("ix_video_jobs_owner_created_at", "owner", "created_at"),
    sa.Index("ix_video_jobs_status_heartbeat_at", "status", "heartbeat_at"),
    sa.Index("ix_video_jobs_completed_at", "completed_at"),
)
"""Video jobs: run by one replica (``runner_id``, alive while ``heartbeat_at`` is fresh),
read by any."""

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)
"""Work that one replica does for all (the media retention sweep): who holds it, until when."""

extension_jobs = sa.Table(
    "extension_jobs",
    metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("document", sa.LargeBinary, nullable=False),
    sa.Column("runner_id", sa.String(64), nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_extension_jobs_kind_owner_created_at", "kind", "owner", "created_at"),
    sa.Index("ix_extension_jobs_kind_status_heartbeat_at", "kind", "status", "heartbeat_at"),
    sa.Index("ix_extension_jobs_kind_updated_at", "kind", "updated_at"),
)
"""Jobs that extensions run in the background: run by one replica (``runner_id``, alive
while ``heartbeat_at`` is fresh), read by any; ``document`` is the extension's own."""

responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("team_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("previous_response_id", sa.String(64), nullable=True),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("input_items", sa.LargeBinary, nullable=False),
    sa.Column("messages", sa.LargeBinary, nullable=False),
    sa.Index("ix_responses_team_id_key_id_created_at", "team_id", "key_id", "created_at"),
)
"""Stored Responses API responses (``proxy.dialects.responses``), owned by team and key."""
