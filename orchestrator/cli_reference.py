"""`deepwatch reference ...`: the library of authentic originals items are compared with."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli import BlobsOpt, DbOpt, _blobs, _fail, _open_store, app, console

reference_app = typer.Typer(help="Authentic originals (official media) that copies are compared with.",
                            no_args_is_help=True)
app.add_typer(reference_app, name="reference")


def _library(db: Optional[str], blobs: Optional[str], *, new_ok: bool = False) -> Any:
    """`new_ok`: adding references may start a new database (as `bank import` may); reading
    and removing refuse a missing one (issue 16: a mistyped --db is an error)."""
    from storage.blobs import BlobStoreError, open_blobs
    from storage.references import ReferenceLibrary

    try:
        return ReferenceLibrary(_open_store(db, new_ok=new_ok), open_blobs(_blobs(blobs)))
    except (BlobStoreError, ValueError) as exc:
        _fail(str(exc))


def _read(item: str, fetcher_box: list) -> tuple[bytes, str | None]:
    """The bytes of a file or URL; raises ValueError naming the problem."""
    if item.startswith(("http://", "https://")):
        from agents.base import Drop, MediaRef
        from agents.fetch import FetchPolicy, Fetcher

        if not fetcher_box:
            fetcher_box.append(Fetcher(FetchPolicy()))
        got = fetcher_box[0].fetch_media(MediaRef(url=item, kind="image"))
        if isinstance(got, Drop):
            raise ValueError(f"{item}: could not fetch: {got.reason} {got.detail}".rstrip())
        return got[0], got[1]
    path = Path(item)
    try:
        return path.read_bytes(), None
    except OSError as exc:
        raise ValueError(f"{item}: cannot read file: {exc.strerror or exc}") from None


def _add_all(library: Any, items: list[str], *, owner: str, source: Optional[str], note: str,
             set_name: str) -> int:
    fetchers: list = []
    failures = 0
    try:
        for item in items:
            try:
                data, mime = _read(item, fetchers)
                # A URL is its own source unless one was given.
                src = source or (item if item.startswith(("http://", "https://")) else "")
                row, created = library.add(data, owner=owner, source_url=src, note=note, set_name=set_name,
                                           declared_mime=mime)
            except ValueError as exc:
                failures += 1
                console.print(f"[red]skipped[/] {item}: {exc}", highlight=False)
                continue
            state = "added" if created else "already in the library as"
            console.print(f"{state} {row.label} {row.kind} {row.sha256[:12]} ({row.owner}) <- {item}", highlight=False)
    finally:
        for f in fetchers:
            f.close()
    return failures


@reference_app.command("add")
def reference_add(
    items: list[str] = typer.Argument(..., help="Files or URLs of authentic originals"),
    owner: str = typer.Option(..., "--owner", help="Who vouches for them (e.g. 'Candidate Kim, official channel')"),
    source: Optional[str] = typer.Option(None, "--source", help="Where the originals were published"),
    note: str = typer.Option("", "--note"),
    set_name: str = typer.Option("", "--set", help="A named set campaigns can select (references: [SET])"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Add authentic originals to the reference library."""
    if not owner.strip():
        _fail("--owner must name who vouches for the originals")
    failures = _add_all(_library(db, blobs, new_ok=True), items, owner=owner, source=source, note=note, set_name=set_name)
    if failures:
        _fail(f"{failures} of {len(items)} input(s) could not be added", code=1)


@reference_app.command("import")
def reference_import(
    folder: Path = typer.Argument(..., help="Folder of originals (searched recursively)"),
    owner: str = typer.Option(..., "--owner"),
    source: Optional[str] = typer.Option(None, "--source"),
    note: str = typer.Option("", "--note"),
    set_name: str = typer.Option("", "--set"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Add every image and video under a folder."""
    from storage.references import files_in

    try:
        files = files_in(folder)
    except ValueError as exc:
        _fail(str(exc))
    if not files:
        _fail(f"{folder}: no image or video files found")
    failures = _add_all(_library(db, blobs, new_ok=True), [str(p) for p in files], owner=owner, source=source, note=note,
                        set_name=set_name)
    console.print(f"{len(files) - failures} of {len(files)} file(s) in the library")
    if failures:
        raise typer.Exit(1)


@reference_app.command("list")
def reference_list(
    set_name: Optional[str] = typer.Option(None, "--set"),
    owner: Optional[str] = typer.Option(None, "--owner"),
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """List the references."""
    rows = _library(db, blobs).list(set_name=set_name, owner=owner)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print("no references")
        return
    for r in rows:
        size = f"{r.width}x{r.height}" + (f", {r.duration_s:.1f} s" if r.duration_s else "")
        console.print(f"{r.label:>5}  {r.kind:5}  {r.sha256[:12]}  {size:16}  {r.owner}"
                      f"{'  [' + r.set_name + ']' if r.set_name else ''}  {r.source_url}", highlight=False)


@reference_app.command("show")
def reference_show(
    ref: str = typer.Argument(..., help="Reference id (R3 or 3) or sha256 prefix"),
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Show one reference and the hashes it is matched by."""
    library = _library(db, blobs)
    try:
        row = library.get(ref)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    hashes = library.hashes(row.id)
    data = {**row.to_dict(), "hashes": [{"region": h.region, "t_s": h.t_s, "pdq": h.pdq, "quality": h.quality}
                                        for h in hashes]}
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for key in ("label", "kind", "mime", "sha256", "owner", "source_url", "note", "set", "width", "height",
                "duration_s", "created_at"):
        if data[key] not in ("", None):
            console.print(f"{key:>11}: {data[key]}", highlight=False)
    console.print(f"{'hashes':>11}: {len(hashes)} PDQ ({', '.join(sorted({h.region for h in hashes}))})")


@reference_app.command("remove")
def reference_remove(
    ref: str = typer.Argument(..., help="Reference id (R3 or 3) or sha256 prefix"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Take a reference out of the library (its bytes stay in the blob store for evidence citing it)."""
    try:
        row = _library(db, blobs).remove(ref)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    console.print(f"removed {row.label} ({row.owner}) {row.sha256[:12]}", highlight=False)


@reference_app.command("rescan")
def reference_rescan(
    set_name: Optional[list[str]] = typer.Option(None, "--set", help="Only these reference sets (repeatable)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Stop after this many items"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Compare every stored item not yet compared with the reference library."""
    from orchestrator.references_hook import rescan_references

    library = _library(db, blobs)
    counts = rescan_references(library.store, library.blobs, set_names=set_name or None, limit=limit)
    console.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()), highlight=False)
