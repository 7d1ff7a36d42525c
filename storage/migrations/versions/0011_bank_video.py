"""Known-fakes bank for videos: one row per banked video, its per-frame vPDQ hashes as JSON.

A video is matched as a whole (the share of frames each way, then aligned in time), so its
frames stay together in one row rather than one bank_entry per frame hash.

Revision ID: 0011_bank_video
Revises: 0010_reference_library
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_bank_video"
down_revision = "0010_reference_library"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_video",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("media_sha256", sa.String(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("frames", sa.JSON(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "name"),
    )
    op.create_index("ix_bank_video_case_id", "bank_video", ["case_id"])
    op.create_index("ix_bank_video_media_sha256", "bank_video", ["media_sha256"])


def downgrade() -> None:
    op.drop_index("ix_bank_video_media_sha256", table_name="bank_video")
    op.drop_index("ix_bank_video_case_id", table_name="bank_video")
    op.drop_table("bank_video")
