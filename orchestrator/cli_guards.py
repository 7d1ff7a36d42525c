"""Argument checks for CLI commands that write packets (issue 16, finding 9): an output path that
is a file, lies under a file or cannot be created, and ids past what the database holds, get an
error line naming the problem instead of a traceback."""
from __future__ import annotations

from pathlib import Path

from console.hardening import MAX_ID, valid_id


class ArgumentCheckError(ValueError):
    """A bad command-line argument; the message names it."""


def check_ids(ids: list[int], what: str = "evidence id") -> list[int]:
    for value in ids:
        if valid_id(value) is None:
            raise ArgumentCheckError(f"{str(value)[:30]} is not a valid {what}: use a whole number from 1 to {MAX_ID}")
    return list(ids)


def prepare_output_folder(out: Path) -> Path:
    """Create `out` (a new or empty folder) or say why it cannot be."""
    out = Path(out)
    for parent in reversed(out.parents):
        if parent.exists() and not parent.is_dir():
            raise ArgumentCheckError(f"cannot write to {out}: {parent} is a file, not a folder")
    if out.exists() and not out.is_dir():
        raise ArgumentCheckError(f"cannot write to {out}: it is an existing file; name a new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".deepwatch-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArgumentCheckError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return out
