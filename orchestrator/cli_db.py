"""`deepwatch db`: schema migrations, consistent backups and restores of database and blobs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from orchestrator.cli import BlobsOpt, DbOpt, _blobs, _db, _fail, _open_store, app, console

db_app = typer.Typer(help="The evidence database: migrations, backup and restore.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: Optional[str] = DbOpt) -> None:
    """Bring the database schema up to this version of deepwatch (every row is kept)."""
    from storage.db import StorageError, make_engine
    from storage.migrate import current_revision, upgrade

    engine = make_engine(_db(db))
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    except StorageError as exc:
        _fail(str(exc), code=1)
    finally:
        engine.dispose()
    shown = engine.url.render_as_string(hide_password=True)
    console.print(f"database {shown}: " + (f"already at {after}" if before == after else f"revision {before} -> {after}"))


@db_app.command("current")
def db_current(db: Optional[str] = DbOpt) -> None:
    """The schema revision of the database and the one this deepwatch expects."""
    from storage.db import make_engine
    from storage.migrate import current_revision, head_revision

    engine = make_engine(_db(db))
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    note = "" if current == head else "  (behind: run 'deepwatch db upgrade')"
    console.print(f"current {current or 'none'}, head {head}{note}")


@db_app.command("backup")
def db_backup(out: Path = typer.Argument(..., help="A new .tar or .tar.gz file"),
              db: Optional[str] = DbOpt, blobs: Optional[str] = BlobsOpt) -> None:
    """A consistent snapshot of the database and every blob, with a sha256 manifest."""
    from storage.backup import BackupError, backup

    try:
        info = backup(_open_store(db), _blobs(blobs), out)
    except BackupError as exc:
        _fail(str(exc), code=1)
    rows = ", ".join(f"{t} {n}" for t, n in sorted(info.rows.items()) if n)
    console.print(f"backup {info.path} ({info.size:,} bytes), revision {info.revision}: {info.blobs} blobs; rows: {rows}",
                  highlight=False)
    if info.damaged_blobs:
        console.print(f"[bold red]warning:[/] {len(info.damaged_blobs)} blob(s) no longer match their sha256 and were "
                      "left out: " + ", ".join(info.damaged_blobs))
        raise typer.Exit(1)


@db_app.command("restore")
def db_restore(backup_path: Path = typer.Argument(..., help="A backup made by 'deepwatch db backup'"),
               force: bool = typer.Option(False, "--force", help="Replace a database that already holds data"),
               db: Optional[str] = DbOpt, blobs: Optional[str] = BlobsOpt) -> None:
    """Restore a backup into a database (SQLite or PostgreSQL, either way) and a blob store."""
    from storage.backup import BackupError, restore

    try:
        info = restore(backup_path, _db(db), _blobs(blobs), force=force)
    except BackupError as exc:
        _fail(str(exc), code=1)
    rows = ", ".join(f"{t} {n}" for t, n in sorted(info.rows.items()) if n)
    console.print(f"restored revision {info.backup_revision} -> {info.revision}; rows: {rows}; "
                  f"blobs copied {info.blobs_copied}, already present {info.blobs_present}", highlight=False)


@db_app.command("verify-backup")
def db_verify_backup(backup_path: Path = typer.Argument(...)) -> None:
    """Check a backup's manifest without restoring it; exits 1 on any problem."""
    from storage.backup import BackupError, verify_backup

    try:
        meta = verify_backup(backup_path)
    except BackupError as exc:
        _fail(str(exc), code=1)
    console.print(f"ok: revision {meta.get('revision')}, {sum(meta.get('rows', {}).values())} rows, "
                  f"{meta.get('blobs')} blobs", highlight=False)
