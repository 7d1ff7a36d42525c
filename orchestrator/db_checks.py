"""Database URL checks before a command opens a store (issue 16, finding 7).

    check_database_url(url) -> str      the normalised URL, or DatabaseCheckError (bad scheme, a
                                        SQLite "database" that is some other file or a folder)
    check_existing_database(url)        also: it exists and holds deepwatch's schema

A mistyped --db used to create a new empty database and answer "nothing found"; a command that
reads evidence now refuses it. Only SQLite and PostgreSQL are supported, so `mysql://...` is
refused up front rather than failing on a missing driver mid-run.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from storage.db import normalise_url

SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
SQLITE_HEADER = b"SQLite format 3\x00"


class DatabaseCheckError(ValueError):
    """The database URL cannot be used; the message says why and what to do."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def sqlite_path(url: str) -> Path | None:
    """The file a sqlite URL names (None for in-memory databases)."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise DatabaseCheckError(f"{url!r}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
    path = rest[1:].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).expanduser()


def check_database_url(url: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise DatabaseCheckError("no database URL given")
    normal = normalise_url(url.strip())
    scheme = _scheme(normal)
    if scheme not in SCHEMES:
        raise DatabaseCheckError(f"unsupported database URL scheme {scheme!r} in {_redact(normal)!r}: "
                                 "deepwatch stores into SQLite (sqlite:///path) or PostgreSQL (postgresql://...)")
    if scheme == "sqlite":
        path = sqlite_path(normal)
        if path is not None and path.exists():
            if not path.is_file():
                raise DatabaseCheckError(f"{path} is not a file: a SQLite database is one regular file")
            with path.open("rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
            if head and head != SQLITE_HEADER:  # an empty file is what sqlite3 makes on first open
                raise DatabaseCheckError(f"{path} is not a SQLite database (refusing to write into another file)")
    return normal


def check_existing_database(url: str) -> str:
    """For commands that read evidence: the database must exist and be deepwatch's."""
    normal = check_database_url(url)
    if _scheme(normal) == "sqlite":
        path = sqlite_path(normal)
        if path is not None and (not path.exists() or path.stat().st_size == 0):
            raise DatabaseCheckError(f"no database at {path}: check --db or DEEPWATCH_DB "
                                     "(a campaign run creates it)")
    engine = sa.create_engine(normal)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseCheckError(f"cannot open database {_redact(normal)}: {exc.__class__.__name__}: "
                                 f"{str(exc).splitlines()[0][:300]}") from None
    finally:
        engine.dispose()
    if "alembic_version" not in tables or "evidence" not in tables:
        raise DatabaseCheckError(f"{_redact(normal)} is not a deepwatch database (no deepwatch tables): "
                                 "check --db or DEEPWATCH_DB")
    return normal


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("@")[-1]
