"""Aligning a video with its authentic original in time and space, and comparing them frame by frame.

A clip cut from a longer original starts somewhere inside it: the time offset is voted from
PDQ-matched frame pairs (item time + offset = original time), then refined per frame by picking
the original frame that best matches each item frame near the voted time (the median absolute
difference of the aligned frames: a face edit covers a small share of the frame, so it does not
steer the choice). The spatial alignment is estimated once, on frames that match well, and
reused for every pair. Each pair is compared as photos are (detectors/reference.py); an alteration
must hold over a stretch of frames, so one bad frame (a decoding glitch, a flash) flags nothing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.reference import Comparison, ReferenceCompareError, Region, compare, find_faces, to_array

MAX_SIDE = 640  # frames are compared at no more than this
MIN_STEP_S = 0.2
MAX_FRAMES = 80
MIN_ALTERED_FRAMES = 3  # the shortest stretch that counts as an alteration
MIN_ALTERED_SHARE = 0.15  # ... and this share of the aligned frames
VOTE_BIN_S = 0.25


@dataclass
class VideoComparison:
    altered: bool
    offset_s: float  # item time + offset = reference time
    aligned: int  # item frames with an aligned reference frame
    altered_frames: int
    segments: list[tuple[float, float]]  # item-time ranges of altered frames
    regions: list[Region]  # the altered regions, in reference coordinates, faces first
    frames: list[dict[str, Any]] = field(default_factory=list)  # per aligned frame: t, ref_t, altered
    heatmap: np.ndarray | None = None  # of the most altered frame
    heat_frame: np.ndarray | None = None  # that frame of the reference, for the heatmap's background

    @property
    def face(self) -> bool:
        return any(r.face for r in self.regions)


def sample_times(duration_s: float) -> list[float]:
    step = max(MIN_STEP_S, duration_s / MAX_FRAMES)
    return [round(i * step, 3) for i in range(int(duration_s / step) + 1)]


def item_frames(data: bytes) -> list[tuple[float, np.ndarray]]:
    from detectors.video import frames_at, video_duration_s

    frames = frames_at(data, sample_times(video_duration_s(data)), max_side=MAX_SIDE)
    return [(f.t_s, to_array(f.image)) for f in frames]


def vote_offset(item_hashes: list[tuple[float, str]], ref_hashes: list[tuple[float, str]],
                max_distance: int) -> tuple[float, int] | None:
    """(offset, supporting item frames) of the time shift most frame matches agree on, or None."""
    from storage.references import _bits, _distances

    if not item_hashes or not ref_hashes:
        return None
    dist = _distances(_bits([h for _, h in item_hashes]), _bits([h for _, h in ref_hashes]))
    votes: Counter[int] = Counter()
    voters: dict[int, set[int]] = {}
    for i, j in zip(*np.nonzero(dist <= max_distance)):
        b = round((ref_hashes[j][0] - item_hashes[i][0]) / VOTE_BIN_S)
        for nb in (b - 1, b, b + 1):  # a frame between two bins supports both
            voters.setdefault(nb, set()).add(int(i))
        votes[b] += 1
    if not votes:
        return None
    best = max(voters, key=lambda b: (len(voters[b]), votes.get(b, 0)))
    return best * VOTE_BIN_S, len(voters[best])


def _decode_window(data: bytes, start: float, end: float) -> list[tuple[float, np.ndarray]]:
    from detectors.video import _decoded_frames, _open, _to_image

    container = _open(data)
    out = []
    try:
        for t, frame in _decoded_frames(container):
            if t < start:
                continue
            if t > end:
                break
            out.append((t, to_array(_to_image(frame, MAX_SIDE))))
    finally:
        container.close()
    return out


def _thumb_error(copy: np.ndarray, original: np.ndarray, matrix: np.ndarray) -> float:
    """Median absolute grey difference after warping: how well two frames match in time."""
    import cv2

    side = 96
    s = side / max(original.shape[:2])
    size = (max(8, round(original.shape[1] * s)), max(8, round(original.shape[0] * s)))
    m = np.array([[s, 0, 0], [0, s, 0]]) @ np.vstack([matrix, [0, 0, 1]])
    warped = cv2.warpAffine(cv2.cvtColor(copy, cv2.COLOR_RGB2GRAY), m, size)
    cover = cv2.warpAffine(np.full(copy.shape[:2], 255, np.uint8), m, size) > 0
    small = cv2.resize(cv2.cvtColor(original, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
    if cover.sum() < 10:
        return float("inf")
    return float(np.median(np.abs(warped.astype(np.float32) - small.astype(np.float32))[cover]))


def compare_video(item: list[tuple[float, np.ndarray]], ref_data: bytes, offset_s: float) -> VideoComparison:
    """Compare sampled item frames with the reference video at a coarse offset.

    Raises ReferenceCompareError when no frame pair can be aligned in space."""
    if not item:
        raise ReferenceCompareError("the item has no frames to compare")
    span = item[-1][0]
    window = _decode_window(ref_data, offset_s - 1.0, offset_s + span + 1.0)
    if not window:
        raise ReferenceCompareError(f"the reference has no frames near {offset_s:.1f} s")
    ref_times = np.array([t for t, _ in window])

    def nearest(t: float) -> int:
        return int(np.argmin(np.abs(ref_times - t)))

    # Space: the first well-aligned pair, trying frames from the middle outwards.
    order = sorted(range(len(item)), key=lambda i: abs(i - len(item) // 2))
    matrix = None
    for i in order[:8]:
        t, frame = item[i]
        try:
            matrix = _matrix_of(frame, window[nearest(t + offset_s)][1])
            break
        except ReferenceCompareError:
            continue
    if matrix is None:
        raise ReferenceCompareError("no frame of the item aligns with the reference around the matched time")
    # Time: per item frame, the best-matching reference frame within 0.6 s of the voted time.
    picks = []
    for t, frame in item:
        near = np.flatnonzero(np.abs(ref_times - (t + offset_s)) <= 0.6)
        if near.size == 0:
            continue
        errs = [_thumb_error(frame, window[j][1], matrix) for j in near]
        picks.append((t, int(near[int(np.argmin(errs))]), min(errs)))
    if not picks:
        raise ReferenceCompareError("the item's frames fall outside the reference")
    refined = float(np.median([ref_times[j] - t for t, j, _ in picks]))
    results: list[tuple[float, float, Comparison]] = []
    faces_cache: dict[int, list] = {}
    for (t, frame), pick in zip(item, picks):
        # The best frame within one frame interval of the refined time.
        near = np.flatnonzero(np.abs(ref_times - (t + refined)) <= 1.6 * _frame_interval(ref_times))
        j = pick[1] if near.size == 0 else int(near[int(np.argmin([_thumb_error(frame, window[k][1], matrix) for k in near]))])
        if j not in faces_cache:
            faces_cache[j] = find_faces(window[j][1])
        try:
            results.append((t, float(ref_times[j]), compare(frame, window[j][1], faces=faces_cache[j], matrix=matrix)))
        except ReferenceCompareError:
            continue
    return _summarise(results, refined, window)


def _frame_interval(times: np.ndarray) -> float:
    return float(np.median(np.diff(times))) if times.size > 1 else 0.04


def _matrix_of(copy: np.ndarray, original: np.ndarray) -> np.ndarray:
    from detectors.reference import _shrink, estimate_alignment, estimate_alignment_ecc

    small_c, sc = _shrink(copy, 1024)
    small_o, so = _shrink(original, 1024)
    try:
        m, _ = estimate_alignment(small_c, small_o)
        return np.hstack([m[:, :2] * sc / so, m[:, 2:] / so])
    except ReferenceCompareError:
        return estimate_alignment_ecc(copy, original)


def _summarise(results: list[tuple[float, float, Comparison]], offset: float,
               window: list[tuple[float, np.ndarray]]) -> VideoComparison:
    flags = [c.altered for _, _, c in results]
    segments: list[tuple[float, float]] = []
    run: list[int] = []
    for i, flag in enumerate(flags + [False]):
        if flag:
            run.append(i)
        elif run:
            if len(run) >= MIN_ALTERED_FRAMES:
                segments.append((results[run[0]][0], results[run[-1]][0]))
            run = []
    in_segments = [i for i, (t, _, _) in enumerate(results) if any(a <= t <= b for a, b in segments)]
    altered_frames = sum(flags)
    altered = bool(segments) and altered_frames >= MIN_ALTERED_SHARE * max(1, len(results))
    regions = _union_regions([results[i][2] for i in in_segments if results[i][2].altered])
    worst = max(range(len(results)), key=lambda i: max((r.mean_diff * r.w * r.h for r in results[i][2].alterations), default=0),
                default=None)
    heat = results[worst][2].heatmap if worst is not None else None
    ref_frame = None
    if worst is not None:
        ref_t = results[worst][1]
        ref_frame = min(window, key=lambda w: abs(w[0] - ref_t))[1]
    frames = [{"t": round(t, 2), "ref_t": round(rt, 2), "altered": c.altered} for t, rt, c in results]
    return VideoComparison(altered=altered, offset_s=round(offset, 2), aligned=len(results),
                           altered_frames=altered_frames, segments=[(round(a, 2), round(b, 2)) for a, b in segments],
                           regions=regions, frames=frames, heatmap=heat, heat_frame=ref_frame)


def _union_regions(comparisons: list[Comparison]) -> list[Region]:
    """One box per kind (face / other) spanning every altered frame's regions of that kind."""
    out = []
    for face in (True, False):
        rs = [r for c in comparisons for r in c.alterations if r.face == face]
        if not rs:
            continue
        x0, y0 = min(r.x for r in rs), min(r.y for r in rs)
        x1, y1 = max(r.x + r.w for r in rs), max(r.y + r.h for r in rs)
        out.append(Region(x0, y0, x1 - x0, y1 - y0, mean_diff=float(np.mean([r.mean_diff for r in rs])),
                          face=face, overlay=False))
    return out
