"""Media metadata, video jobs and leases: what every replica must see of generated media.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Column("storage_key", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_media"),
    )
    op.create_index("ix_media_owner_id", "media", ["owner", "id"])
    op.create_index("ix_media_expires", "media", ["expires"])

    op.create_table(
        "video_jobs",
        sa.Column("id", sa.String(64), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_video_jobs"),
    )
    op.create_index("ix_video_jobs_owner_created_at", "video_jobs", ["owner", "created_at"])
    op.create_index("ix_video_jobs_status_heartbeat_at", "video_jobs", ["status", "heartbeat_at"])
    op.create_index("ix_video_jobs_completed_at", "video_jobs", ["completed_at"])

    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    for table in ("leases", "video_jobs", "media"):
        op.drop_table(table)
