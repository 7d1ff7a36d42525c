"""Short H.264 clips for the demo world (PyAV, libx264, yuv420p, MP4).

A clip is a slow pan across a generated scene with fresh sensor noise every frame. A manipulated
clip gets the same face swap as manipulated photos on every frame, with the same donor face
throughout (as a face-swap tool would produce). Encoding is single-threaded so the bytes are
the same on every run.
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

from demo_platform import imagery

# Width a multiple of 128: with other widths (320, 448, 288...) libx264 via PyAV produced
# different bytes for the same frames from run to run (measured over widths 256-448). The likely
# cause: FFmpeg pads the chroma rows (width / 2) of the frames it allocates to 64 bytes and the
# uninitialised padding leaks into the encode; chroma widths that are multiples of 64 have no
# padding. Determinism of the world's bytes depends on it (tests/test_demo_platform.py checks).
VIDEO_SIZE = (384, 288)  # width, height
FPS = 10
N_FRAMES = 20  # 2 s at 10 fps


def encode_mp4(frames: list[np.ndarray], *, fps: int = FPS, crf: int = 23) -> bytes:
    """Encode RGB uint8 frames (all the same size) as an H.264/yuv420p MP4.

    The width must be a multiple of 128 (see VIDEO_SIZE) and the height even.
    """
    import av

    if not frames:
        raise ValueError("cannot encode a video with no frames")
    h, w = frames[0].shape[:2]
    if w % 128 or h % 2:
        raise ValueError(f"frame size must have a width that is a multiple of 128 (reproducible "
                         f"x264 output) and an even height (yuv420p), got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        # One thread and a fixed preset: x264 output is then bit-exact across runs and machines
        # with the same library build.
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_frames(data: bytes) -> list[np.ndarray]:
    """All frames of a clip as RGB uint8 arrays."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def h264_roundtrip_frame(frame: np.ndarray, crf: int = 23) -> np.ndarray:
    """One frame through an H.264 encode/decode, to train on video-like compression artefacts."""
    return decode_frames(encode_mp4([frame], crf=crf))[0]


def render_clip(rng: np.random.Generator, *, manipulated: bool, face: bool | None = None) -> list[np.ndarray]:
    """Frames of a 2 s clip; a manipulated clip always shows a (swapped) face."""
    w, h = VIDEO_SIZE
    pan = int(rng.integers(24, 64))
    if face is None:
        face = manipulated or rng.random() < 0.6
    scene, box = imagery.render_scene(rng, w + pan, h, face=face or manipulated)
    direction = rng.choice([-1, 1])
    swap_seed = int(rng.integers(2**31))
    frames = []
    for i in range(N_FRAMES):
        offset = int(round(pan * i / (N_FRAMES - 1)))
        if direction < 0:
            offset = pan - offset
        crop = np.ascontiguousarray(scene[:, offset: offset + w])
        frame = imagery.camera(crop, np.random.default_rng([swap_seed, i]))
        if manipulated and box is not None:
            fb = (box[0] - offset, box[1], box[2] - offset, box[3])
            # Same donor face every frame: the swap generator is re-seeded per frame.
            frame = imagery.swap_face(np.random.default_rng(swap_seed), frame, fb)
        frames.append(frame)
    return frames


def reencode(data: bytes, *, width: int, crf: int) -> tuple[bytes, str]:
    """A platform's transcode of a clip: resize to `width` (a multiple of 128, aspect kept, even
    height) and re-encode at another quality. Returns the bytes and a plain description."""
    from PIL import Image

    frames = decode_frames(data)
    if not frames:
        raise ValueError("clip has no frames")
    h, w = frames[0].shape[:2]
    nh = max(2, int(round(h * width / w / 2)) * 2)
    resized = [np.asarray(Image.fromarray(f).resize((width, nh), Image.Resampling.BILINEAR)) for f in frames]
    return encode_mp4(resized, crf=crf), f"resize {w}x{h} to {width}x{nh}, H.264 re-encode crf {crf}"
