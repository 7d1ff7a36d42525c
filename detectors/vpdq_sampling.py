"""Dense vPDQ: a PDQ hash of every decoded frame, each frame shrunk to 64x64 first.

Why every frame: hashes taken at fixed times (one or two a second) land on different frames
when a copy is re-timed (another frame rate) or trimmed by a fraction of a second, and on a
clip with motion those frames are 40-90 bits apart, so a re-upload at 24 fps shared 0.11-0.18
of its frames with the original. Upstream vPDQ hashes every frame; so do we, which makes our
share the upstream rule's share on the same videos.

Why 64x64: PDQ reads a 64x64 down-sample of the luma; at native size its Jarosz box filters
blur the frame first (a window of width/128), so a frame swscale shrinks to 64x64 lands close
to the native hash (on the fixtures: median 10-12 bits from upstream's native-size hashes, every
clip sharing >= 0.99 of its frames with upstream's), while 128x128 (window 1, no blur) aliases:
2 bits from upstream's own "-128x128" hashes but 12-14 from the native ones, and a logo took a
copy's share from upstream's 0.62 to 0.37. Hashing at 64x64 costs ~0.1 ms a frame against
4-18 ms at native size, so decoding the stream, which the old sampler also did in full,
dominates, and hashing all frames costs less per video-minute than hashing two full-size frames
a second did (bench/video_dedup.py measures both).

Bars: when the first second shows static bars (detectors.video_bars), every frame also gets a
hash of the picture inside them (`cropped=True`, listed after the plain hashes), so a copy with
bars added or removed still aligns (detectors.video_align.align_variants).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from detectors.hashing import MediaDecodeError, sniff_mime
from detectors.video_bars import PROBE_SIDE, bar_box
from detectors.vpdq import VpdqFrame

HASH_SIDE = 64
# At most this many frames a second are hashed (a 60 fps video gives every second frame): more
# adds frames 17 ms apart whose hashes repeat their neighbours'.
MAX_FPS = 30.0
# A hostile or very long video stops being hashed here (one hour at 30 fps); the frames hashed
# so far still match and align.
MAX_FRAMES = 108_000
# swscale's interpolation (FFmpeg's default; AREA and BILINEAR measured no better).
_INTERPOLATION = "BICUBIC"
# Frames looked at (one second at 30 fps) to decide whether the video has static bars; if it
# does, every frame also gets a hash of the picture inside them (VpdqFrame.cropped).
PROBE_FRAMES = 30
_CROP_SIDE = 128


def dense_vpdq(
    data: bytes, *, side: int = HASH_SIDE, max_fps: float = MAX_FPS, max_frames: int = MAX_FRAMES
) -> list[VpdqFrame]:
    """PDQ and quality of every frame (at most `max_fps` a second), in time order; for a video
    with static bars, followed by the cropped hashes of the same frames (`cropped=True`).

    Raises MediaDecodeError for bytes that are not a decodable video (a still image
    included), ValueError for a non-positive side, rate or frame limit.
    """
    import pdqhash
    from av.video.reformatter import VideoReformatter

    from detectors.pdq import _hex
    from detectors.video import _decoded_frames, _open

    if side < 16 or max_fps <= 0 or max_frames < 1:
        raise ValueError(f"need side >= 16, max_fps > 0, max_frames >= 1; got {side}, {max_fps}, {max_frames}")
    mime = sniff_mime(data) if data else None
    if mime is not None and not mime.startswith("video/"):
        raise MediaDecodeError(f"not a video: sniffed {mime}")
    container = _open(data)
    # One reformatter per size for the whole walk keeps each swscale context between frames.
    scaler: Any = VideoReformatter()
    prober: Any = VideoReformatter()
    cutter: Any = VideoReformatter()
    gap = 1.0 / max_fps - 1e-3  # a frame this far after the last hashed one is hashed
    out: list[VpdqFrame] = []
    probe: list[tuple[float, Any]] = []  # the first frames at PROBE_SIDE, until bars are decided
    box: tuple[int, int, int, int] | None = None
    decided = False
    cropped: list[VpdqFrame] = []
    last_t = None
    try:
        for t, frame in _decoded_frames(container):
            if last_t is not None and t - last_t < gap:
                continue
            small = scaler.reformat(frame, width=side, height=side, format="rgb24", interpolation=_INTERPOLATION)
            bits, quality = pdqhash.compute(small.to_ndarray())
            out.append(VpdqFrame(t_s=round(t, 3), quality=int(quality), hash_hex=_hex(bits)))
            last_t = t
            if decided and box is not None:
                # After the probe, a smaller resample is enough to cut the bars from (half the
                # cost of cropping at PROBE_SIDE; the box scales with it).
                mid = cutter.reformat(frame, width=_CROP_SIDE, height=_CROP_SIDE, format="rgb24",
                                      interpolation=_INTERPOLATION).to_ndarray()
                cropped.append(_cropped(t, mid, tuple(v * _CROP_SIDE // PROBE_SIDE for v in box), side))
            elif not decided:
                big = prober.reformat(frame, width=PROBE_SIDE, height=PROBE_SIDE, format="rgb24",
                                      interpolation=_INTERPOLATION).to_ndarray()
                if int(big.max()) - int(big.min()) <= 16:
                    pass  # a blank frame (a black intro) says nothing about bars: not probed
                else:
                    probe.append((t, big))
                    if len(probe) >= PROBE_FRAMES:
                        box, decided = bar_box([b for _, b in probe]), True
                        cropped += [_cropped(pt, b, box, side) for pt, b in probe] if box else []
                        probe = []
            if len(out) >= max_frames:
                break
    finally:
        container.close()
    if not out:
        raise MediaDecodeError("corrupt video: no frame decodes")
    if not decided:  # a video shorter than the probe
        box = bar_box([b for _, b in probe])
        cropped = [_cropped(pt, b, box, side) for pt, b in probe] if box else []
    return out + cropped


def _cropped(t: float, big: Any, box: tuple[int, int, int, int], side: int) -> VpdqFrame:
    """The PDQ of the picture inside the bars, scaled to side x side as plain frames are."""
    import pdqhash
    from PIL import Image

    from detectors.pdq import _hex

    top, bottom, left, right = box
    inner = Image.fromarray(big[top:bottom, left:right]).resize((side, side), Image.Resampling.BICUBIC)
    bits, quality = pdqhash.compute(np.asarray(inner))
    return VpdqFrame(t_s=round(t, 3), quality=int(quality), hash_hex=_hex(bits), cropped=True)

__all__ = ["HASH_SIDE", "MAX_FPS", "MAX_FRAMES", "dense_vpdq"]
