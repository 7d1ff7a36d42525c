"""Indexes for the console's evidence gallery at a million rows, and a text index for its keyword.

The gallery lists evidence newest first by (created_at, id), filtered by campaign, platform,
account, verdict or review status: one composite index per filter, "<filter>, created_at, id",
lets a page be read by walking that index and stopping after a page of rows, at any depth
(keyset paging). since/until are on the post's time: `post.created_at` gets an index too.

Keyword (a substring of post text or hashtags, any script):
- PostgreSQL: pg_trgm GIN indexes on post.text and post.search_tags, which serve ILIKE '%...%'.
  pg_trgm is a trusted extension, so the database's owner may create it.
- SQLite: an FTS5 table with the trigram tokenizer (`gallery_fts`), external content (it indexes
  `post` without a second copy of the text), kept in step with `post` by triggers; it is filled
  from the posts already there when this revision runs.

None of these objects is in storage/models.py (they are read-path indexes, not schema the code
writes through): every name starts with "ix_gallery_" or "gallery_fts", so the model comparison
and the backup can tell them apart. The FTS table holds nothing of its own: a backup need not
carry it, and restoring posts re-fills it through the triggers.

Revision ID: 0005_gallery_search
Revises: 0004_console_accounts
"""
from __future__ import annotations

from alembic import op

revision = "0005_gallery_search"
down_revision = "0004_console_accounts"
branch_labels = None
depends_on = None

# (index name, table, columns): filter first, then the gallery's order.
_INDEXES = [
    ("ix_gallery_evidence_recent", "evidence", ["created_at", "id"]),
    ("ix_gallery_evidence_campaign", "evidence", ["campaign_id", "created_at", "id"]),
    ("ix_gallery_evidence_platform", "evidence", ["platform", "created_at", "id"]),
    ("ix_gallery_evidence_account", "evidence", ["account", "created_at", "id"]),
    ("ix_gallery_evidence_verdict", "evidence", ["verdict", "created_at", "id"]),
    ("ix_gallery_evidence_review", "evidence", ["review_status", "created_at", "id"]),
    # A campaign's reviewed (or dismissed) items are few: reading them by this index beats walking
    # every post of a date window for them (1M rows, SQLite: 107 ms -> see docs/benchmarks.md).
    ("ix_gallery_evidence_campaign_review", "evidence", ["campaign_id", "review_status", "created_at", "id"]),
    ("ix_gallery_post_created", "post", ["created_at"]),
]

_PG_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_gallery_post_text_trgm ON post USING gin (text gin_trgm_ops)",
    "CREATE INDEX ix_gallery_post_tags_trgm ON post USING gin (search_tags gin_trgm_ops)",
]
# The extension stays on downgrade: other objects in the database may use it.
_PG_DOWN = [
    "DROP INDEX IF EXISTS ix_gallery_post_tags_trgm",
    "DROP INDEX IF EXISTS ix_gallery_post_text_trgm",
]

_SQLITE_UP = [
    """CREATE VIRTUAL TABLE gallery_fts USING fts5(
           text, search_tags, content='post', content_rowid='id', tokenize='trigram')""",
    # External content: FTS5 needs the old values to remove a row from its index.
    """CREATE TRIGGER gallery_fts_after_insert AFTER INSERT ON post BEGIN
           INSERT INTO gallery_fts(rowid, text, search_tags) VALUES (new.id, new.text, new.search_tags);
       END""",
    """CREATE TRIGGER gallery_fts_after_delete AFTER DELETE ON post BEGIN
           INSERT INTO gallery_fts(gallery_fts, rowid, text, search_tags)
               VALUES ('delete', old.id, old.text, old.search_tags);
       END""",
    """CREATE TRIGGER gallery_fts_after_update AFTER UPDATE OF id, text, search_tags ON post BEGIN
           INSERT INTO gallery_fts(gallery_fts, rowid, text, search_tags)
               VALUES ('delete', old.id, old.text, old.search_tags);
           INSERT INTO gallery_fts(rowid, text, search_tags) VALUES (new.id, new.text, new.search_tags);
       END""",
    "INSERT INTO gallery_fts(gallery_fts) VALUES ('rebuild')",  # the posts already stored
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS gallery_fts_after_update",
    "DROP TRIGGER IF EXISTS gallery_fts_after_delete",
    "DROP TRIGGER IF EXISTS gallery_fts_after_insert",
    "DROP TABLE IF EXISTS gallery_fts",
]


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)
    dialect = op.get_bind().dialect.name
    for statement in _PG_UP if dialect == "postgresql" else _SQLITE_UP if dialect == "sqlite" else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _PG_DOWN if dialect == "postgresql" else _SQLITE_DOWN if dialect == "sqlite" else []:
        op.execute(statement)
    for name, table, _ in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
