"""Known-fakes bank for videos: per-frame vPDQ hashes of confirmed fake videos, by case.

Exchanged in ThreatExchange's vPDQ format: one text file per video, one line per frame,
``frame,quality,hash,timestamp`` (frame number, PDQ quality 0-100, 64 hex digits, seconds).
`import_files` validates every line of every file before writing anything; `export_dir` writes
``<dir>/<case>/<video>.txt``, which `import_files` reads back (one case per folder).

Matching (`match`): every banked frame sits in one multi-index hash index (storage.hashindex);
a query's frames (at most `_PROBES` of them, spread over its length) find the candidate videos
with a frame within 31 bits, and each candidate is then aligned in full
(detectors.video_align): the vPDQ rule decides, the alignment says where.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import JSON, Column, DateTime, UniqueConstraint, func
from sqlmodel import Field, SQLModel, select

from detectors.pdq import PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF
from detectors.video_align import Alignment, align
from detectors.vpdq import VpdqFrame, frames_from_rows, frames_to_rows
from storage.db import Store
from storage.hashindex import BinaryHashIndex

SOURCES = ("review", "verdict", "import")
MAX_FILE_BYTES = 64 * 1024 * 1024  # ~800k frames: seven hours at 30 fps
MAX_FRAMES = 1_000_000
_PROBES = 240  # query frames looked up in the index to find candidate videos
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BankVideo(SQLModel, table=True):
    __tablename__ = "bank_video"
    __table_args__ = (UniqueConstraint("case_id", "name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    case_id: str = Field(index=True)
    name: str  # the video's name within its case (the file stem on import)
    media_sha256: Optional[str] = Field(default=None, index=True)
    source: str  # review | verdict | import
    n_frames: int
    frames: list = Field(sa_column=Column(JSON, nullable=False))  # [[t_s, quality, hash hex], ...]
    added_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, default=_utcnow))


@dataclass(frozen=True)
class VideoBankMatch:
    entry_id: int
    case_id: str
    name: str
    media_sha256: str | None
    alignment: Alignment

    @property
    def reason(self) -> str:
        a = self.alignment
        where = a.segments[0].describe(f"case {self.case_id}'s video") if a.segments else "no aligned range"
        bars = "" if a.cropped == "plain" else ", bars cut away"
        return (f"matches known fake video {self.case_id}/{self.name}: {where} "
                f"(shares {a.share_a:.2f}/{a.share_b:.2f}{bars})")

    def as_dict(self) -> dict:
        return {"case_id": self.case_id, "name": self.name, "media_sha256": self.media_sha256,
                "reason": self.reason, **self.alignment.as_dict()}


def parse_vpdq_text(text: str, source: str = "<vpdq>") -> list[VpdqFrame]:
    """Frames of one vPDQ file; ValueError naming the source and line for anything malformed."""
    frames: list[VpdqFrame] = []
    last_index, last_t = -1, -math.inf
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def bad(why: str) -> ValueError:
            return ValueError(f"{source}, line {number}: {why}: {raw[:120]!r}")

        parts = line.split(",")
        if len(parts) != 4:
            raise bad(f"need 4 fields frame,quality,hash,timestamp, got {len(parts)}")
        index_s, quality_s, hash_s, t_str = (p.strip() for p in parts)
        if not index_s.isdigit() or not quality_s.isdigit():
            raise bad("frame number and quality must be whole numbers")
        index, quality = int(index_s), int(quality_s)
        if quality > 100:
            raise bad("quality must be 0-100")
        if index <= last_index:
            raise bad("frame numbers must increase")
        value = hash_s.lower()
        if not _HASH_RE.fullmatch(value):
            raise bad("hash must be 64 hex digits (PDQ)")
        try:
            t = float(t_str)
        except ValueError:
            raise bad("timestamp must be a number of seconds") from None
        if not math.isfinite(t) or t < 0 or t < last_t:
            raise bad("timestamps must be finite, >= 0 and not decrease")
        frames.append(VpdqFrame(t_s=t, quality=quality, hash_hex=value))
        if len(frames) > MAX_FRAMES:
            raise bad(f"more than {MAX_FRAMES} frames")
        last_index, last_t = index, t
    if not frames:
        raise ValueError(f"{source}: no frames")
    return frames


def read_vpdq_file(path: Path) -> list[VpdqFrame]:
    """Frames of one vPDQ file on disk, with the size and encoding checked first."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size} bytes is more than a vPDQ file may hold ({MAX_FILE_BYTES})")
    try:
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text vPDQ file (non-ASCII bytes)") from None
    return parse_vpdq_text(text, str(path))


def format_vpdq(frames: list[VpdqFrame]) -> str:
    return "".join(f"{i},{f.quality},{f.hash_hex},{f.t_s:.3f}\n" for i, f in enumerate(frames))


def _check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a banked video needs a {what}, got {value!r}")
    return value.strip()


class VideoBank:
    def __init__(self, store: Store):
        self.store = store
        SQLModel.metadata.create_all(store.engine, tables=[BankVideo.__table__])
        self._lock = threading.Lock()
        self._index: BinaryHashIndex | None = None
        self._owner = np.zeros(0, dtype=np.int64)  # frame id in the index -> bank_video.id
        self._seen = -1  # rows the index was built from

    # -- writes ----------------------------------------------------------------------------
    def add(self, frames: list[VpdqFrame], *, case_id: str, name: str, source: str,
            media_sha256: str | None = None) -> bool:
        """Bank one video; False when the case already has a video of that name."""
        case_id, name = _check_name("case id", case_id), _check_name("name", name)
        if source not in SOURCES:
            raise ValueError(f"unknown bank source {source!r}; expected one of {list(SOURCES)}")
        # Round trip through the file format validates every frame the same way an import does;
        # bar-cropped hashes (our own, never in the exchange format) are checked the same way.
        frames = list(frames)
        plain = parse_vpdq_text(format_vpdq([f for f in frames if not f.cropped]), f"video {name}")
        cropped = [replace(f, cropped=True) for f in parse_vpdq_text(
            format_vpdq([f for f in frames if f.cropped]), f"video {name} (cropped)")] if any(f.cropped for f in frames) else []
        frames = plain + cropped
        with self.store.session() as s:
            if s.exec(select(BankVideo.id).where(BankVideo.case_id == case_id, BankVideo.name == name)).first():
                return False
            s.add(BankVideo(case_id=case_id, name=name, media_sha256=media_sha256, source=source,
                            n_frames=len(frames), frames=frames_to_rows(frames),
                            added_at=_utcnow()))
            s.commit()
        return True

    def import_files(self, paths: list[Path], *, case_id: str) -> tuple[int, int]:
        """Bank vPDQ files (a folder means its *.txt files) under one case, all or nothing:
        every file is parsed before any is written. Returns (added, already banked)."""
        case_id = _check_name("case id", case_id)
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files += sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
            elif path.is_file():
                files.append(path)
            else:
                raise ValueError(f"{path}: no such file or folder")
        if not files:
            raise ValueError("no vPDQ files to import (a folder is read for *.txt)")
        parsed = [(p.stem, read_vpdq_file(p)) for p in files]
        added = sum(self.add(frames, case_id=case_id, name=stem, source="import") for stem, frames in parsed)
        return added, len(parsed) - added

    def export_dir(self, directory: Path) -> int:
        """Write every banked video as <directory>/<case>/<name>.txt; returns how many."""
        with self.store.session() as s:
            rows = s.exec(select(BankVideo).order_by(BankVideo.id)).all()
        for row in rows:
            folder = Path(directory) / (_SAFE.sub("_", row.case_id).strip(".") or "case")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{_SAFE.sub('_', row.name).strip('.') or 'video'}.txt"
            frames = [f for f in frames_from_rows(row.frames) if not f.cropped]  # upstream's format: plain only
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "w", encoding="ascii", newline="\n") as fh:
                    fh.write(format_vpdq(frames))
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return len(rows)

    # -- reads -----------------------------------------------------------------------------
    def __len__(self) -> int:
        with self.store.session() as s:
            return int(s.exec(select(func.count()).select_from(BankVideo)).one())

    def match(self, frames: list[VpdqFrame], distance: int = PDQ_MATCH_DISTANCE) -> list[VideoBankMatch]:
        """Banked videos the query matches by the vPDQ rule, best (highest smaller share) first."""
        good = [f for f in frames if f.quality >= PDQ_QUALITY_CUTOFF]
        if not good:
            return []
        step = max(1, len(good) // _PROBES)
        with self._lock:
            index, owner = self._current()
            hits = index.search_many([f.hash_hex for f in good[::step]], distance) if len(index) else []
        candidates = {int(owner[i]) for row in hits for i, _d in row}
        if not candidates:
            return []
        with self.store.session() as s:
            rows = s.exec(select(BankVideo).where(BankVideo.id.in_(sorted(candidates)))).all()  # type: ignore[union-attr]
        out = []
        for row in rows:
            banked = frames_from_rows(row.frames)
            found = align(frames, banked, distance)
            if found.is_match:
                out.append(VideoBankMatch(row.id, row.case_id, row.name, row.media_sha256, found))
        out.sort(key=lambda m: min(m.alignment.share_a, m.alignment.share_b), reverse=True)
        return out

    def _current(self) -> tuple[BinaryHashIndex, np.ndarray]:
        """The frame index, rebuilt when the table's row count changed. Caller locks."""
        with self.store.session() as s:
            count = int(s.exec(select(func.count()).select_from(BankVideo)).one())
            if self._index is None or count != self._seen:
                ids, hashes = [], []
                for vid, frames in s.exec(select(BankVideo.id, BankVideo.frames)).all():
                    for r in frames:
                        if r[1] >= PDQ_QUALITY_CUTOFF:
                            ids.append(vid)
                            hashes.append(r[2])
                index = BinaryHashIndex(256)
                index.add(list(range(len(hashes))), hashes)
                self._index, self._owner, self._seen = index, np.array(ids, dtype=np.int64), count
        return self._index, self._owner


__all__ = ["BankVideo", "VideoBank", "VideoBankMatch", "format_vpdq", "parse_vpdq_text", "read_vpdq_file"]
