"""The hash signals deepwatch matches media on, each declared once, in a registry by name.

A signal says which media kinds it applies to, how long its hashes are, how to compare two
hashes, the distance at or under which two hashes count as the same content, and the quality
under which a hash is not used for matching. Dedup, the evidence records and the benchmarks
all read these declarations instead of repeating thresholds.

- sha256: the exact bytes; matches only identical files (distance 0 or "all bits").
- phash:  64-bit DCT pHash (detectors.hashing.phash_fast: imagehash's algorithm on a luma
          draft decode; see its docstring for how it differs bit-for-bit from imagehash.phash).
- pdq:    Meta's 256-bit PDQ with quality; threshold 31 and quality cut-off 50 from upstream.
- vpdq:   PDQ of one frame per second of video; compares frame hashes like pdq, and whole
          videos by detectors.vpdq.vpdq_is_match.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from detectors.hashing import hamming
from detectors.pdq import PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF


@dataclass(frozen=True)
class SignalValue:
    hash_hex: str
    quality: int | None  # None for signals without a quality score
    t_s: float | None  # seconds into a video for per-frame signals, else None


@dataclass(frozen=True)
class SignalType:
    name: str
    kinds: tuple[str, ...]  # media kinds it applies to: "image", "video"
    bits: int
    default_threshold: int  # two hashes match when distance <= this
    quality_cutoff: int | None  # values with quality under this are not matched on
    _distance: Callable[[str, str], int]
    _compute: Callable[[bytes], list[SignalValue]]

    def distance(self, a_hex: str, b_hex: str) -> int:
        """Distance between two hashes of this signal; ValueError for malformed hashes."""
        for h in (a_hex, b_hex):
            if len(h) * 4 != self.bits:
                raise ValueError(
                    f"not a {self.name} hash: need {self.bits // 4} hex chars, got {len(h)} ({h!r})"
                )
        return self._distance(a_hex, b_hex)

    def compute(self, data: bytes) -> list[SignalValue]:
        """The signal's values for media bytes (one, or one per sampled frame for videos).

        Raises detectors.hashing.MediaDecodeError for bytes this signal cannot read.
        """
        return self._compute(data)

    def matches(self, a: SignalValue, b: SignalValue) -> bool:
        """Both values usable (quality at or over the cut-off) and within the threshold."""
        if self.quality_cutoff is not None:
            for v in (a, b):
                if v.quality is None or v.quality < self.quality_cutoff:
                    return False
        return self.distance(a.hash_hex, b.hash_hex) <= self.default_threshold


def _exact_distance(a_hex: str, b_hex: str) -> int:
    # A cryptographic hash says nothing about near matches: equal, or as far as can be.
    return 0 if a_hex.lower() == b_hex.lower() else 256


def _sha256(data: bytes) -> list[SignalValue]:
    if not data:
        from detectors.hashing import MediaDecodeError

        raise MediaDecodeError("empty file: nothing to hash")
    return [SignalValue(hashlib.sha256(data).hexdigest(), None, None)]


def _phash(data: bytes) -> list[SignalValue]:
    from detectors.hashing import phash_fast

    return [SignalValue(phash_fast(data), None, None)]


def _pdq(data: bytes) -> list[SignalValue]:
    from detectors.pdq import pdq_from_bytes

    hash_hex, quality = pdq_from_bytes(data)
    return [SignalValue(hash_hex, quality, None)]


def _vpdq(data: bytes) -> list[SignalValue]:
    from detectors.vpdq import vpdq_hashes

    return [SignalValue(f.hash_hex, f.quality, f.t_s) for f in vpdq_hashes(data, 1.0)]


# pHash threshold 10 of 64 bits: the project's video_match default, and where
# bench/dedup.py measures precision 1.0 on unrelated generated scenes.
_DECLARED = (
    SignalType("sha256", ("image", "video"), 256, 0, None, _exact_distance, _sha256),
    SignalType("phash", ("image",), 64, 10, None, hamming, _phash),
    SignalType("pdq", ("image",), 256, PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF, hamming, _pdq),
    SignalType("vpdq", ("video",), 256, PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF, hamming, _vpdq),
)


def _registry(signals: tuple[SignalType, ...]) -> dict[str, SignalType]:
    names = [s.name for s in signals]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"signal names must be unique; declared more than once: {duplicates}")
    return {s.name: s for s in signals}


SIGNALS: dict[str, SignalType] = _registry(_DECLARED)


def get_signal(name: str) -> SignalType:
    """The declared signal called `name`; KeyError listing the known names otherwise."""
    try:
        return SIGNALS[name]
    except KeyError:
        raise KeyError(f"unknown signal {name!r}; known signals: {', '.join(sorted(SIGNALS))}") from None


def signals_for(kind: str) -> list[SignalType]:
    """The signals that apply to a media kind ("image" or "video"), in declaration order."""
    if kind not in ("image", "video"):
        raise ValueError(f"unknown media kind {kind!r}; expected 'image' or 'video'")
    return [s for s in SIGNALS.values() if kind in s.kinds]


__all__ = ["SIGNALS", "SignalType", "SignalValue", "get_signal", "signals_for"]
