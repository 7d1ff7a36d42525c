"""Alembic migrations of the deepwatch schema; run them through `storage.migrate`, not by hand."""
