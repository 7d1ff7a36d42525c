"""Issue 16, finding 10: animated GIF/WebP and video decompression bombs (frames x pixels). Each
bomb is refused from its structure or as its frames are walked, with a clear MediaDecodeError."""
from __future__ import annotations

import io
import struct
import time

import numpy as np
import pytest
from PIL import Image

from console.image_search import hash_upload
from detectors import media_limits
from detectors.hashing import MediaDecodeError, decode_image, image_phash
from detectors.media_limits import FrameBudget, gif_frames, webp_frames
from detectors.video import sample_frames

pytestmark = pytest.mark.timeout(120)


def gif_bomb(frames: int, side: int = 4000) -> bytes:
    """A GIF whose canvas is side x side, with `frames` 1x1 frames: a few bytes each."""
    head = b"GIF89a" + struct.pack("<HH", side, side) + bytes([0x80, 0, 0]) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return head + frame * frames + b"\x3b"


def webp_bomb(frames: int, side: int = 4000) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x02, 0, 0, 0]) + (side - 1).to_bytes(3, "little") * 2
    anim = b"ANIM" + struct.pack("<I", 6) + b"\x00" * 6
    anmf = b"ANMF" + struct.pack("<I", 16) + b"\x00" * 16
    body = b"WEBP" + vp8x + anim + anmf * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_frame_counting_reads_structure_only():
    real = io.BytesIO()
    Image.new("RGB", (8, 8)).save(real, "GIF", save_all=True, append_images=[Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))])
    assert gif_frames(real.getvalue()) == 3
    assert gif_frames(gif_bomb(500)) == 500
    assert webp_frames(webp_bomb(7)) == 7
    still = io.BytesIO()
    Image.new("RGB", (8, 8)).save(still, "WEBP")
    assert webp_frames(still.getvalue()) == 1


@pytest.mark.parametrize("bomb", [gif_bomb(200), gif_bomb(media_limits.MAX_ANIMATION_FRAMES + 5, side=10), webp_bomb(200)],
                         ids=["gif-canvas", "gif-frames", "webp"])
def test_animated_bombs_are_refused_before_decoding(bomb):
    assert len(bomb) < 300_000  # cheap to send
    started = time.perf_counter()
    for decode in (decode_image, image_phash, hash_upload):
        with pytest.raises(MediaDecodeError, match="decompression bomb"):
            decode(bomb)
    assert time.perf_counter() - started < 5


def test_a_normal_animation_still_decodes():
    buf = io.BytesIO()
    frames = [Image.new("RGB", (320, 240), (i * 20, 0, 0)) for i in range(10)]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue()).size == (320, 240)


def test_video_frames_times_pixels_budget(monkeypatch):
    from demo_platform.video import encode_mp4

    clip = encode_mp4([np.full((160, 128, 3), i * 8, dtype=np.uint8) for i in range(30)])
    assert len(sample_frames(clip, n=4)) == 4  # within the budget
    monkeypatch.setattr(media_limits, "MAX_DECODED_VIDEO_PIXELS", 128 * 160 * 10)
    with pytest.raises(MediaDecodeError, match="decompression bomb"):
        sample_frames(clip, n=4)
    monkeypatch.setattr(media_limits, "MAX_VIDEO_FRAME_PIXELS", 100 * 100)
    with pytest.raises(MediaDecodeError, match="128x160 are over"):
        sample_frames(clip, n=4)
    budget = FrameBudget(max_pixels=10**12, max_frames=2)
    budget.spend(10, 10)
    budget.spend(10, 10)
    with pytest.raises(MediaDecodeError, match="more than 2 frames"):
        budget.spend(10, 10)
