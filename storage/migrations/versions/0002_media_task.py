"""The persisted fetch queue: `mediatask`, one row per media reference a stored post makes.

Revision ID: 0002_media_task
Revises: 0001_initial
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_media_task"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mediatask",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("post_pk", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("resolver", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "post_pk", "url"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["post_pk"], ["post.id"]),
    )
    op.create_index("ix_mediatask_campaign_id", "mediatask", ["campaign_id"])
    op.create_index("ix_mediatask_post_pk", "mediatask", ["post_pk"])
    op.create_index("ix_mediatask_state", "mediatask", ["state"])
    op.create_index("ix_mediatask_url", "mediatask", ["url"])


def downgrade() -> None:
    op.drop_table("mediatask")
