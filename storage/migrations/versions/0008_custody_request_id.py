"""Custody events carry the writer's request id, unique, so a retried append is written once.

A writer that loses its connection after the server committed an append (the acknowledgement
never arrived) retries it; with the same request id the retry finds the committed row instead
of adding a second one. NULL for events written without one (and for every earlier row).

Revision ID: 0008_custody_request_id
Revises: 0007_media_region
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_custody_request_id"
down_revision = "0007_media_region"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("custodyevent", sa.Column("request_id", sa.String(length=200), nullable=True))
    op.create_index("ix_custodyevent_request_id", "custodyevent", ["request_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_custodyevent_request_id", table_name="custodyevent")
    with op.batch_alter_table("custodyevent") as batch:
        batch.drop_column("request_id")
