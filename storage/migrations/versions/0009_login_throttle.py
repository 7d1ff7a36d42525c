"""Login throttle rows: attempts per (account, client address) and per address, with the time
the next attempt is allowed (exponential backoff instead of a lock anyone can trigger; issue 16).
Campaign members: which users see which campaigns in the console (per-campaign permissions).

Revision ID: 0009_login_throttle
Revises: 0008_custody_request_id
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_login_throttle"
down_revision = "0008_custody_request_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loginthrottle",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_allowed", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_loginthrottle_account", "loginthrottle", ["account"], unique=False)
    op.create_table(
        "campaignmember",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("user_id", "campaign_id"),
    )
    op.create_index("ix_campaignmember_campaign_id", "campaignmember", ["campaign_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_campaignmember_campaign_id", table_name="campaignmember")
    op.drop_table("campaignmember")
    op.drop_index("ix_loginthrottle_account", table_name="loginthrottle")
    op.drop_table("loginthrottle")
