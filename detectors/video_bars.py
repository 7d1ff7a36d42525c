"""Static bars around a video's picture (letterbox, pillarbox, padding), found over its first frames.

A copy with bars added (a 4:3 re-frame, a vertical repost of a horizontal clip) changes every
pixel row's content, so every frame's PDQ moves far past 31 bits, upstream's too. A border row
or column is a bar when it is one flat colour and stays so across the probed frames: static and
uniform, which picture content almost never is for a second or more. Frames are looked at on a
256x256 resample (relative coordinates are all that is needed).
"""
from __future__ import annotations

import numpy as np

PROBE_SIDE = 256
MAX_SPREAD = 16  # grey levels a bar row may vary over its width and over time (coding noise)
MIN_BAR = 8  # px of PROBE_SIDE (3 %): thinner borders are left alone
MIN_KEEP = 0.4  # what is left must be at least this share of each side


def _run(flat: np.ndarray) -> int:
    """How many leading entries are True."""
    return int(np.argmin(flat)) if not flat.all() else len(flat)


def bar_box(frames: list[np.ndarray]) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the picture inside static bars, in PROBE_SIDE pixels
    (bottom and right exclusive), or None when there are no bars worth cutting."""
    if not frames:
        return None
    grey = np.stack([f.mean(axis=2) if f.ndim == 3 else f for f in frames]).astype(np.float32)
    h, w = grey.shape[1:]
    top = bottom = left = right = 0
    # Bars of two colours nest (grey letterbox added around a black-pillarboxed clip): each pass
    # looks for rows within the columns still kept, then columns within the rows still kept.
    # A found bar's blurred inner edge (2 px) is left out of the other direction's check.
    def edge(n: int) -> int:
        return n + 2 if n else 0

    for _pass in range(3):
        inner = grey[:, :, edge(left) : w - edge(right)]
        rows = (inner.max(axis=(0, 2)) - inner.min(axis=(0, 2))) <= MAX_SPREAD
        top, bottom = _run(rows), _run(rows[::-1])
        if top + bottom >= h - 8:
            return None  # every row flat: a blank or still video, not a picture inside bars
        inner = grey[:, edge(top) : h - edge(bottom), :]
        cols = (inner.max(axis=(0, 1)) - inner.min(axis=(0, 1))) <= MAX_SPREAD
        left, right = _run(cols), _run(cols[::-1])
        if left + right >= w - 8:
            return None
    # The resample blurs each bar's inner edge over a pixel or two: cut those too.
    sides = [n + 2 if n >= MIN_BAR else 0 for n in (top, bottom, left, right)]
    if not any(sides):
        return None
    box = (sides[0], h - sides[1], sides[2], w - sides[3])
    if box[1] - box[0] < MIN_KEEP * h or box[3] - box[2] < MIN_KEEP * w:
        return None  # a flat or still video, not a picture inside bars
    return box


__all__ = ["PROBE_SIDE", "bar_box"]
