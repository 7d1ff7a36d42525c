"""Video parts of `bank import/export --signal vpdq` and `evidence similar VIDEO`.

cli.py's commands hand videos and vPDQ lists over to these functions, so the shared module
keeps only a one-line branch each.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table


def bank_import_vpdq(paths: list[Path], case: str, store: Any, console: Any, fail: Any) -> None:
    from storage.bank_video import VideoBank

    try:
        added, skipped = VideoBank(store).import_files(paths, case_id=case)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"imported {added} video(s) of vPDQ frames; {skipped} already banked")


def bank_export_vpdq(directory: Path, store: Any, console: Any) -> None:
    from storage.bank_video import VideoBank

    n = VideoBank(store).export_dir(directory)
    console.print(f"wrote {n} vPDQ file(s) under {directory}/<case>/")


def similar_video(data: bytes, name: str, store: Any, *, limit: int, as_json: bool, console: Any, fail: Any) -> None:
    """Stored videos and banked fakes that match a video, with the seconds where they align."""
    from detectors.hashing import MediaDecodeError
    from detectors.vpdq_sampling import dense_vpdq
    from storage.similar_video import similar_videos

    try:
        frames = dense_vpdq(data)
    except MediaDecodeError as exc:
        fail(f"{name}: {exc}")
    found = similar_videos(store, frames, limit=limit)
    plain = [f for f in frames if not f.cropped]  # cropped: the same frames inside static bars
    good = sum(f.quality >= 50 for f in plain)
    query = {"kind": "video", "frames": len(plain), "good_frames": good, "bars_cut": len(plain) < len(frames),
             "duration_s": plain[-1].t_s if plain else 0.0}
    if as_json:
        typer.echo(json.dumps({"query": query, **found}, indent=2, ensure_ascii=False, default=str))
        return
    table = Table(title=f"videos like {escape(name)} ({len(plain)} frames hashed, {good} usable)")
    for col in ("sha256", "shares", "where", "verdict", "bank case", "example post"):
        table.add_column(col)
    for r in found["matches"]:
        al = r["alignment"]
        table.add_row(r["sha256"][:16], f"{al['share_a']:.2f}/{al['share_b']:.2f}", escape(r["where"]),
                      str(r["verdict"] or "-"), escape(r["bank_case"] or ""), escape(str(r["example_post"] or "")))
    console.print(table)
    for hit in found["bank"]:
        console.print(f"[bold red]known fake[/]: {escape(hit['reason'])}")


__all__ = ["bank_export_vpdq", "bank_import_vpdq", "similar_video"]
