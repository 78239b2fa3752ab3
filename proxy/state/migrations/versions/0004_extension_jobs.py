"""Extension jobs: background work of extensions (directory indexes) that every replica reads.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "extension_jobs",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.Column("runner_id", sa.String(64), nullable=False),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("kind", "id", name="pk_extension_jobs"),
    )
    op.create_index(
        "ix_extension_jobs_kind_owner_created_at",
        "extension_jobs",
        ["kind", "owner", "created_at"],
    )
    op.create_index(
        "ix_extension_jobs_kind_status_heartbeat_at",
        "extension_jobs",
        ["kind", "status", "heartbeat_at"],
    )
    op.create_index("ix_extension_jobs_kind_updated_at", "extension_jobs", ["kind", "updated_at"])


def downgrade() -> None:
    op.drop_table("extension_jobs")
