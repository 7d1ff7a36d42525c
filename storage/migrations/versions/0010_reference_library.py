"""The reference library: authentic originals items are compared with (storage/references.py).

`reference` holds one row per original (its bytes are in the blob store under `sha256`);
`reference_hash` the PDQ hashes matching looks them up by: a photo's whole frame and content
region, a video's frames with their times.

Revision ID: 0010_reference_library
Revises: 0009_login_throttle
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_reference_library"
down_revision = "0009_login_throttle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("mime", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("set_name", sa.String(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reference_sha256", "reference", ["sha256"], unique=True)
    op.create_index("ix_reference_owner", "reference", ["owner"])
    op.create_index("ix_reference_set_name", "reference", ["set_name"])
    op.create_table(
        "reference_hash",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("pdq", sa.String(), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["reference_id"], ["reference.id"]),
    )
    op.create_index("ix_reference_hash_reference_id", "reference_hash", ["reference_id"])


def downgrade() -> None:
    op.drop_table("reference_hash")
    op.drop_table("reference")
