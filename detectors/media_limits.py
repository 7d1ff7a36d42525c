"""Decompression-bomb limits for animated images and videos: frames x pixels (issue 16, finding 10).

A 1 KB GIF can declare a 4000x4000 canvas and a million frames, a small video thousands of 8K frames
of nothing: each is cheap to send and ruinous to decode. Still images are capped by pixels alone
(detectors.hashing.MAX_PIXELS); these add the frame dimension.

    check_animation(data, mime, width, height)   MediaDecodeError if frames x canvas is over budget
    gif_frames(data, stop_after) / webp_frames(data, stop_after)   counted from the structure, nothing decoded
    check_video_size(width, height)               per-frame pixel cap, from the stream header
    FrameBudget().spend(width, height)            decoded frames x pixels cap while walking a video
"""
from __future__ import annotations

import struct

from detectors.hashing import MediaDecodeError

MAX_ANIMATION_FRAMES = 10_000
MAX_ANIMATION_PIXELS = 2_000_000_000  # frames x canvas; a 500-frame 1080p animation is 1e9
MAX_VIDEO_FRAME_PIXELS = 8192 * 8192
MAX_VIDEO_FRAMES = 200_000  # over an hour at 50 fps
MAX_DECODED_VIDEO_PIXELS = 40_000_000_000  # e.g. ~20,000 frames of 1080p walked in one pass


def _bomb(message: str) -> MediaDecodeError:
    return MediaDecodeError(f"corrupt media: {message} (decompression bomb)", reason="corrupt image: decompression bomb")


def gif_frames(data: bytes, stop_after: int = MAX_ANIMATION_FRAMES + 1) -> int:
    """Image descriptors in a GIF, walking blocks without decoding; stops counting at `stop_after`."""
    if len(data) < 13:
        return 0
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while pos < len(data) and frames < stop_after:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW size, sub-blocks
            frames += 1
            if pos + 10 > len(data):
                break
            local = data[pos + 9]
            pos += 10 + (3 * 2 ** ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            break  # not GIF structure: Pillow will say what is wrong
        while pos < len(data) and data[pos] != 0:  # skip sub-blocks
            pos += data[pos] + 1
        pos += 1
    return frames


def webp_frames(data: bytes, stop_after: int = MAX_ANIMATION_FRAMES + 1) -> int:
    """ANMF chunks in a WebP RIFF (1 for a still WebP); stops counting at `stop_after`."""
    pos, frames, end = 12, 0, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0]) if len(data) >= 12 else 0
    animated = False
    while pos + 8 <= end and frames < stop_after:
        fourcc, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if fourcc == b"ANMF":
            frames += 1
            animated = True
        pos += 8 + size + (size & 1)
    return frames if animated else 1


def canvas_size(data: bytes, mime: str) -> tuple[int, int]:
    """The canvas a GIF or (extended) WebP declares, read from its header; (0, 0) if unknown."""
    if mime == "image/gif" and len(data) >= 10:
        return struct.unpack_from("<HH", data, 6)
    if mime == "image/webp" and len(data) >= 30 and data[12:16] == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return 0, 0


def check_animation(data: bytes, mime: str, width: int | None = None, height: int | None = None) -> int:
    """The frame count of a GIF or WebP, or MediaDecodeError when frames x pixels is a bomb. Runs
    on the bytes alone (before Pillow opens them: its animated-WebP decoder parses every frame)."""
    if width is None or height is None:
        width, height = canvas_size(data, mime)
    if mime == "image/gif":
        frames = gif_frames(data)
    elif mime == "image/webp":
        frames = webp_frames(data)
    else:
        return 1
    if frames > MAX_ANIMATION_FRAMES:
        raise _bomb(f"an animation of more than {MAX_ANIMATION_FRAMES:,} frames")
    if frames * width * height > MAX_ANIMATION_PIXELS:
        raise _bomb(f"{frames:,} frames of {width}x{height} is over {MAX_ANIMATION_PIXELS:,} pixels")
    return frames


def check_video_size(width: int, height: int) -> None:
    if width * height > MAX_VIDEO_FRAME_PIXELS:
        raise _bomb(f"video frames of {width}x{height} are over {MAX_VIDEO_FRAME_PIXELS:,} pixels")


class FrameBudget:
    """Decoded frames x pixels for one pass over a video."""

    def __init__(self, max_pixels: int | None = None, max_frames: int | None = None):
        self.max_pixels = MAX_DECODED_VIDEO_PIXELS if max_pixels is None else max_pixels
        self.max_frames = MAX_VIDEO_FRAMES if max_frames is None else max_frames
        self.pixels = self.frames = 0

    def spend(self, width: int, height: int) -> None:
        check_video_size(width, height)  # a stream may change size mid-way
        self.frames += 1
        self.pixels += width * height
        if self.frames > self.max_frames:
            raise _bomb(f"more than {self.max_frames:,} frames")
        if self.pixels > self.max_pixels:
            raise _bomb(f"more than {self.max_pixels:,} decoded pixels ({self.frames:,} frames)")
