"""Aligning a video with its authentic original in time and space, and comparing them frame by frame.

A clip cut from a longer original starts somewhere inside it. The time offset (item time +
offset = original time) is first voted from PDQ-matched frame pairs; a static shot matches
everywhere, so every offset near the best vote is kept, and pixels decide between them: the
offset under which the item's frame-to-frame changes best match the original's (what stands
still cancels out of a frame difference, with registration error and a steady pan; a talking
mouth does not). Space (a similarity transform, detectors/reference.py) and time are estimated
in turn, since a pan looks like a time shift. Each pair is then aligned on its own and compared
as photos are; an alteration must hold over a stretch of frames (single-frame gaps bridged), so
one bad frame (a decoding glitch, a flash) flags nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.reference import Comparison, ReferenceCompareError, Region, compare, find_faces, to_array

MAX_SIDE = 480  # frames are compared at no more than this
MIN_STEP_S = 0.2
MAX_FRAMES = 80
MIN_ALTERED_FRAMES = 3  # the shortest stretch that counts as an alteration
MIN_ALTERED_SHARE = 0.15  # ... and this share of the aligned frames
VOTE_BIN_S = 0.25
MAX_SEARCH_S = 30.0  # widest span of time offsets searched frame by frame
MAX_WINDOW_FRAMES = 400  # reference frames held at once (at MAX_SIDE: ~150 MB at most)


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
                max_distance: int) -> tuple[float, float, int] | None:
    """(lowest, highest offset, supporting item frames) of the time shifts that most frame
    matches agree on, or None. A static shot (a speaker at a lectern) matches everywhere, so
    every shift that nearly ties with the best is kept: pixels decide between them later."""
    from storage.references import _bits, _distances

    if not item_hashes or not ref_hashes:
        return None
    dist = _distances(_bits([h for _, h in item_hashes]), _bits([h for _, h in ref_hashes]))
    voters: dict[int, set[int]] = {}
    for i, j in zip(*np.nonzero(dist <= max_distance)):
        b = round((ref_hashes[j][0] - item_hashes[i][0]) / VOTE_BIN_S)
        for nb in (b - 1, b, b + 1):  # a frame between two bins supports both
            voters.setdefault(nb, set()).add(int(i))
    if not voters:
        return None
    support = max(len(v) for v in voters.values())
    near_best = [b for b, v in voters.items() if len(v) >= 0.8 * support]
    best = max(voters, key=lambda b: len(voters[b]))
    lo, hi = min(near_best), max(near_best)
    # Keep the searched span bounded around the best bin (decoding it is the cost).
    lo, hi = max(lo, best - round(MAX_SEARCH_S / 2 / VOTE_BIN_S)), min(hi, best + round(MAX_SEARCH_S / 2 / VOTE_BIN_S))
    return lo * VOTE_BIN_S, hi * VOTE_BIN_S, support


def _decode_window(data: bytes, start: float, end: float) -> list[tuple[float, np.ndarray]]:
    """The reference's frames between `start` and `end` seconds, at most MAX_WINDOW_FRAMES of
    them (a long window keeps evenly spaced frames: memory stays bounded on long originals, at
    the cost of time precision there)."""
    from detectors.video import _decoded_frames, _open, _to_image

    min_gap = max(0.0, (end - start) / MAX_WINDOW_FRAMES)
    container = _open(data)
    out: list[tuple[float, np.ndarray]] = []
    try:
        for t, frame in _decoded_frames(container):
            if t < start:
                continue
            if t > end:
                break
            if out and t - out[-1][0] < min_gap - 1e-6:
                continue
            out.append((t, to_array(_to_image(frame, MAX_SIDE))))
    finally:
        container.close()
    return out


THUMB_SIDE = 192
TIME_TRIM = 0.5  # share of frames (the best-matching) that score a time offset


def _thumb_size(shape: tuple[int, ...]) -> tuple[int, int]:
    s = THUMB_SIDE / max(shape[:2])
    return max(8, round(shape[1] * s)), max(8, round(shape[0] * s))


def _thumb(original: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)
    return _blur(cv2.resize(grey, _thumb_size(original.shape), interpolation=cv2.INTER_AREA).astype(np.float32))


def _blur(thumb: np.ndarray) -> np.ndarray:
    """Blurred so a sub-pixel registration error does not outweigh a mouth that moved."""
    import cv2

    return cv2.GaussianBlur(thumb, (0, 0), 1.5)


def _warped_thumb(copy: np.ndarray, matrix: np.ndarray, ref_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The copy frame warped onto a reference thumbnail, and the mask of pixels it covers."""
    import cv2

    size = _thumb_size(ref_shape)
    s = size[0] / ref_shape[1]
    m = np.array([[s, 0, 0], [0, s, 0]]) @ np.vstack([matrix, [0, 0, 1]])
    grey = cv2.cvtColor(copy, cv2.COLOR_RGB2GRAY)
    pre = min(1.0, 2.0 * s / max(1e-6, float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))))
    if pre < 1.0:  # shrink first so the warp does not alias
        grey = cv2.resize(grey, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        m = m @ np.array([[1 / pre, 0, 0], [0, 1 / pre, 0], [0, 0, 1]])
    warped = cv2.warpAffine(grey, m, size, flags=cv2.INTER_AREA).astype(np.float32)
    cover = cv2.erode(cv2.warpAffine(np.full(grey.shape, 255, np.uint8), m, size), np.ones((3, 3), np.uint8)) > 0
    return warped, cover


def compare_video(item: list[tuple[float, np.ndarray]], ref_data: bytes, offsets: tuple[float, float]) -> VideoComparison:
    """Compare sampled item frames with the reference video at the best offset in `offsets` (lo, hi).

    Raises ReferenceCompareError when no frame pair can be aligned in space."""
    if not item:
        raise ReferenceCompareError("the item has no frames to compare")
    span = item[-1][0]
    lo, hi = offsets[0] - 0.5, offsets[1] + 0.5
    offset_s = (offsets[0] + offsets[1]) / 2
    window = _decode_window(ref_data, lo, hi + span)
    if not window:
        raise ReferenceCompareError(f"the reference has no frames near {offset_s:.1f} s")
    ref_times = np.array([t for t, _ in window])

    def nearest(t: float) -> int:
        return int(np.argmin(np.abs(ref_times - t)))

    # Space and time depend on each other when the camera moves (a pan shifts the picture the
    # way a time shift does), so they are estimated in turn: space at the voted time, time under
    # that space, space again at the found time, time again near it.
    ref_thumbs = [_thumb(f) for _, f in window]
    item_t = np.array([t for t, _ in item])
    matrix = _space(item, window, nearest, offset_s)
    ranked = _time(item, item_t, window, ref_times, ref_thumbs, matrix, lo, hi)
    refined = ranked[0][0]
    for _ in range(2):
        matrix = _space(item, window, nearest, refined)
        ranked = _time(item, item_t, window, ref_times, ref_thumbs, matrix, refined - 0.5, refined + 0.5)
        if abs(ranked[0][0] - refined) < 1e-6:
            break
        refined = ranked[0][0]
    # Where two offsets score alike, a one-frame slip on a talking face looks like a mouth edit:
    # compare under the best two and keep the one that explains the copy with fewer altered
    # frames (a real edit stays altered under both).
    interval = _frame_interval(ref_times)
    options = [ranked[0][0]] + [c for c, _ in ranked[1:] if abs(c - ranked[0][0]) >= 0.9 * interval][:1]
    faces_cache: dict[int, list] = {}
    best: tuple[int, float, list] | None = None
    for offset in options:
        results = _compare_at(item, window, ref_times, nearest, offset, matrix, faces_cache)
        altered = sum(c.altered for _, _, c in results)
        if best is None or altered < best[0]:
            best = (altered, offset, results)
    assert best is not None
    return _summarise(best[2], best[1], window)


def _compare_at(item, window, ref_times, nearest, offset: float, matrix: np.ndarray,
                faces_cache: dict[int, list]) -> list[tuple[float, float, Comparison]]:
    results: list[tuple[float, float, Comparison]] = []
    for t, frame in item:
        j = nearest(t + offset)
        if abs(ref_times[j] - (t + offset)) > _frame_interval(ref_times):
            continue
        if j not in faces_cache:
            faces_cache[j] = find_faces(window[j][1])
        try:
            # Each pair aligned on its own where it can be (the camera may move differently from
            # the global estimate), else with the clip's transform.
            try:
                local = _matrix_of(frame, window[j][1])
            except ReferenceCompareError:
                local = matrix
            results.append((t, float(ref_times[j]), compare(frame, window[j][1], faces=faces_cache[j], matrix=local)))
        except ReferenceCompareError:
            continue
    return results


def _space(item, window, nearest, offset_s: float) -> np.ndarray:
    """The copy -> original transform from the first pair that aligns, middle frames first."""
    order = sorted(range(len(item)), key=lambda i: abs(i - len(item) // 2))
    for i in order[:8]:
        t, frame = item[i]
        try:
            return _matrix_of(frame, window[nearest(t + offset_s)][1])
        except ReferenceCompareError:
            continue
    raise ReferenceCompareError("no frame of the item aligns with the reference around the matched time")


def _time(item, item_t, window, ref_times, ref_thumbs, matrix, lo: float, hi: float) -> list[tuple[float, float]]:
    """The offsets in [lo, hi] ranked by how well the item's frame-to-frame changes match the
    reference's over the same stretch (best first, with their scores).

    Changes, not frames: what stands still (the set, the speaker's outline) cancels out of a
    frame difference, and with it any sub-pixel registration error and a steady camera pan;
    what is left is what moves on its own (a talking mouth, gestures), and that fixes the time
    to the frame. The better half of the frame pairs decide, so an altered stretch cannot pull
    the offset. Candidates: the reference's frame times."""
    item_thumbs = [(_blur(a), c) for a, c in (_warped_thumb(f, matrix, window[0][1].shape) for _, f in item)]
    interval = _frame_interval(ref_times)
    ref_stack = np.stack(ref_thumbs)
    scored: list[tuple[float, float]] = []
    for cand in sorted({round(float(rt - item_t[0]), 3) for rt in ref_times}):
        if not lo <= cand <= hi:
            continue
        idx = np.clip(np.searchsorted(ref_times, item_t + cand), 1, len(ref_times) - 1)
        idx = np.where(np.abs(ref_times[idx - 1] - (item_t + cand)) < np.abs(ref_times[idx] - (item_t + cand)), idx - 1, idx)
        ok = np.abs(ref_times[idx] - (item_t + cand)) <= 0.6 * interval + 0.02
        errs = []
        for k in range(len(item) - 1):
            if not (ok[k] and ok[k + 1]) or idx[k] == idx[k + 1]:
                continue
            cover = item_thumbs[k][1] & item_thumbs[k + 1][1]
            if cover.sum() < 0.3 * cover.size:
                continue
            d_item = item_thumbs[k + 1][0] - item_thumbs[k][0]
            d_ref = ref_stack[idx[k + 1]] - ref_stack[idx[k]]
            errs.append(float(np.abs(d_item - d_ref)[cover].mean()))
        if len(errs) >= max(2, (len(item) - 1) // 2):
            scored.append((cand, float(np.mean(sorted(errs)[: max(1, int(TIME_TRIM * len(errs)))]))))
    if not scored:
        raise ReferenceCompareError("the item's frames fall outside the reference")
    return sorted(scored, key=lambda cs: cs[1])


def _ecc_shift(moving: np.ndarray, fixed: np.ndarray) -> tuple[float, float]:
    """The (dx, dy) that moves `moving` onto `fixed` (thumbnails), (0, 0) when ECC fails."""
    import cv2

    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _cc, warp = cv2.findTransformECC(fixed, moving, warp, cv2.MOTION_TRANSLATION,
                                         (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-3), None, 3)
    except cv2.error:
        return 0.0, 0.0
    return -float(warp[0, 2]), -float(warp[1, 2])


def _shifted(thumb: np.ndarray, cover: np.ndarray, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    if shift == (0.0, 0.0):
        return thumb, cover
    m = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], dtype=np.float64)
    size = (thumb.shape[1], thumb.shape[0])
    moved_cover = cv2.warpAffine(cover.astype(np.uint8) * 255, m, size, flags=cv2.INTER_NEAREST)
    return cv2.warpAffine(thumb, m, size), cv2.erode(moved_cover, np.ones((3, 3), np.uint8)) > 0


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
    # Runs of altered frames, bridging single unaltered frames (an edited mouth that happens to
    # be nearly closed in one sampled frame): a run counts with MIN_ALTERED_FRAMES altered frames.
    segments: list[tuple[float, float]] = []
    run: list[int] = []
    gap = 0
    for i, flag in enumerate(flags + [False, False]):
        if flag:
            run.append(i)
            gap = 0
            continue
        gap += 1
        if run and gap > 1:
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
