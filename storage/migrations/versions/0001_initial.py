"""The schema as deepwatch 0.1.0 (commit 24c7eea) shipped it, made then by `create_all`.

Written out explicitly, with the constraint and index names SQLAlchemy gives those models, so a
database made by that release and one made by this revision are the same and can be told apart
from later ones (`storage.migrate` stamps an unversioned database by comparing it with these).
Unique constraints stay unnamed, as they were: each database names them its own way.

Revision ID: 0001_initial
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("spec_sha256", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _utc("created_at"),
        _utc("updated_at"),
        sa.Column("last_report", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaign_name", "campaign", ["name"], unique=True)

    op.create_table(
        "sourcecursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("term", sa.String(), nullable=False),
        sa.Column("cursor", sa.String(), nullable=True),
        sa.Column("last_post_id", sa.String(), nullable=True),
        _utc("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "source", "term"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    )
    op.create_index("ix_sourcecursor_campaign_id", "sourcecursor", ["campaign_id"])

    op.create_table(
        "post",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("post_id", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(), nullable=True),
        sa.Column("hashtags", sa.JSON(), nullable=True),
        sa.Column("search_tags", sa.String(), nullable=False),
        _utc("created_at"),
        _utc("first_seen_at"),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("screenshot_sha256", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "post_id"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    )
    op.create_index("ix_post_account", "post", ["account"])
    op.create_index("ix_post_campaign_id", "post", ["campaign_id"])
    op.create_index("ix_post_platform", "post", ["platform"])

    op.create_table(
        "media",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("mime", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("phash", sa.String(), nullable=True),
        sa.Column("pdq", sa.String(), nullable=True),
        sa.Column("pdq_quality", sa.Integer(), nullable=True),
        sa.Column("frame_hashes", sa.JSON(), nullable=True),
        sa.Column("vpdq", sa.JSON(), nullable=True),
        _utc("first_seen_at"),
        sa.Column("duplicate_of", sa.String(), nullable=True),
        sa.Column("duplicate_distance", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=True),
        _utc("analysed_at", nullable=True),
        sa.Column("bank_case", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("sha256"),
        sa.ForeignKeyConstraint(["duplicate_of"], ["media.sha256"]),
    )
    op.create_index("ix_media_duplicate_of", "media", ["duplicate_of"])
    op.create_index("ix_media_pdq", "media", ["pdq"])
    op.create_index("ix_media_phash", "media", ["phash"])
    op.create_index("ix_media_verdict", "media", ["verdict"])

    op.create_table(
        "sighting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("media_sha256", sa.String(), nullable=False),
        sa.Column("post_pk", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("media_url", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _utc("seen_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("media_sha256", "post_pk", "media_url"),
        sa.ForeignKeyConstraint(["media_sha256"], ["media.sha256"]),
        sa.ForeignKeyConstraint(["post_pk"], ["post.id"]),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    )
    op.create_index("ix_sighting_campaign_id", "sighting", ["campaign_id"])
    op.create_index("ix_sighting_media_sha256", "sighting", ["media_sha256"])
    op.create_index("ix_sighting_post_pk", "sighting", ["post_pk"])

    op.create_table(
        "detection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("media_sha256", sa.String(), nullable=False),
        sa.Column("detector", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("model_key", sa.String(), nullable=False),
        sa.Column("model_id", sa.String(), nullable=True),
        sa.Column("model_revision", sa.String(), nullable=True),
        sa.Column("weights_digest", sa.String(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        _utc("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("media_sha256", "detector", "model_key"),
        sa.ForeignKeyConstraint(["media_sha256"], ["media.sha256"]),
    )
    op.create_index("ix_detection_media", "detection", ["media_sha256"])

    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("media_sha256", sa.String(), nullable=False),
        sa.Column("post_pk", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("post_id", sa.String(), nullable=False),
        sa.Column("post_url", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("media_url", sa.String(), nullable=False),
        _utc("captured_at"),
        sa.Column("screenshot_sha256", sa.String(), nullable=True),
        sa.Column("capture_html_sha256", sa.String(), nullable=True),
        sa.Column("phash", sa.String(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=True),
        sa.Column("matched_sha256", sa.String(), nullable=True),
        sa.Column("match_distance", sa.Float(), nullable=True),
        _utc("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("media_sha256", "post_pk"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["media_sha256"], ["media.sha256"]),
        sa.ForeignKeyConstraint(["post_pk"], ["post.id"]),
    )
    op.create_index("ix_evidence_campaign_id", "evidence", ["campaign_id"])
    op.create_index("ix_evidence_media_sha256", "evidence", ["media_sha256"])
    op.create_index("ix_evidence_platform", "evidence", ["platform"])
    op.create_index("ix_evidence_post_pk", "evidence", ["post_pk"])
    op.create_index("ix_evidence_score", "evidence", ["score"])
    op.create_index("ix_evidence_verdict", "evidence", ["verdict"])

    op.create_table(
        "takedownrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("packet_path", sa.String(), nullable=True),
        sa.Column("packet_sha256", sa.String(), nullable=True),
        _utc("created_at"),
        _utc("updated_at"),
        sa.Column("notes", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
    )
    op.create_index("ix_takedownrequest_evidence_id", "takedownrequest", ["evidence_id"])

    # storage/bank.py's table; that release made it when the bank was first opened.
    op.create_table(
        "bank_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signal", sa.String(), nullable=False),
        sa.Column("hash_hex", sa.String(), nullable=False),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("media_sha256", sa.String(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _utc("added_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signal", "hash_hex"),
    )
    op.create_index("ix_bank_entry_case_id", "bank_entry", ["case_id"])
    op.create_index("ix_bank_entry_media_sha256", "bank_entry", ["media_sha256"])
    op.create_index("ix_bank_entry_signal", "bank_entry", ["signal"])


def downgrade() -> None:
    for table in ("bank_entry", "takedownrequest", "evidence", "detection", "sighting", "media", "post",
                  "sourcecursor", "campaign"):
        op.drop_table(table)
