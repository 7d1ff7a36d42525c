"""`deepwatch db backup` / `restore`: one archive holding a consistent snapshot of the database
and of the blob store, portable between SQLite and PostgreSQL.

Archive (a .tar, or .tar.gz when the name ends in .gz or .tgz):

    db/<table>.jsonl   every row of every table, one JSON object a line, in primary-key order;
                       times as ISO 8601 UTC, JSON columns as JSON
    blobs/<sha256>     every blob, named by the sha256 of its bytes
    backup.json        created, deepwatch version, schema revision, row counts, blob count
    MANIFEST.sha256    "<sha256>  <member>" for every other member (the `sha256sum -c` format)

The rows are read in one read-only transaction (REPEATABLE READ on PostgreSQL, one read
transaction on SQLite's WAL), so a campaign writing meanwhile cannot tear the snapshot. Blobs are
copied after the rows: a blob is written before any row names it, so every blob the snapshot
refers to is already there, and blobs never change once written.

A restore checks the whole archive against its manifest before it writes anything, refuses a
database that holds rows (unless forced), and then, in one transaction, makes the schema at the
backup's revision, inserts the rows parents first, resets PostgreSQL's id sequences and upgrades
the schema to this deepwatch's head.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from storage import migrate
from storage.archive_limits import check_archive
from storage.blobs import BlobStore
from storage.db import Store, StorageError, as_utc, make_engine

FORMAT = "deepwatch-backup/1"
MANIFEST = "MANIFEST.sha256"
INFO = "backup.json"
_MEMBER = re.compile(r"^(backup\.json|MANIFEST\.sha256|db/[a-z_][a-z0-9_]*\.jsonl|blobs/[0-9a-f]{64})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_INSERT_BATCH = 500


class BackupError(StorageError):
    """A backup cannot be made or restored; the message names the problem."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    revision: str
    rows: dict[str, int]
    blobs: int
    size: int  # bytes of the archive
    damaged_blobs: list[str] = field(default_factory=list)  # blob files whose bytes no longer match their name


@dataclass(frozen=True)
class RestoreInfo:
    backup_revision: str
    revision: str  # the schema revision the database is at after the restore
    rows: dict[str, int]
    blobs_copied: int
    blobs_present: int  # already in the blob store with the right bytes


# -- backup --------------------------------------------------------------------------------------

def backup(store: Store, blobs_root: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> BackupInfo:
    """Write a backup of `store` and the blob store at `blobs_root` to `out_path` (.tar or .tar.gz).

    The archive appears under its name only once complete; an existing file is never overwritten."""
    out = Path(out_path).expanduser()
    if out.exists():
        raise BackupError(f"{out} already exists; choose a new name for the backup")
    blobs = Path(blobs_root).expanduser()
    if not blobs.is_dir():
        raise BackupError(f"blob store {blobs} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".backup-") as work:
        tables = Path(work) / "db"
        tables.mkdir()
        revision, rows = _dump_tables(store.engine, tables)
        partial = Path(work) / "archive.partial"
        manifest: dict[str, str] = {}
        with tarfile.open(partial, "w:gz" if _compressed(out) else "w") as tar:
            for name, count in rows.items():
                manifest[f"db/{name}.jsonl"] = _add_file(tar, f"db/{name}.jsonl", tables / f"{name}.jsonl")
            blob_count, damaged = 0, []
            for sha, path in _blob_files(blobs):
                digest = _sha256_file(path)
                if digest != sha:
                    damaged.append(sha)  # reported, not archived: a restore would refuse it anyway
                    continue
                manifest[f"blobs/{sha}"] = _add_file(tar, f"blobs/{sha}", path)
                blob_count += 1
            info = {
                "format": FORMAT,
                "created": datetime.now(timezone.utc).isoformat(),
                "deepwatch_version": _version(),
                "revision": revision,
                "source_dialect": store.engine.dialect.name,
                "rows": rows,
                "blobs": blob_count,
                "damaged_blobs": damaged,
            }
            manifest[INFO] = _add_bytes(tar, INFO, json.dumps(info, indent=2, ensure_ascii=False).encode())
            lines = "".join(f"{digest}  {name}\n" for name, digest in manifest.items())
            _add_bytes(tar, MANIFEST, lines.encode())
        os.replace(partial, out)
    return BackupInfo(path=out, revision=revision, rows=rows, blobs=blob_count, size=out.stat().st_size,
                      damaged_blobs=damaged)


def _dump_tables(engine: Engine, folder: Path) -> tuple[str, dict[str, int]]:
    """Every table's rows into folder/<table>.jsonl, all read in one snapshot."""
    rows: dict[str, int] = {}
    with _snapshot(engine) as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is None:
            raise BackupError("the database has no schema revision; open it with this deepwatch first")
        tables = sa.MetaData()
        tables.reflect(conn, only=lambda name, _: not migrate.is_search_index_table(name))
        for table in tables.sorted_tables:
            if table.name == migrate.VERSION_TABLE:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            result = conn.execute(sa.select(table).order_by(*order).execution_options(yield_per=1000))
            count = 0
            with open(folder / f"{table.name}.jsonl", "w", encoding="utf-8") as fh:
                for row in result.mappings():
                    fh.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                    count += 1
            rows[table.name] = count
    return revision, rows


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read-only transaction that sees a single state of the database."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Take the driver out of the way and open the read transaction ourselves; in WAL mode
            # its snapshot is fixed at the first read and writers carry on meanwhile.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.exec_driver_sql("ROLLBACK")
            return
        options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"}
        if conn.dialect.name == "postgresql":
            options["postgresql_readonly"] = True
        conn.execution_options(**options)
        with conn.begin() as txn:
            yield conn
            txn.rollback()


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise BackupError("binary columns are not supported by the backup format")
    return value


def _blob_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(sha256, path) of every blob in the store's two-level layout; temporary files are skipped."""
    for path in sorted(root.glob("??/??/*")):
        name = path.name
        if path.is_file() and _SHA256.match(name) and path.parent.name == name[2:4] and path.parent.parent.name == name[:2]:
            yield name, path


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> str:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mtime = int(path.stat().st_mtime)
    info.mode = 0o644
    with open(path, "rb") as fh:
        reader = _HashingReader(fh)
        tar.addfile(info, reader)
    return reader.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> str:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(datetime.now(timezone.utc).timestamp())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(data).hexdigest()


class _HashingReader:
    """A file wrapper that hashes exactly the bytes tarfile copies into the archive."""

    def __init__(self, fh: IO[bytes]):
        self._fh, self._hash = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# -- restore -------------------------------------------------------------------------------------

def restore(backup_path: str | os.PathLike[str], db_url: str, blobs_root: str | os.PathLike[str], *,
            force: bool = False) -> RestoreInfo:
    """Restore a backup into the database at `db_url` and the blob store at `blobs_root`.

    Refuses an archive that does not match its manifest before writing anything, and a database
    that already holds deepwatch rows unless `force` (which replaces them)."""
    path = Path(backup_path).expanduser()
    if not path.is_file():
        raise BackupError(f"backup {path} does not exist")
    check_archive(path, blobs_root=blobs_root)  # headers only: traversal, links, bombs (issue 16)
    info = verify_backup(path)
    revision = info["revision"]
    if revision not in migrate.known_revisions():
        raise BackupError(
            f"backup {path} is at schema revision {revision!r}, which this deepwatch does not know "
            "(made by a newer deepwatch); upgrade deepwatch to restore it"
        )
    engine = make_engine(db_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        try:
            with engine.connect() as conn:
                held = {name: n for name, n in _row_counts(conn).items() if n}
        except sa.exc.DBAPIError as exc:
            raise BackupError(f"cannot open database {where}: {exc.orig}") from exc
        if held and not force:
            found = ", ".join(f"{name}: {n}" for name, n in sorted(held.items()))
            raise BackupError(f"database {where} is not empty ({found}); restore into an empty database, "
                              "or force to replace what it holds")
        # Blobs first: they are immutable and named by content, so a copy the database never
        # comes to refer to (the restore below fails) is harmless, while the reverse is not.
        copied, present = _restore_blobs(path, BlobStore(blobs_root))
        try:
            with engine.connect() as conn, migrate.write_transaction(conn):
                _drop_our_tables(conn)
                migrate.upgrade(conn, revision)
                rows = _load_rows(conn, path, info["rows"])
                if conn.dialect.name == "postgresql":
                    _reset_sequences(conn)
                now = migrate.upgrade(conn, "head")
        except sa.exc.DBAPIError as exc:
            raise BackupError(f"restore into {where} failed and was rolled back, the database is as it was: "
                              f"{exc.orig}") from exc
    finally:
        engine.dispose()
    return RestoreInfo(backup_revision=revision, revision=now, rows=rows, blobs_copied=copied, blobs_present=present)


def verify_backup(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every member of the archive against MANIFEST.sha256; returns backup.json.

    Raises BackupError listing every problem: a changed, missing or unlisted member, or a member
    whose name or kind a deepwatch backup never has."""
    problems: list[str] = []
    digests: dict[str, str] = {}
    manifest_text: str | None = None
    info_bytes: bytes | None = None
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not _MEMBER.match(member.name):
                    problems.append(f"unexpected member {member.name!r}")
                    continue
                if member.name in digests or (member.name == MANIFEST and manifest_text is not None):
                    problems.append(f"member {member.name} appears twice")
                    continue
                fh = tar.extractfile(member)
                assert fh is not None
                if member.name == MANIFEST:
                    manifest_text = fh.read().decode("utf-8", "replace")
                    continue
                digest = hashlib.sha256()
                kept = bytearray()
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    if member.name == INFO:  # small; read again below once it is known good
                        kept += chunk
                digests[member.name] = digest.hexdigest()
                if member.name == INFO:
                    info_bytes = bytes(kept)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"backup {path} is not a readable tar archive: {exc}") from exc
    if manifest_text is None:
        raise BackupError(f"backup {path} has no {MANIFEST}")
    listed: dict[str, str] = {}
    for number, line in enumerate(manifest_text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or not _SHA256.match(digest):
            problems.append(f"{MANIFEST} line {number} is malformed: {line!r}")
            continue
        listed[name] = digest
    for name, digest in sorted(digests.items()):
        if name not in listed:
            problems.append(f"member {name} is not in {MANIFEST}")
        elif listed[name] != digest:
            problems.append(f"member {name} was changed: sha256 {digest}, manifest says {listed[name]}")
        elif name.startswith("blobs/") and digest != name.split("/", 1)[1]:
            problems.append(f"member {name} does not hold the bytes its name says (sha256 {digest})")
    for name in sorted(set(listed) - set(digests)):
        problems.append(f"member {name} is in {MANIFEST} but missing from the archive")
    if problems:
        raise BackupError(f"backup {path} does not match its manifest: " + "; ".join(problems))
    if info_bytes is None:
        raise BackupError(f"backup {path} has no {INFO}")
    try:
        info = json.loads(info_bytes)
    except ValueError as exc:
        raise BackupError(f"backup {path}: {INFO} is not JSON: {exc}") from exc
    found = info.get("format") if isinstance(info, dict) else None
    if found != FORMAT:
        raise BackupError(f"backup {path} has format {found!r}; this deepwatch reads {FORMAT!r}")
    missing = sorted(t for t in info.get("rows", {}) if f"db/{t}.jsonl" not in digests)
    if missing:
        raise BackupError(f"backup {path} lists tables it does not hold: {', '.join(missing)}")
    return info


def _row_counts(conn: Connection) -> dict[str, int]:
    ours = migrate.known_tables()
    present = [t for t in sa.inspect(conn).get_table_names() if t in ours]
    return {t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one() for t in present}


def _drop_our_tables(conn: Connection) -> None:
    """Remove deepwatch's tables (empty, or forced) so the schema is made at the backup's revision."""
    ours = migrate.known_tables() | {migrate.VERSION_TABLE}
    if conn.dialect.name == "sqlite":  # the keyword index (drops its shadow tables too); remade by 0005
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{migrate.SEARCH_INDEX_TABLE}"')
    present = [t for t in sa.inspect(conn).get_table_names() if t in ours]
    if present:
        tables = sa.MetaData()
        tables.reflect(conn, only=present)
        tables.drop_all(conn)


def _load_rows(conn: Connection, archive: Path, expected: dict[str, int]) -> dict[str, int]:
    tables = sa.MetaData()
    tables.reflect(conn, only=lambda name, _: not migrate.is_search_index_table(name))
    unknown = sorted(set(expected) - set(tables.tables))
    if unknown:
        raise BackupError(f"backup holds tables the schema at its revision lacks: {', '.join(unknown)}")
    loaded: dict[str, int] = {}
    with tarfile.open(archive, "r:*") as tar:
        for table in tables.sorted_tables:
            if table.name not in expected:
                continue
            fh = tar.extractfile(f"db/{table.name}.jsonl")
            assert fh is not None
            rows = (_decode_row(table, json.loads(line)) for line in _bounded_lines(fh, table.name) if line.strip())
            if _self_references(table):
                rows = iter(_parents_first(table, list(rows)))
            _prefer_sql_null(table)
            count = 0
            for batch in _batches(rows, _INSERT_BATCH):
                conn.execute(table.insert(), batch)
                count += len(batch)
            if count != expected[table.name]:
                raise BackupError(f"db/{table.name}.jsonl holds {count} rows, backup.json says {expected[table.name]}")
            loaded[table.name] = count
    return loaded


def _bounded_lines(fh: IO[bytes], name: str) -> Iterator[str]:
    """The lines of a table file, refusing one longer than any row (a line-sized memory bomb)."""
    from storage.archive_limits import MAX_LINE_BYTES

    while line := fh.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES:
            raise BackupError(f"db/{name}.jsonl has a line over {MAX_LINE_BYTES:,} bytes; no row is that long")
        yield line.decode("utf-8")


def _decode_row(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(row) - set(table.columns.keys()))
    if unknown:
        raise BackupError(f"table {table.name} has no column(s) {', '.join(unknown)} at the backup's revision")
    out = {}
    for name, value in row.items():
        if value is not None and isinstance(table.columns[name].type, sa.DateTime):
            value = datetime.fromisoformat(value).astimezone(timezone.utc)
        out[name] = value
    return out


def _prefer_sql_null(table: sa.Table) -> None:
    """A None read from a JSON column goes back as SQL NULL, not the JSON literal null."""
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            column.type.none_as_null = True


def _self_references(table: sa.Table) -> list[tuple[str, str]]:
    """(child column, parent column) of each foreign key from a table to itself."""
    return [(fk.parent.name, fk.column.name) for fk in table.foreign_keys if fk.column.table.name == table.name]


def _parents_first(table: sa.Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order rows so a row referring to another row of the same table (media.duplicate_of)
    comes after it: foreign keys are checked as each row goes in."""
    links = _self_references(table)
    placed: set[tuple[str, Any]] = set()
    ordered: list[dict[str, Any]] = []
    waiting = rows
    while waiting:
        still: list[dict[str, Any]] = []
        for row in waiting:
            if all(row.get(child) is None or (parent, row[child]) in placed for child, parent in links):
                ordered.append(row)
                placed.update((parent, row.get(parent)) for _, parent in links)
            else:
                still.append(row)
        if len(still) == len(waiting):
            raise BackupError(f"table {table.name}: rows refer to rows of the same table that are not in the backup")
        waiting = still
    return ordered


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _reset_sequences(conn: Connection) -> None:
    """Rows went in with their ids; move each id sequence past the largest so new inserts work."""
    for table in sa.inspect(conn).get_table_names():
        for column in sa.inspect(conn).get_pk_constraint(table)["constrained_columns"]:
            sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}).scalar()
            if sequence:
                conn.execute(
                    sa.text(f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)'),
                    {"s": sequence},
                )


def _restore_blobs(archive: Path, blobs: BlobStore) -> tuple[int, int]:
    """Copy every blob into the store, checking each one's sha256 as it is written."""
    copied = present = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            if not member.name.startswith("blobs/"):
                continue
            sha = member.name.split("/", 1)[1]
            target = blobs.path(sha)
            if target.exists() and _sha256_file(target) == sha:
                present += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, tar.extractfile(member) as src:  # type: ignore[union-attr]
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if digest.hexdigest() != sha:
                    raise BackupError(f"blob {sha} changed while it was restored (sha256 {digest.hexdigest()})")
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            copied += 1
    return copied, present


# -- helpers -------------------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _compressed(path: Path) -> bool:
    return path.name.endswith((".gz", ".tgz"))


def _version() -> str:
    try:
        return pkg_metadata.version("deepwatch")
    except pkg_metadata.PackageNotFoundError:
        return "unknown"
