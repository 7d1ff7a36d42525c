"""The reference library: authentic originals (candidates' official media, broadcasters' clips,
press photos) that analysed items are matched against.

Each reference is stored once in the blob store (its bytes, by sha256) and in the database: a
``reference`` row (owner, source URL, note, set, kind) and ``reference_hash`` rows, the PDQ
hashes matching needs: one for a photo's whole frame and one for its content region
(detectors/regions.py: borders, screenshot chrome and caption bands trimmed), and one per
sampled frame of a video with its time. References are removed by their owner's request
(``remove``), not by age.

`ReferenceChecker.check` finds an item's original and hands both to detectors/reference.py:
* a photo is matched by its whole-frame and content-region PDQ against every reference hash
  (photos and video frames: a screenshot of a speech matches the speech), with a loose radius,
  since a crop moves PDQ further than a re-encode; the pixel alignment that follows is what
  confirms the match, so a loose radius only costs a comparison;
* a video's sampled frames are matched to each candidate reference video's frames and the time
  offset voted on, so a clip cut from a longer original aligns (item time + offset = reference
  time); the frames are then compared pair by pair (detectors/reference_video.py).
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
from sqlalchemy import Column, DateTime, Text, func
from sqlmodel import Field, SQLModel, select

from storage.db import Store

#: A candidate original: PDQ within this many bits (of 256). Unrelated pictures sit ~128 bits
#: apart (s.d. ~8); on smooth pictures a 5% crop, a resize and a re-encode, with a face pasted
#: in, land at 40-95. Alignment confirms every candidate, so a loose radius costs only time.
CANDIDATE_DISTANCE = 100
#: Video frames count as the same frame for the time vote within this distance.
FRAME_DISTANCE = 40
VIDEO_STEP_S = 0.5  # reference videos are hashed every half second
MAX_CANDIDATES = 5
CROP_KEEPS = (0.85, 0.7)  # central crops of photo originals also hashed
SUPPORTED_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                      ".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v"}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Reference(SQLModel, table=True):
    __tablename__ = "reference"
    id: Optional[int] = Field(default=None, primary_key=True)
    sha256: str = Field(index=True, unique=True)
    kind: str  # image | video
    mime: str
    owner: str = Field(index=True)  # who vouches for it: "Candidate Kim (official channel)"
    source_url: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    set_name: str = Field(default="", index=True)  # a named set campaigns can select
    width: int = 0
    height: int = 0
    duration_s: Optional[float] = None
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, default=_utcnow))

    @property
    def label(self) -> str:
        return f"R{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "sha256": self.sha256, "kind": self.kind, "mime": self.mime,
                "owner": self.owner, "source_url": self.source_url, "note": self.note, "set": self.set_name,
                "width": self.width, "height": self.height, "duration_s": self.duration_s,
                "created_at": self.created_at.isoformat() if self.created_at else None}


class ReferenceHash(SQLModel, table=True):
    __tablename__ = "reference_hash"
    id: Optional[int] = Field(default=None, primary_key=True)
    reference_id: int = Field(foreign_key="reference.id", index=True)
    region: str  # frame | content | crop85 | crop70 | left | right | top | bottom
    t_s: float = 0.0  # frame time for videos; 0 for photos
    pdq: str
    quality: int


@dataclass(frozen=True)
class Candidate:
    reference_id: int
    distance: int
    t_s: float  # the reference frame that matched (videos), else 0


class ReferenceLibrary:
    """Adding, listing and removing references; the hashes they are matched by."""

    def __init__(self, store: Store, blobs: Any):
        self.store = store
        self.blobs = blobs
        SQLModel.metadata.create_all(store.engine, tables=[Reference.__table__, ReferenceHash.__table__])
        self._lock = threading.Lock()
        self._matrix: tuple[int, np.ndarray, list[tuple[int, float, str]]] | None = None

    # -- writes ----------------------------------------------------------------------------
    def add(self, data: bytes, *, owner: str, source_url: str = "", note: str = "", set_name: str = "",
            declared_mime: str | None = None) -> tuple[Reference, bool]:
        """Store one original; (row, created). Adding the same bytes again returns the existing row.

        Raises ValueError naming the problem for an empty owner or bytes that are not an image or
        a video (detectors.hashing.MediaDecodeError is a ValueError)."""
        from detectors.hashing import probe_media

        owner = (owner or "").strip()
        if not owner:
            raise ValueError("a reference needs an owner (who vouches for it is authentic)")
        sha = hashlib.sha256(data).hexdigest()
        existing = self.get_by_sha(sha)
        if existing is not None:
            return existing, False
        info = probe_media(data, declared_mime)
        hashes, (width, height), duration = _hashes_for(data, info.kind)
        if not hashes:
            raise ValueError("no frame of this media could be hashed")
        self.blobs.put(data)
        with self.store.session() as s:
            row = Reference(sha256=sha, kind=info.kind, mime=info.mime, owner=owner, source_url=source_url,
                            note=note, set_name=set_name, width=width, height=height, duration_s=duration,
                            created_at=_utcnow())
            s.add(row)
            s.commit()
            s.refresh(row)
            for region, t_s, pdq, quality in hashes:
                s.add(ReferenceHash(reference_id=row.id, region=region, t_s=t_s, pdq=pdq, quality=quality))
            s.commit()
            s.refresh(row)
            s.expunge(row)
        self._invalidate()
        return row, True

    def remove(self, ref: str | int) -> Reference:
        """Delete a reference and its hashes (its blob stays: evidence may cite it). KeyError when unknown."""
        row = self.get(ref)
        with self.store.session() as s:
            for h in s.exec(select(ReferenceHash).where(ReferenceHash.reference_id == row.id)).all():
                s.delete(h)
            s.delete(s.get(Reference, row.id))
            s.commit()
        self._invalidate()
        return row

    # -- reads -----------------------------------------------------------------------------
    def get(self, ref: str | int) -> Reference:
        """By id (7 or "R7") or sha256 (or a unique prefix of 8+ hex digits). KeyError when unknown."""
        text = str(ref).strip()
        digits = text[1:] if text[:1] in ("R", "r") else text
        with self.store.session() as s:
            row = None
            if digits.isdigit() and len(digits) < 12:
                row = s.get(Reference, int(digits))
            elif len(text) >= 8:
                rows = s.exec(select(Reference).where(Reference.sha256.startswith(text.lower()))).all()  # type: ignore[attr-defined]
                if len(rows) > 1:
                    raise KeyError(f"reference {text!r} is ambiguous: {len(rows)} references start with it")
                row = rows[0] if rows else None
            if row is None:
                raise KeyError(f"no reference {text!r}")
            s.expunge(row)
            return row

    def get_by_sha(self, sha256: str) -> Reference | None:
        with self.store.session() as s:
            row = s.exec(select(Reference).where(Reference.sha256 == sha256)).first()
            if row is not None:
                s.expunge(row)
            return row

    def list(self, *, set_name: str | None = None, owner: str | None = None) -> list[Reference]:
        with self.store.session() as s:
            q = select(Reference).order_by(Reference.id)
            if set_name:
                q = q.where(Reference.set_name == set_name)
            if owner:
                q = q.where(Reference.owner == owner)
            rows = list(s.exec(q).all())
            for r in rows:
                s.expunge(r)
            return rows

    def hashes(self, reference_id: int) -> list[ReferenceHash]:
        with self.store.session() as s:
            rows = list(s.exec(select(ReferenceHash).where(ReferenceHash.reference_id == reference_id)
                               .order_by(ReferenceHash.t_s, ReferenceHash.region)).all())
            for r in rows:
                s.expunge(r)
            return rows

    def count(self, kind: str | None = None) -> int:
        with self.store.session() as s:
            q = select(func.count()).select_from(Reference)
            if kind:
                q = q.where(Reference.kind == kind)
            return int(s.exec(q).one())

    # -- matching --------------------------------------------------------------------------
    def _invalidate(self) -> None:
        with self._lock:
            self._matrix = None

    def _hash_matrix(self, set_names: tuple[str, ...] | None) -> tuple[np.ndarray, list[tuple[int, float, str]]]:
        """Every reference hash as a bit matrix, with (reference id, t_s, region) per row. Reloaded
        when the hash count changed (another process added or removed references)."""
        with self.store.session() as s:
            n = int(s.exec(select(func.count()).select_from(ReferenceHash)).one())
            with self._lock:
                if self._matrix is not None and self._matrix[0] == n:
                    bits, meta = self._matrix[1], self._matrix[2]
                else:
                    rows = s.exec(select(ReferenceHash.reference_id, ReferenceHash.t_s, ReferenceHash.region,
                                         ReferenceHash.pdq)).all()
                    meta = [(r[0], float(r[1]), r[2]) for r in rows]
                    bits = _bits([r[3] for r in rows])
                    self._matrix = (n, bits, meta)
            if set_names:
                allowed = set(s.exec(select(Reference.id).where(Reference.set_name.in_(set_names))).all())  # type: ignore[attr-defined]
                keep = [i for i, m in enumerate(meta) if m[0] in allowed]
                return bits[keep], [meta[i] for i in keep]
        return bits, meta

    def candidates(self, pdqs: list[str], *, set_names: tuple[str, ...] | None = None,
                   max_distance: int = CANDIDATE_DISTANCE) -> list[Candidate]:
        """References with a hash within `max_distance` of any of `pdqs`, nearest first, one per reference."""
        bits, meta = self._hash_matrix(set_names)
        if not len(meta) or not pdqs:
            return []
        dist = _distances(_bits(pdqs), bits).min(axis=0)
        best: dict[int, Candidate] = {}
        for i in np.flatnonzero(dist <= max_distance):
            ref_id, t_s, _region = meta[i]
            d = int(dist[i])
            if ref_id not in best or d < best[ref_id].distance:
                best[ref_id] = Candidate(ref_id, d, t_s)
        return sorted(best.values(), key=lambda c: c.distance)[:MAX_CANDIDATES]

    def frame_hashes(self, reference_id: int) -> list[tuple[float, str]]:
        return [(h.t_s, h.pdq) for h in self.hashes(reference_id) if h.region == "frame"]


def _hashes_for(data: bytes, kind: str) -> tuple[list[tuple[str, float, str, int]], tuple[int, int], float | None]:
    """(region, t_s, pdq, quality) rows for an original, its size, and its duration (videos)."""
    from detectors.pdq import decode_for_pdq, pdq_from_image
    from detectors.regions import content_box

    if kind == "video":
        from detectors.video import probe_video
        from detectors.vpdq import vpdq_hashes

        meta = probe_video(data)
        frames = vpdq_hashes(data, VIDEO_STEP_S)
        return ([("frame", f.t_s, f.hash_hex, f.quality) for f in frames], (meta.width, meta.height),
                meta.duration_s)
    img = decode_for_pdq(data, draft=False)
    pdq, quality = pdq_from_image(img)
    rows = [("frame", 0.0, pdq, quality)]
    box = content_box(img)
    if box is not None:
        region_pdq, region_q = pdq_from_image(img.crop(box))
        rows.append(("content", 0.0, region_pdq, region_q))
    # Re-posts are often cropped tighter than PDQ tolerates: central crops of the original meet
    # them half-way (the alignment then finds the actual crop).
    w, h = img.size
    for keep in CROP_KEEPS:
        dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
        crop_pdq, crop_q = pdq_from_image(img.crop((dx, dy, w - dx, h - dy)))
        rows.append((f"crop{round(keep * 100)}", 0.0, crop_pdq, crop_q))
    for name, box in halves(img.size):
        half_pdq, half_q = pdq_from_image(img.crop(box))
        rows.append((name, 0.0, half_pdq, half_q))
    return rows, img.size, None


def halves(size: tuple[int, int]) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Left, right, top and bottom halves: an edit that moves the whole-frame PDQ too far (a
    replaced face is a large share of a portrait) leaves the other half of the picture to match."""
    w, h = size
    return [("left", (0, 0, w // 2, h)), ("right", (w - w // 2, 0, w, h)),
            ("top", (0, 0, w, h // 2)), ("bottom", (0, h - h // 2, w, h))]


def item_pdqs(img: Any) -> list[str]:
    """The PDQ hashes an item photo is looked up by: whole frame and content region."""
    from detectors.pdq import pdq_from_image
    from detectors.regions import content_box

    out = [pdq_from_image(img)[0]]
    box = content_box(img)
    if box is not None:
        out.append(pdq_from_image(img.crop(box))[0])
    out.extend(pdq_from_image(img.crop(b))[0] for _, b in halves(img.size))
    return out


def _bits(hexes: list[str]) -> np.ndarray:
    if not hexes:
        return np.zeros((0, 256), dtype=np.uint8)
    raw = np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(len(hexes), 32)
    return np.unpackbits(raw, axis=1)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances of two 0/1 bit matrices."""
    fa, fb = a.astype(np.int32), b.astype(np.int32)
    return fa.sum(1)[:, None] + fb.sum(1)[None, :] - 2 * (fa @ fb.T)


def files_in(folder: str | os.PathLike[str]) -> list[Path]:
    """The media files under a folder (recursively, sorted), for `reference import`."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"not a folder: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
