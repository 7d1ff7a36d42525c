"""Evidence that holds up: capture, review and legal columns on `evidence`, the tracked takedown
columns on `takedownrequest`, and the custody log, reviews, seals and liveness checks.

New NOT NULL columns carry server defaults so rows made by earlier versions get a value, and
raw SQL inserts that predate them still work. Adding a column (even NOT NULL with a default) is a
plain ALTER on SQLite as well, so no table is copied on upgrade.

Revision ID: 0003_evidence_integrity
Revises: 0002_media_task
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_evidence_integrity"
down_revision = "0002_media_task"
branch_labels = None
depends_on = None


def _evidence_columns() -> list[sa.Column]:
    return [
        sa.Column("wacz_sha256", sa.String(), nullable=True),
        sa.Column("working_sha256", sa.String(), nullable=True),
        sa.Column("capture_ip", sa.String(), nullable=True),
        sa.Column("capture_tool", sa.String(), nullable=True),
        sa.Column("capture_operator", sa.String(), nullable=True),
        sa.Column("capture_headers", sa.JSON(), nullable=True, server_default=sa.text("'{}'")),
        sa.Column("review_status", sa.String(), nullable=False, server_default="unreviewed"),
        sa.Column("in_ban_window", sa.Boolean(), nullable=True),
        sa.Column("ai_label_present", sa.Boolean(), nullable=True),
        sa.Column("campaign_purpose", sa.Boolean(), nullable=True),
        sa.Column("legal_notes", sa.Text(), nullable=False, server_default=""),
    ]


def _takedown_columns() -> list[sa.Column]:
    return [
        sa.Column("evidence_ids", sa.JSON(), nullable=True, server_default=sa.text("'[]'")),
        sa.Column("legal_basis", sa.String(), nullable=True),
        sa.Column("sender", sa.String(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    for column in _evidence_columns():
        op.add_column("evidence", column)
    op.create_index("ix_evidence_review_status", "evidence", ["review_status"])

    for column in _takedown_columns():
        op.add_column("takedownrequest", column)
    op.create_index("ix_takedownrequest_status", "takedownrequest", ["status"])
    # A notice of the earlier release was about exactly one record: say so in the new list.
    array = "json_build_array" if op.get_bind().dialect.name == "postgresql" else "json_array"
    op.execute(f"UPDATE takedownrequest SET evidence_ids = {array}(evidence_id)")

    op.create_table(
        "custodyevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
    )
    op.create_index("ix_custodyevent_evidence_id", "custodyevent", ["evidence_id"])

    op.create_table(
        "review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
    )
    op.create_index("ix_review_evidence_id", "review", ["evidence_id"])

    op.create_table(
        "seal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.Column("record_sha256", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("public_key", sa.String(), nullable=False),
        sa.Column("tsa_url", sa.String(), nullable=True),
        sa.Column("tsa_token", sa.String(), nullable=True),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
    )
    op.create_index("ix_seal_evidence_id", "seal", ["evidence_id"])

    op.create_table(
        "livenesscheck",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
    )
    op.create_index("ix_livenesscheck_evidence_id", "livenesscheck", ["evidence_id"])


def downgrade() -> None:
    for table in ("livenesscheck", "seal", "review", "custodyevent"):
        op.drop_table(table)
    op.drop_index("ix_takedownrequest_status", table_name="takedownrequest")
    op.drop_index("ix_evidence_review_status", table_name="evidence")
    # SQLite (3.35+) drops plain columns in place; batch mode would copy the tables that other
    # tables' foreign keys point at.
    for column in _takedown_columns():
        op.drop_column("takedownrequest", column.name)
    for column in _evidence_columns():
        op.drop_column("evidence", column.name)
