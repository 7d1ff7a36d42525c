"""The known-fakes bank: hashes of media confirmed fake, each tied to its case.

An item confirmed fake (by a reviewer or a high-confidence verdict) is added with its case id.
Any later sighting, on any platform, whose hash matches the bank is linked to that case and
flagged "matches known fake <case> at distance <d>" without running detectors again.

Entries live in the ``bank_entry`` table (SQLite or PostgreSQL, through the same ``Store``).
Perceptual signals (PDQ, pHash) are matched by Hamming distance through an in-memory
``BinaryHashIndex`` per signal, built lazily from the table and kept current: adds through this
object go straight into it, and a cheap row count per match notices rows other processes added
(the index is then rebuilt). Entries are never deleted, which is what makes the count check valid.
SHA-256 is matched exactly in SQL.

Hash lists (``import_hash_list`` / ``export_hash_list``) are the plain format that hash-sharing
programmes exchange: one hex hash per line; on import blank lines, ``#`` comments and a
``,quality`` suffix (PDQ's 0-100 quality) are accepted.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from sqlalchemy import Column, DateTime, Text, UniqueConstraint, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from detectors.signals import SIGNALS
from storage.db import Store
from storage.hashindex import BinaryHashIndex

# Thresholds and widths come from the one place signals are declared (detectors/signals.py).
_BANKABLE = ("pdq", "phash", "sha256")
#: Default match radius per signal (bits); sha256 is exact-match only.
DEFAULT_MAX_DISTANCE: dict[str, int] = {n: SIGNALS[n].default_threshold for n in _BANKABLE}
PDQ_MAX_DISTANCE = DEFAULT_MAX_DISTANCE["pdq"]
PHASH_MAX_DISTANCE = DEFAULT_MAX_DISTANCE["phash"]
#: Hash width in bits of each signal.
SIGNAL_BITS: dict[str, int] = {n: SIGNALS[n].bits for n in _BANKABLE}
SOURCES = ("review", "verdict", "import")

_HEX_RE = re.compile(r"[0-9a-f]+")
_IN_CHUNK = 500  # keep IN (...) lists well under every driver's parameter limit


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BankEntry(SQLModel, table=True):
    __tablename__ = "bank_entry"
    __table_args__ = (UniqueConstraint("signal", "hash_hex"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    signal: str = Field(index=True)  # pdq | phash | sha256
    hash_hex: str
    case_id: str = Field(index=True)  # e.g. "NEC-2026-0042" or an evidence id
    media_sha256: Optional[str] = Field(default=None, index=True)
    source: str  # review | verdict | import
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    added_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, default=_utcnow))


@dataclass(frozen=True)
class BankMatch:
    entry_id: int
    case_id: str
    media_sha256: str | None
    hash_hex: str
    distance: int

    @property
    def reason(self) -> str:
        """The flag text a matching sighting carries."""
        return f"matches known fake {self.case_id} at distance {self.distance}"


@dataclass(frozen=True)
class ImportResult:
    added: int
    skipped_existing: int  # already in the bank, or repeated earlier in the same file


def normalise_hash(signal: str, hash_hex: str) -> str:
    """Lower-case hex of the width the signal needs; ValueError naming the value otherwise."""
    if signal not in SIGNAL_BITS:
        raise ValueError(f"unknown signal {signal!r}; expected one of {sorted(SIGNAL_BITS)}")
    digits = SIGNAL_BITS[signal] // 4
    value = hash_hex.strip().lower() if isinstance(hash_hex, str) else hash_hex
    if not isinstance(value, str) or len(value) != digits or not _HEX_RE.fullmatch(value):
        raise ValueError(f"not a {signal} hash ({digits} hex digits): {hash_hex!r}")
    return value


class KnownFakesBank:
    def __init__(self, store: Store):
        self.store = store
        SQLModel.metadata.create_all(store.engine, tables=[BankEntry.__table__])
        self._indexes: dict[str, BinaryHashIndex] = {}
        # One lock for the indexes: the pipeline may match from several threads.
        self._lock = threading.Lock()

    # -- writes ----------------------------------------------------------------------------
    def add(
        self,
        signal: str,
        hash_hex: str,
        *,
        case_id: str,
        source: str,
        media_sha256: str | None = None,
        note: str = "",
    ) -> bool:
        """Bank one hash; False (and nothing changed) when (signal, hash) is already banked."""
        value = normalise_hash(signal, hash_hex)
        _check_case(case_id)
        if source not in SOURCES:
            raise ValueError(f"unknown bank source {source!r}; expected one of {list(SOURCES)}")
        if media_sha256 is not None:
            media_sha256 = normalise_hash("sha256", media_sha256)
        with self.store.session() as s:
            if self._find(s, signal, value) is not None:
                return False
            row = BankEntry(
                signal=signal, hash_hex=value, case_id=case_id, media_sha256=media_sha256,
                source=source, note=note, added_at=_utcnow(),
            )
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # another writer banked the same hash first
                s.rollback()
                return False
            entry_id = row.id
        with self._lock:
            index = self._indexes.get(signal)
            if index is not None:
                index.add_one(entry_id, value)
        return True

    def remove_for_media(self, media_sha256: str, sources: tuple[str, ...] = ("verdict",)) -> int:
        """Take a media item's entries out of the bank (an investigator dismissed it); only
        entries from `sources` go, so a case imported from a partner stays. Returns how many."""
        media_sha256 = normalise_hash("sha256", media_sha256)
        with self.store.session() as s:
            rows = s.exec(select(BankEntry).where(
                BankEntry.media_sha256 == media_sha256, BankEntry.source.in_(sources)  # type: ignore[attr-defined]
            )).all()
            for row in rows:
                s.delete(row)
            s.commit()
        with self._lock:
            self._indexes.clear()  # rebuilt on the next match
        return len(rows)

    def import_hash_list(self, path: str | os.PathLike[str], *, case_id: str, signal: str = "pdq") -> ImportResult:
        """Bank every hash of a list file under one case, all or nothing: a bad line raises
        ValueError naming the file and line and imports nothing."""
        _check_case(case_id)
        path = Path(path)
        hashes = _read_hash_list(path, signal)
        unique = list(dict.fromkeys(hashes))
        note = f"imported from {path.name}"
        for _attempt in range(3):
            with self.store.session() as s:
                existing: set[str] = set()
                for start in range(0, len(unique), _IN_CHUNK):
                    chunk = unique[start : start + _IN_CHUNK]
                    existing.update(
                        s.exec(
                            select(BankEntry.hash_hex).where(BankEntry.signal == signal, BankEntry.hash_hex.in_(chunk))  # type: ignore[attr-defined]
                        ).all()
                    )
                new = [h for h in unique if h not in existing]
                now = _utcnow()
                if new:
                    s.execute(
                        BankEntry.__table__.insert(),
                        [
                            {"signal": signal, "hash_hex": h, "case_id": case_id, "media_sha256": None,
                             "source": "import", "note": note, "added_at": now}
                            for h in new
                        ],
                    )
                try:
                    s.commit()
                except IntegrityError:  # a concurrent writer banked some of them: re-read, retry
                    s.rollback()
                    continue
            with self._lock:
                self._indexes.pop(signal, None)  # rebuilt from the table at the next match
            return ImportResult(added=len(new), skipped_existing=len(hashes) - len(new))
        raise RuntimeError(f"could not import {path}: concurrent writers kept conflicting")

    def export_hash_list(self, path: str | os.PathLike[str], signal: str = "pdq") -> int:
        """Write every banked hash of a signal, one per line in the order banked; returns count."""
        if signal not in SIGNAL_BITS:
            raise ValueError(f"unknown signal {signal!r}; expected one of {sorted(SIGNAL_BITS)}")
        with self.store.session() as s:
            values = s.exec(select(BankEntry.hash_hex).where(BankEntry.signal == signal).order_by(BankEntry.id)).all()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="ascii", newline="\n") as fh:
                fh.writelines(v + "\n" for v in values)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(values)

    # -- reads -----------------------------------------------------------------------------
    def match(self, signal: str, hash_hex: str, max_distance: int | None = None) -> list[BankMatch]:
        """Banked entries within ``max_distance`` (default per signal), nearest first."""
        value = normalise_hash(signal, hash_hex)
        limit = DEFAULT_MAX_DISTANCE[signal] if max_distance is None else max_distance
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max_distance must be a non-negative integer, got {max_distance!r}")
        if signal == "sha256":  # a cryptographic digest has no useful "near": exact only
            with self.store.session() as s:
                row = self._find(s, signal, value)
            return [] if row is None else [_as_match(row, 0)]
        with self._lock:
            hits = self._index(signal).search(value, limit)
        if not hits:
            return []
        distance = dict(hits)
        with self.store.session() as s:
            rows = []
            ids = list(distance)
            for start in range(0, len(ids), _IN_CHUNK):
                rows += s.exec(select(BankEntry).where(BankEntry.id.in_(ids[start : start + _IN_CHUNK]))).all()  # type: ignore[union-attr]
        by_id = {r.id: r for r in rows}
        return [_as_match(by_id[i], d) for i, d in hits if i in by_id]

    def __len__(self) -> int:
        with self.store.session() as s:
            return int(s.exec(select(func.count()).select_from(BankEntry)).one())

    def _index(self, signal: str) -> BinaryHashIndex:
        """The signal's index, (re)built when the table holds rows it has not seen. Caller locks."""
        with self.store.session() as s:
            count = int(s.exec(select(func.count()).select_from(BankEntry).where(BankEntry.signal == signal)).one())
            index = self._indexes.get(signal)
            if index is None or len(index) != count:
                rows = s.exec(select(BankEntry.id, BankEntry.hash_hex).where(BankEntry.signal == signal)).all()
                index = BinaryHashIndex(SIGNAL_BITS[signal])
                index.add([r[0] for r in rows], [r[1] for r in rows])
                self._indexes[signal] = index
        return index

    @staticmethod
    def _find(s, signal: str, value: str) -> BankEntry | None:
        return s.exec(select(BankEntry).where(BankEntry.signal == signal, BankEntry.hash_hex == value)).first()


def _as_match(row: BankEntry, distance: int) -> BankMatch:
    return BankMatch(row.id, row.case_id, row.media_sha256, row.hash_hex, int(distance))


def _check_case(case_id: str) -> None:
    from storage.hash_list_limits import check_case_id

    check_case_id(case_id)  # non-empty, printable, bounded


def _read_hash_list(path: Path, signal: str) -> list[str]:
    """Every hash in a list file, validated before anything is written."""
    from storage.hash_list_limits import MAX_LIST_HASHES, degenerate, read_list_text

    text = read_list_text(path)  # regular file, size cap, UTF-8, no NUL (issue 16)
    hashes = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        value, comma, quality = line.partition(",")
        if comma and not (quality.strip().isdigit() and 0 <= int(quality.strip()) <= 100):
            raise ValueError(f"{path}, line {number}: quality after the comma must be 0-100: {raw!r}")
        try:
            value = normalise_hash(signal, value)
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
        problem = degenerate(signal, value)
        if problem:
            raise ValueError(f"{path}, line {number}: {problem}")
        hashes.append(value)
        if len(hashes) > MAX_LIST_HASHES:
            raise ValueError(f"{path}: more than {MAX_LIST_HASHES:,} hashes; split the list")
    return hashes


__all__ = [
    "BankEntry",
    "BankMatch",
    "DEFAULT_MAX_DISTANCE",
    "ImportResult",
    "KnownFakesBank",
    "PDQ_MAX_DISTANCE",
    "PHASH_MAX_DISTANCE",
    "normalise_hash",
]
