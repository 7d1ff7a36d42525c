"""The post's publication time on `evidence` (a copy of post.created_at), with gallery indexes on it.

A gallery listing with since/until is ordered by the post's time. With that time only on `post`,
a query that also filters by campaign, platform, verdict or review status walked the post-time
index and joined every post of the window to its evidence to check the other filters: at a
million rows, all nine console filters on a deep page took ~100 ms on SQLite. With the time on
`evidence` itself, "campaign, post time, id" answers such a page from one index, and the other
evidence-side filters are checked without touching `post`.

post.created_at never changes once stored (a post is upserted by platform + post id and its
time is the platform's), so the copy cannot drift. Rows of earlier versions are filled here.

Revision ID: 0006_evidence_post_time
Revises: 0005_gallery_search
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_evidence_post_time"
down_revision = "0005_gallery_search"
branch_labels = None
depends_on = None

# Read-path indexes: named ix_gallery_* like those of 0005, so the model comparison skips them.
_INDEXES = [
    ("ix_gallery_evidence_posted", ["post_created_at", "id"]),
    ("ix_gallery_evidence_campaign_posted", ["campaign_id", "post_created_at", "id"]),
]


def upgrade() -> None:
    # A plain ALTER TABLE ADD COLUMN on both databases: no table copy on SQLite.
    op.add_column("evidence", sa.Column("post_created_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE evidence SET post_created_at = (SELECT post.created_at FROM post WHERE post.id = evidence.post_pk)")
    for name, columns in _INDEXES:
        op.create_index(name, "evidence", columns)


def downgrade() -> None:
    for name, _ in reversed(_INDEXES):
        op.drop_index(name, table_name="evidence")
    with op.batch_alter_table("evidence") as batch:
        batch.drop_column("post_created_at")
