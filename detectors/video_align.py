"""Where two videos match: offset-tolerant alignment of their per-frame PDQ sequences.

The match decision stays ThreatExchange's vPDQ rule (frames within 31 bits at quality >= 50;
the share of each video's good frames with a close frame anywhere in the other; both shares
>= 0.5), so our recall is upstream's on the same hashes. The alignment only says *where*:
matching frame pairs vote for the time offset between the videos (b_time - a_time, in 0.25 s
bins, so frame-rate changes, which keep timestamps in seconds, still land in one bin); the
winning offset's pairs are fitted by least squares to b = rate * a + offset (rate 1.0 for a
re-timed copy, 1.25 for a sped-up one) and cut into contiguous ranges wherever more than
`MAX_GAP_S` seconds go unmatched. Pairs left over vote again, so a compilation that contains
two pieces of a video yields two segments with their own offsets.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from detectors.pdq import PDQ_HEX_CHARS, PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF
from detectors.vpdq import VPDQ_MATCH_SHARE, VpdqFrame

OFFSET_BIN_S = 0.25
MAX_GAP_S = 1.0  # unmatched seconds that split a range
MIN_SEGMENT_PAIRS = 3  # fewer consistent pairs than this are noise, not a segment
MAX_SEGMENTS = 8
# Each frame votes with at most this many of its nearest frames in the other video: a still
# shot matches itself everywhere and would otherwise cast N x M votes.
_NEAREST = 4
_ROWS_PER_BLOCK = 256  # distance-matrix rows at once: small blocks stay in cache (faster than 1024 or 2048)


@dataclass(frozen=True)
class Segment:
    a_start: float
    a_end: float
    b_start: float
    b_end: float
    pairs: int  # frame pairs that support it

    def describe(self, other: str = "the other video") -> str:
        return f"{self.a_start:.1f}-{self.a_end:.1f} s of this video = {self.b_start:.1f}-{self.b_end:.1f} s of {other}"


@dataclass(frozen=True)
class Alignment:
    share_a: float  # upstream rule: share of a's good frames with a close frame in b
    share_b: float
    segments: tuple[Segment, ...]  # longest first
    rate: float  # b seconds per a second in the main segment (1.0: same speed)
    offset_s: float  # b_time = rate * a_time + offset_s in the main segment
    # Which hashes matched: "plain" (upstream's), or with static bars cut away from "a", "b" or "both".
    cropped: str = "plain"

    @property
    def is_match(self) -> bool:
        return min(self.share_a, self.share_b) >= VPDQ_MATCH_SHARE

    def describe(self, other: str = "the other video") -> str:
        if not self.segments:
            return f"no aligned range with {other}"
        return "; ".join(s.describe(other) for s in self.segments)

    def as_dict(self) -> dict:
        return {
            "share_a": round(self.share_a, 4), "share_b": round(self.share_b, 4), "match": self.is_match,
            "rate": round(self.rate, 4), "offset_s": round(self.offset_s, 3), "cropped": self.cropped,
            "segments": [
                {"a": [round(s.a_start, 3), round(s.a_end, 3)], "b": [round(s.b_start, 3), round(s.b_end, 3)], "pairs": s.pairs}
                for s in self.segments
            ],
        }


def frame_codes(frames: Sequence[VpdqFrame], quality: int = PDQ_QUALITY_CUTOFF) -> tuple[np.ndarray, np.ndarray]:
    """(times, uint64 codes of shape (n, 4)) of the frames with quality >= `quality`."""
    good = [f for f in frames if f.quality >= quality]
    for f in good:
        if not isinstance(f.hash_hex, str) or len(f.hash_hex) != PDQ_HEX_CHARS:
            raise ValueError(f"not a PDQ hash (need {PDQ_HEX_CHARS} hex chars): {f.hash_hex!r}")
    if not good:
        return np.zeros(0), np.zeros((0, 4), dtype=np.uint64)
    try:
        raw = bytes.fromhex("".join(f.hash_hex for f in good))
    except ValueError:
        raise ValueError("vPDQ frame hashes must be hex") from None
    codes = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(good), 4)
    return np.array([f.t_s for f in good], dtype=np.float32).astype(float), codes


def _close_pairs(ca: np.ndarray, cb: np.ndarray, distance: int):
    """Per a-row: whether any b is close; per b-column the same; and the (i, j, dist) pairs
    among each a-row's `_NEAREST` nearest b frames that are within `distance`."""
    any_a = np.zeros(len(ca), dtype=bool)
    any_b = np.zeros(len(cb), dtype=bool)
    pi, pj = [], []
    k = min(_NEAREST, len(cb))
    for start in range(0, len(ca), _ROWS_PER_BLOCK):
        block = ca[start : start + _ROWS_PER_BLOCK]
        dist = np.zeros((len(block), len(cb)), dtype=np.uint16)
        for w in range(4):
            dist += np.bitwise_count(block[:, w, None] ^ cb[None, :, w]).astype(np.uint16)
        close = dist <= distance
        hit = close.any(axis=1)
        any_a[start : start + len(block)] = hit
        any_b |= close.any(axis=0)
        # Nearest neighbours only for rows that have a close frame: unrelated videos skip this.
        rows_hit = np.flatnonzero(hit)
        if not len(rows_hit):
            continue
        sub = dist[rows_hit]
        nearest = np.argpartition(sub, k - 1, axis=1)[:, :k] if k < len(cb) else np.tile(np.arange(len(cb)), (len(sub), 1))
        rows = np.repeat(rows_hit, nearest.shape[1])
        cols = nearest.ravel()
        keep = close[rows, cols]
        pi.append(rows[keep] + start)
        pj.append(cols[keep])
    if not pi:
        return any_a, any_b, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return any_a, any_b, np.concatenate(pi), np.concatenate(pj)


def _ranges(ta: np.ndarray, tb: np.ndarray) -> list[Segment]:
    """Cut pairs (sorted by a time) into runs with no gap over MAX_GAP_S on either side."""
    out = []
    start = 0
    for i in range(1, len(ta) + 1):
        if i == len(ta) or ta[i] - ta[i - 1] > MAX_GAP_S or abs(tb[i] - tb[i - 1]) > MAX_GAP_S + OFFSET_BIN_S:
            if i - start >= MIN_SEGMENT_PAIRS:
                seg_b = tb[start:i]
                out.append(Segment(float(ta[start]), float(ta[i - 1]), float(seg_b.min()), float(seg_b.max()), i - start))
            start = i
    return out


def align(
    a: Sequence[VpdqFrame],
    b: Sequence[VpdqFrame],
    distance: int = PDQ_MATCH_DISTANCE,
    quality: int = PDQ_QUALITY_CUTOFF,
) -> Alignment:
    """Upstream shares of a in b and b in a, and the time ranges where they line up.

    Frames marked `cropped` (the picture inside static bars) are a second hash sequence: the
    best of plain-plain and each pairing with a cropped side decides, so a copy with bars added
    or removed matches. Raises ValueError for a frame whose hash is not 64 hex characters.
    """
    return align_variants(variant_codes(a, quality), variant_codes(b, quality), distance)


Coded = tuple[np.ndarray, np.ndarray]


def variant_codes(frames: Sequence[VpdqFrame], quality: int = PDQ_QUALITY_CUTOFF) -> tuple[Coded, Coded]:
    """(plain, cropped) `frame_codes` of a frame list."""
    return (frame_codes([f for f in frames if not f.cropped], quality),
            frame_codes([f for f in frames if f.cropped], quality))


def align_variants(a: tuple[Coded, Coded], b: tuple[Coded, Coded], distance: int = PDQ_MATCH_DISTANCE) -> Alignment:
    """The best alignment of plain-plain, cropped-plain, plain-cropped and cropped-cropped (by
    the smaller share); pairings with an empty side are skipped, so videos without bars cost one."""
    best = align_coded(a[0], b[0], distance)
    for x, y, name in ((a[1], b[0], "a"), (a[0], b[1], "b"), (a[1], b[1], "both")):
        if len(x[1]) and len(y[1]):
            found = align_coded(x, y, distance)
            if min(found.share_a, found.share_b) > min(best.share_a, best.share_b):
                best = replace(found, cropped=name)
    return best


def align_coded(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                distance: int = PDQ_MATCH_DISTANCE) -> Alignment:
    """`align` on (times, codes) that `frame_codes` made: callers that keep many videos (the
    dedup index) hold them in this compact form (36 bytes a frame) rather than as objects."""
    (ta, ca), (tb, cb) = a, b
    if len(ca) == 0 or len(cb) == 0:
        return Alignment(0.0, 0.0, (), 1.0, 0.0)
    any_a, any_b, pi, pj = _close_pairs(ca, cb, distance)
    share_a, share_b = float(any_a.mean()), float(any_b.mean())
    segments: list[Segment] = []
    rate, offset = 1.0, 0.0
    left = np.ones(len(pi), dtype=bool)
    for round_ in range(MAX_SEGMENTS):
        if left.sum() < MIN_SEGMENT_PAIRS:
            break
        xa, xb = ta[pi[left]], tb[pj[left]]
        bins = np.round((xb - xa) / OFFSET_BIN_S).astype(np.int64)
        values, counts = np.unique(bins, return_counts=True)
        peak = values[counts.argmax()]
        # The peak bin and its neighbours: an offset on a bin edge splits its votes.
        near = np.abs(bins - peak) <= 1
        if near.sum() < MIN_SEGMENT_PAIRS:
            break
        fit_a, fit_b = xa[near], xb[near]
        if np.ptp(fit_a) > 1.0:
            r, c = np.polyfit(fit_a, fit_b, 1)
        else:
            r, c = 1.0, float(np.median(fit_b - fit_a))
        # Rates from 0.5x to 2x are plausible edits; outside, keep the plain offset.
        if not 0.5 <= r <= 2.0:
            r, c = 1.0, float(np.median(fit_b - fit_a))
        xa_all, xb_all = ta[pi], tb[pj]
        inlier = left & (np.abs(xb_all - (r * xa_all + c)) <= 2 * OFFSET_BIN_S)
        if inlier.sum() < MIN_SEGMENT_PAIRS:
            break
        # One pair per a frame (the one nearest the line), in a time order.
        ia, ib = xa_all[inlier], xb_all[inlier]
        order = np.lexsort((np.abs(ib - (r * ia + c)), ia))
        ia, ib = ia[order], ib[order]
        first = np.concatenate([[True], ia[1:] != ia[:-1]])
        found = _ranges(ia[first], ib[first])
        if round_ == 0:
            rate, offset = float(r), float(c)
        segments += found
        left &= ~inlier
        if not found:
            break
    segments.sort(key=lambda s: (s.a_end - s.a_start, s.pairs), reverse=True)
    return Alignment(share_a, share_b, tuple(segments[:MAX_SEGMENTS]), rate, offset)


__all__ = ["Alignment", "Segment", "align", "align_coded", "align_variants", "frame_codes", "variant_codes"]
