"""The edits platforms and re-uploaders make to a video, for tests and bench/video_dedup.py.

Each edit decodes the clip, changes frames or timing, and re-encodes with libx264 (PyAV): a new
frame rate (frames kept on the new time grid, as FFmpeg's fps filter does), a trim at either
end, grey bars, a logo, a resize, a lower-quality re-encode. Unlike demo_platform.video these
encodes need not be byte-reproducible, so any even frame size is allowed.
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np


def decode(data: bytes) -> tuple[list[np.ndarray], float]:
    """(RGB frames, frames per second) of a clip."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError("clip has no frames")
    return frames, fps


def encode(frames: list[np.ndarray], fps: float, *, crf: int = 23) -> bytes:
    """H.264/yuv420p MP4 of RGB frames; odd sizes are cropped by one pixel to even."""
    import av

    if not frames:
        raise ValueError("cannot encode a video with no frames")
    h, w = frames[0].shape[:2]
    h, w = h - h % 2, w - w % 2
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr[:h, :w]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def retime(frames: list[np.ndarray], fps: float, new_fps: float) -> list[np.ndarray]:
    """The frames shown at each tick of a `new_fps` clock (FFmpeg's fps filter, round down)."""
    n = int(len(frames) / fps * new_fps)
    return [frames[min(len(frames) - 1, int(i * fps / new_fps + 1e-6))] for i in range(max(1, n))]


def trim(frames: list[np.ndarray], head: float, tail: float) -> list[np.ndarray]:
    """Drop the first `head` and last `tail` shares of the frames."""
    if head < 0 or tail < 0 or head + tail >= 1:
        raise ValueError(f"trim shares must be >= 0 and leave something, got {head}, {tail}")
    n = len(frames)
    return frames[int(n * head) : n - int(n * tail)]


def bars(frames: list[np.ndarray], share: float = 0.12, grey: int = 128) -> list[np.ndarray]:
    """Grey bars above and below (letterbox), each `share` of the new height."""
    out = []
    for f in frames:
        pad = int(f.shape[0] * share / (1 - 2 * share))
        out.append(np.pad(f, ((pad, pad), (0, 0), (0, 0)), constant_values=grey))
    return out


def logo(frames: list[np.ndarray], share: float = 0.15) -> list[np.ndarray]:
    """A white box with a dark mark in the top-right corner, `share` of the width."""
    out = []
    for f in frames:
        g = f.copy()
        side = max(4, int(g.shape[1] * share))
        g[8 : 8 + side // 2, -8 - side : -8] = 240
        g[8 + side // 8 : 8 + side // 2 - side // 8, -8 - side + side // 8 : -8 - side // 8] = 30
        out.append(g)
    return out


def resize(frames: list[np.ndarray], scale: float) -> list[np.ndarray]:
    from PIL import Image

    h, w = frames[0].shape[:2]
    size = (max(2, int(w * scale)), max(2, int(h * scale)))
    return [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)) for f in frames]


__all__ = ["bars", "decode", "encode", "logo", "resize", "retime", "trim"]
