"""Limits a backup archive must keep before `db restore` reads it (issue 16, finding 10).

    check_archive(path, blobs_root=..., limits=None) -> None   BackupError naming every problem

Reads only the tar headers (no member data), so it is cheap and runs first. What it refuses:
names that are absolute, climb out with '..', or are not a deepwatch backup's; links, devices and
anything but a regular file (a link could point a later read or write outside the target); members
bigger than a backup ever holds; and an archive that unpacks to far more than it weighs (a
compression bomb) or to more than the blob store's disk has free.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 5_000_000
    max_info_bytes: int = 1 << 20  # backup.json
    max_manifest_bytes: int = 1 << 30  # MANIFEST.sha256: ~100 bytes per member
    max_table_bytes: int = 64 << 30  # one db/<table>.jsonl
    max_blob_bytes: int = 4 << 30  # one media file
    max_ratio: float = 1000.0  # unpacked bytes per archive byte, beyond what JSON and media compress to
    ratio_floor_bytes: int = 256 << 20  # small archives may compress as well as they like


DEFAULT_LIMITS = ArchiveLimits()
MAX_LINE_BYTES = 256 << 20  # one row of db/<table>.jsonl


def _bad_name(name: str) -> str | None:
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        return "an absolute path"
    if ".." in path.parts:
        return "a path climbing out with '..'"
    if "\\" in name or "\x00" in name:
        return "a name with a backslash or NUL"
    return None


def _limit_for(name: str, limits: ArchiveLimits) -> int:
    if name == "backup.json":
        return limits.max_info_bytes
    if name == "MANIFEST.sha256":
        return limits.max_manifest_bytes
    if name.startswith("db/"):
        return limits.max_table_bytes
    return limits.max_blob_bytes


def check_archive(path: str | os.PathLike[str], *, blobs_root: str | os.PathLike[str] | None = None,
                  limits: ArchiveLimits | None = None) -> None:
    from storage.backup import BackupError  # storage.backup imports this module

    limits = limits or DEFAULT_LIMITS

    archive = Path(path)
    problems: list[str] = []
    total = count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                count += 1
                if count > limits.max_members:
                    problems.append(f"more than {limits.max_members:,} members")
                    break
                bad = _bad_name(member.name)
                if bad:
                    problems.append(f"member {member.name[:200]!r} has {bad}")
                    continue
                if not member.isfile():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    problems.append(f"member {member.name[:200]!r} is {kind}")
                    continue
                limit = _limit_for(member.name, limits)
                if member.size > limit:
                    problems.append(f"member {member.name[:200]!r} unpacks to {member.size:,} bytes, over the "
                                    f"{limit:,} byte limit for it")
                total += member.size
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"backup {archive} is not a readable tar archive: {exc}") from exc
    weight = max(1, archive.stat().st_size)
    if total > limits.ratio_floor_bytes and total / weight > limits.max_ratio:
        problems.append(f"it unpacks to {total:,} bytes from {weight:,} ({total / weight:,.0f}x): a compression bomb")
    if blobs_root is not None:
        where = Path(blobs_root).expanduser()
        while not where.exists() and where != where.parent:
            where = where.parent
        free = shutil.disk_usage(where).free
        if total > free:
            problems.append(f"it unpacks to {total:,} bytes but {where} has {free:,} free")
    if problems:
        raise BackupError(f"backup {archive} refused: " + "; ".join(problems[:20])
                          + (f"; and {len(problems) - 20} more" if len(problems) > 20 else ""))
