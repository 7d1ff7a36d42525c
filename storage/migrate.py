"""Schema migrations: bring any deepwatch database to the schema this code expects.

The migrations live in `storage/migrations` (Alembic, configured here in code, so an installed
deepwatch needs no alembic.ini). `upgrade` handles three kinds of database:

- empty: every revision runs, up to head;
- made by an earlier deepwatch with `create_all` (no `alembic_version` table): its tables and
  columns are compared with the schema each revision makes, the one it matches is stamped, and
  the later revisions run. Nothing is re-created, so every row stays;
- made by a newer deepwatch (a revision this code does not know): refused with a clear error,
  since this code would misread tables it does not understand.

An upgrade runs in one transaction holding the database's write lock (an advisory lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite, whose DDL is transactional too once the driver stops
managing transactions), so two processes opening a new database at once do not both create it,
and a migration that fails half-way leaves the database as it was.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from storage.db import StorageError, make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock upgrades take.
_PG_LOCK_KEY = 0x64656570_77617463  # "deepwatc"
# Made lazily by the bank in the first release, so an old database may lack it.
_OPTIONAL_LEGACY_TABLES = frozenset({"bank_entry"})

Target = Engine | Connection | str

# Migration 0005's SQLite keyword index: an FTS5 table and the shadow tables FTS5 keeps for it.
# They hold nothing of their own (triggers derive every entry from `post`), so they are not
# deepwatch tables: not compared, not counted, not backed up; restoring posts re-fills them.
SEARCH_INDEX_TABLE = "gallery_fts"


def is_search_index_table(name: str) -> bool:
    return name == SEARCH_INDEX_TABLE or name.startswith(SEARCH_INDEX_TABLE + "_")


class MigrationError(StorageError):
    """The database's schema cannot be brought to the one this code expects."""


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS}"
    return head


def known_revisions() -> list[str]:
    """Every revision this code has, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def known_tables() -> frozenset[str]:
    """The names of deepwatch's tables at head (alembic_version aside)."""
    return frozenset(_schema_at(head_revision()))


def current_revision(target: Target) -> str | None:
    """The revision stamped in the database (None: unversioned or empty)."""
    with _connected(target) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(target: Target, revision: str = "head") -> str:
    """Bring the database to `revision` (default: head) and return the revision it is at.

    `target` may be a URL, an Engine, or a Connection already inside a transaction (the caller
    then owns that transaction, as `storage.backup.restore` does)."""
    if isinstance(target, Connection):
        return _upgrade_in(target, revision, _describe(target))
    with _connected(target) as conn:
        # Nearly every open finds the database current: say so without taking the write lock,
        # so opening a database that a campaign is writing (or a read-only copy) never waits.
        wanted = head_revision() if revision == "head" else revision
        if MigrationContext.configure(conn).get_current_revision() == wanted:
            conn.rollback()
            return wanted
        conn.rollback()
    with _connected(target) as conn, _write_transaction(conn):
        return _upgrade_in(conn, revision, _describe(conn))


def _upgrade_in(conn: Connection, revision: str, where: str) -> str:
    known = known_revisions()
    wanted = head_revision() if revision == "head" else revision
    if wanted not in known:
        raise MigrationError(f"unknown schema revision {wanted!r}; this deepwatch knows {', '.join(known)}")
    current = MigrationContext.configure(conn).get_current_revision()
    if current is not None and current not in known:
        raise MigrationError(
            f"database {where} is at schema revision {current!r}, which this deepwatch does not know "
            f"(it knows up to {known[-1]!r}): it was made by a newer deepwatch; upgrade deepwatch to open it"
        )
    if current is None:
        current = _stamp_unversioned(conn, where)
    if current == wanted:
        return current
    if current is not None and known.index(current) > known.index(wanted):
        raise MigrationError(
            f"database {where} is at schema revision {current!r}, newer than the requested {wanted!r}; "
            "deepwatch does not downgrade databases"
        )
    command.upgrade(alembic_config(conn), wanted)
    return wanted


# -- databases made before migrations existed ---------------------------------------------------

def _stamp_unversioned(conn: Connection, where: str) -> str | None:
    """Stamp a `create_all` database with the revision its tables match; None when it holds no
    deepwatch table (a new database)."""
    present = _our_tables(conn)
    if not present:
        return None
    revision = _matching_revision(present, where)
    missing_optional = set(_schema_at(revision)) - set(present)
    if missing_optional:
        # The first release created bank_entry only once the bank was opened: add it now, as
        # revision 0001 defines it, so the stamp tells the truth.
        from storage.bank import BankEntry

        BankEntry.__table__.create(conn, checkfirst=True)
    command.stamp(alembic_config(conn), revision)
    return revision


def _our_tables(conn: Connection) -> dict[str, set[str]]:
    """deepwatch's tables in the database, each with its column names."""
    ours = known_tables()
    inspector = sa.inspect(conn)
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names() if t in ours}


def _matching_revision(present: dict[str, set[str]], where: str) -> str:
    differences: list[tuple[int, str, list[str]]] = []
    for revision in reversed(known_revisions()):
        expected = _schema_at(revision)
        problems = []
        for table in sorted(set(expected) - set(present) - _OPTIONAL_LEGACY_TABLES):
            problems.append(f"table {table} missing")
        for table in sorted(set(present) - set(expected)):
            problems.append(f"table {table} not expected")
        for table in sorted(set(present) & set(expected)):
            for col in sorted(expected[table] - present[table]):
                problems.append(f"column {table}.{col} missing")
            for col in sorted(present[table] - expected[table]):
                problems.append(f"column {table}.{col} not expected")
        if not problems:
            return revision
        differences.append((len(problems), revision, problems))
    _, closest, problems = min(differences)
    raise MigrationError(
        f"database {where} has deepwatch tables but no {VERSION_TABLE} table, and matches no schema this "
        f"deepwatch knows; closest is {closest}: {'; '.join(problems)}"
    )


@functools.lru_cache(maxsize=None)
def _schema_at(revision: str) -> dict[str, frozenset[str]]:
    """{table: column names} as the migrations leave an empty database at `revision` (worked out
    once per process on an in-memory SQLite database, so the migrations are the only definition)."""
    engine = sa.create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
            inspector = sa.inspect(conn)
            return {
                t: frozenset(c["name"] for c in inspector.get_columns(t))
                for t in inspector.get_table_names() if t != VERSION_TABLE and not is_search_index_table(t)
            }
    finally:
        engine.dispose()


# -- connections and the write lock -------------------------------------------------------------

@contextmanager
def _connected(target: Target) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
        return
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        if isinstance(target, str):
            engine.dispose()


@contextmanager
def write_transaction(conn: Connection) -> Iterator[Connection]:
    """One transaction that holds the database's write lock from the start and covers DDL too."""
    with _write_transaction(conn):
        yield conn


@contextmanager
def _write_transaction(conn: Connection) -> Iterator[None]:
    if conn.dialect.name == "sqlite":
        # The sqlite3 driver commits on its own around DDL; with its transaction handling off
        # (AUTOCOMMIT here) the explicit BEGIN IMMEDIATE makes everything one transaction and
        # takes the write lock now, so a second upgrader waits instead of racing.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")
        return
    with conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield


def _describe(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)
