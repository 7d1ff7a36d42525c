"""The content region of an image (screenshot chrome, caption bands cut away) and its hashes.

detectors/regions.py finds the picture inside a re-upload; dedup indexes the region's pHash and
PDQ beside the whole frame's, so a screenshot of a known fake matches it region to region. The
hashes are kept on the media row, like the whole-frame ones, so a later run (or `campaign
resume`) rebuilds the same index without decoding every stored image again. One JSON value:
{"box": [left, top, right, bottom], "phash": hex, "pdq": hex, "pdq_quality": int}, or null when
the whole frame is the picture (and for rows of earlier versions, which then match by their
whole frame only).

Revision ID: 0007_media_region
Revises: 0006_evidence_post_time
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_media_region"
down_revision = "0006_evidence_post_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("media", sa.Column("region", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.drop_column("region")
