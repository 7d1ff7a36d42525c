"""vPDQ-style video hashing: a PDQ hash per sampled frame, and a video-level match rule.

Follows Meta's vPDQ (ThreatExchange `vpdq/`): frames are taken every `seconds_per_hash`
seconds, each is PDQ-hashed with its quality, and two videos match when enough of each one's
good frames have a close frame anywhere in the other (distance <= 31, quality >= 50 upstream).
Frames are decoded with PyAV (detectors.video), so hashes can differ from upstream's FFmpeg
CLI pipeline by a few bits per frame; tests/test_vpdq.py checks them against upstream's hashes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from detectors.hashing import MediaDecodeError, sniff_mime
from detectors.pdq import PDQ_HEX_CHARS, PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF, pdq_from_image

# Frames are hashed at their native size, as upstream does: shrinking them to 512 px first
# moved hashes 4-24 bits away from upstream's on the fixtures and saved no time (decoding
# every frame dominates). Callers may still pass a max side for very large videos.
VPDQ_MAX_SIDE: int | None = None
# Both videos must have at least this share of their good frames found in the other. Taken
# both ways, so a short clip does not match a long compilation that merely contains it (its
# share is high one way, low the other); half, not all, so trims, intros and a changed ending
# still match. The same rule as detectors.hashing.video_match.
VPDQ_MATCH_SHARE = 0.5


@dataclass(frozen=True)
class VpdqFrame:
    t_s: float  # seconds from the first decoded frame
    quality: int  # PDQ quality 0-100
    hash_hex: str  # 64 hex chars
    # A hash of the frame with the video's static bars (letterbox, pillarbox) cut away
    # (detectors.vpdq_sampling): an extra hash beside the plain one, never in upstream's format.
    cropped: bool = False


def frames_from_rows(rows) -> list[VpdqFrame]:
    """Stored rows [t_s, quality, hash] (plain) or [t_s, quality, hash, 1] (bars cropped)."""
    return [VpdqFrame(float(r[0]), int(r[1]), str(r[2]), bool(r[3]) if len(r) > 3 else False) for r in rows or []]


def frames_to_rows(frames) -> list[list]:
    return [[f.t_s, f.quality, f.hash_hex, 1] if f.cropped else [f.t_s, f.quality, f.hash_hex] for f in frames]


def vpdq_hashes(
    data: bytes, seconds_per_hash: float = 1.0, *, max_side: int | None = VPDQ_MAX_SIDE
) -> list[VpdqFrame]:
    """PDQ hashes of the frames at 0, s, 2s, ... seconds (s = seconds_per_hash), in time order.

    Each hash is of the first frame at or after its time. Raises MediaDecodeError for bytes
    that are not a decodable video (still images included), ValueError for a non-positive
    `seconds_per_hash`.
    """
    from detectors.video import frames_at, video_duration_s

    if not seconds_per_hash > 0:
        raise ValueError(f"seconds_per_hash must be > 0, got {seconds_per_hash}")
    # FFmpeg opens a lone JPEG or PNG as a one-frame "video"; a still is not a video here.
    mime = sniff_mime(data) if data else None
    if mime is not None and not mime.startswith("video/"):
        raise MediaDecodeError(f"not a video: sniffed {mime}")
    duration = video_duration_s(data)
    n = int(duration / seconds_per_hash + 1e-9) + 1
    offsets = [i * seconds_per_hash for i in range(n)]
    frames = frames_at(data, offsets, max_side=max_side)
    out = []
    for frame in frames:
        hash_hex, quality = pdq_from_image(frame.image)
        out.append(VpdqFrame(t_s=frame.t_s, quality=quality, hash_hex=hash_hex))
    return out


def _bits(frames: Sequence[VpdqFrame], quality: int):
    import numpy as np

    # The upstream rule reads plain frame hashes only.
    good = [f.hash_hex for f in frames if f.quality >= quality and not f.cropped]
    for h in good:
        if len(h) != PDQ_HEX_CHARS:
            raise ValueError(f"not a PDQ hash (need {PDQ_HEX_CHARS} hex chars, got {len(h)}): {h!r}")
    if not good:
        return np.zeros((0, 256), dtype=bool)
    try:
        raw = np.frombuffer(bytes.fromhex("".join(good)), dtype=np.uint8).reshape(len(good), 32)
    except ValueError:
        raise ValueError("vPDQ frame hashes must be hex") from None
    return np.unpackbits(raw, axis=1).astype(bool)


def vpdq_match(
    a: Sequence[VpdqFrame],
    b: Sequence[VpdqFrame],
    distance: int = PDQ_MATCH_DISTANCE,
    quality: int = PDQ_QUALITY_CUTOFF,
) -> tuple[float, float]:
    """(share of a's good frames with a frame in b within `distance`, and the same of b in a).

    Only frames with quality >= `quality` count, on both sides; a video without good frames
    has share 0.0. Any frame of the other video may match, wherever it is in time, so cuts
    and re-ordering do not break a match.
    """
    import numpy as np

    xa, xb = _bits(a, quality), _bits(b, quality)
    if len(xa) == 0 or len(xb) == 0:
        return 0.0, 0.0
    # Pairwise Hamming distances by matrix products of the bit matrices: (a != b) counts
    # = |a| + |b| - 2 a.b for 0/1 vectors.
    fa, fb = xa.astype(np.int32), xb.astype(np.int32)
    dist = fa.sum(1)[:, None] + fb.sum(1)[None, :] - 2 * (fa @ fb.T)
    close = dist <= distance
    return float(close.any(axis=1).mean()), float(close.any(axis=0).mean())


def vpdq_is_match(
    a: Sequence[VpdqFrame],
    b: Sequence[VpdqFrame],
    distance: int = PDQ_MATCH_DISTANCE,
    quality: int = PDQ_QUALITY_CUTOFF,
    min_share: float = VPDQ_MATCH_SHARE,
) -> bool:
    """Whether two videos are copies: both shares of `vpdq_match` reach `min_share`."""
    share_a, share_b = vpdq_match(a, b, distance, quality)
    return share_a >= min_share and share_b >= min_share


__all__ = ["MediaDecodeError", "VpdqFrame", "frames_from_rows", "frames_to_rows", "vpdq_hashes", "vpdq_is_match", "vpdq_match"]
