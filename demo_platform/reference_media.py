"""Official candidate media for the reference library, and copies of it as they circulate.

The demo world's candidates publish photos and speech videos on their official channels; those
are registered as references. Circulating copies are of two kinds, with ground truth:
* altered: a face replaced on a photo; on a clip cut from a speech, a face swap or a
  re-synthesised mouth over a stretch of seconds (then the platform's re-encode);
* unaltered re-posts that must not be flagged: re-encoded, resized, cropped, captioned,
  colour-graded, screenshotted photos; cut and re-encoded clips.

A speech is a slow pan over a scene with a person whose mouth opens and closes as they talk,
so consecutive frames differ (time alignment has something to find) while the scene stays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from demo_platform import imagery
from demo_platform.video import encode_mp4

SPEECH_SIZE = (384, 288)
SPEECH_FPS = 10


@dataclass
class Case:
    name: str
    data: bytes
    kind: str  # image | video
    altered: bool
    reference: int  # index into the originals list
    transform: str  # what was done, in words
    segment_s: tuple[float, float] | None = None  # item time of the alteration (videos)


@dataclass
class Original:
    name: str
    data: bytes
    kind: str
    owner: str
    source_url: str
    pixels: np.ndarray | None = None  # photos
    frames: list[np.ndarray] | None = None  # videos, before encoding
    boxes: list[tuple[int, int, int, int]] | None = None  # the head in each frame (videos), or [box]


def official_photo(rng: np.random.Generator, index: int) -> Original:
    w, h = int(rng.integers(560, 800)), int(rng.integers(420, 600))
    scene = imagery.render_photo(rng, w, h, face=True)
    assert scene.face_box is not None
    return Original(f"photo-{index}", imagery.jpeg_bytes(scene.pixels, 92), "image", _owner(index),
                    f"https://candidate{index % 3}.example/press/{index}", pixels=scene.pixels, boxes=[scene.face_box])


def _owner(index: int) -> str:
    return ["Candidate Kim Min-jun (official)", "Candidate Lee Seo-yeon (official)", "NEC press office"][index % 3]


def _mouth(frame: np.ndarray, box: tuple[int, int, int, int], openness: float, colour=(90, 30, 35)) -> None:
    """Draw the open part of the mouth (in place): a dark ellipse whose height follows speech."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    cx, my = (x0 + x1) / 2, y0 + fh * 0.78
    img = Image.fromarray(frame)
    ImageDraw.Draw(img).ellipse([cx - fw * 0.13, my - fh * 0.015 - fh * 0.05 * openness,
                                 cx + fw * 0.13, my + fh * 0.015 + fh * 0.05 * openness], fill=colour)
    frame[:] = np.asarray(img)


def official_speech(rng: np.random.Generator, index: int, seconds: float = 8.0) -> Original:
    w, h = SPEECH_SIZE
    pan = int(rng.integers(30, 70))
    scene, box = imagery.render_scene(rng, w + pan, h, face=True)
    assert box is not None
    n = int(seconds * SPEECH_FPS)
    seed = int(rng.integers(2**31))
    talk = rng.uniform(0, 1, n)  # mouth openness per frame
    frames, boxes = [], []
    for i in range(n):
        off = int(round(pan * i / (n - 1)))
        frame = imagery.camera(np.ascontiguousarray(scene[:, off: off + w]), np.random.default_rng([seed, i]),
                               noise=0.012)
        fb = (box[0] - off, box[1], box[2] - off, box[3])
        _mouth(frame, fb, float(talk[i]))
        frames.append(frame)
        boxes.append(fb)
    return Original(f"speech-{index}", encode_mp4(frames, fps=SPEECH_FPS, crf=20), "video", _owner(index),
                    f"https://candidate{index % 3}.example/speeches/{index}", frames=frames, boxes=boxes)


# -- photo copies -------------------------------------------------------------------------------
def photo_cases(rng: np.random.Generator, orig: Original, ref: int) -> list[Case]:
    assert orig.pixels is not None and orig.boxes
    px = orig.pixels
    swapped = imagery.swap_face(rng, px, orig.boxes[0])
    out = [Case(f"{orig.name}-face-replaced", imagery.transcode(rng, swapped)[0], "image", True, ref,
                "face replaced, then crop/resize/JPEG")]
    data, desc = imagery.transcode(rng, px)
    out.append(Case(f"{orig.name}-reencoded", data, "image", False, ref, desc))
    out.append(Case(f"{orig.name}-resized", imagery.jpeg_bytes(_resize(px, 0.5), 85), "image", False, ref, "resize x0.5"))
    h, w = px.shape[:2]
    crop = px[int(0.1 * h): int(0.95 * h), int(0.08 * w): int(0.9 * w)]
    out.append(Case(f"{orig.name}-cropped", imagery.jpeg_bytes(crop, 80), "image", False, ref, "crop 10% top, 8% sides"))
    out.append(Case(f"{orig.name}-captioned", imagery.jpeg_bytes(_caption(px), 85), "image", False, ref,
                    "caption band painted over the bottom"))
    graded = np.clip((px.astype(np.float32) / 255.0) ** 0.8 * np.array([1.08, 1.0, 0.88]) * 255, 0, 255).astype(np.uint8)
    out.append(Case(f"{orig.name}-graded", imagery.transcode(rng, graded)[0], "image", False, ref, "colour grade"))
    out.append(Case(f"{orig.name}-screenshot", imagery.png_bytes(_screenshot(px)), "image", False, ref,
                    "screenshot of a post (white UI around it)"))
    return out


def _resize(px: np.ndarray, s: float) -> np.ndarray:
    h, w = px.shape[:2]
    return np.asarray(Image.fromarray(px).resize((max(16, int(w * s)), max(16, int(h * s))), Image.Resampling.LANCZOS))


def _caption(px: np.ndarray) -> np.ndarray:
    out = px.copy()
    h, w = out.shape[:2]
    band = int(h * 0.12)
    out[h - band:] = (out[h - band:] * 0.15).astype(np.uint8)
    img = Image.fromarray(out)
    ImageDraw.Draw(img).text((int(w * 0.05), h - band + band // 4), "BREAKING: candidate speaks on the economy",
                             fill=(255, 255, 255))
    return np.asarray(img)


def _screenshot(px: np.ndarray) -> np.ndarray:
    h, w = px.shape[:2]
    canvas = Image.new("RGB", (w + 40, h + 160), (250, 250, 250))
    canvas.paste(Image.fromarray(px), (20, 90))
    d = ImageDraw.Draw(canvas)
    d.text((20, 20), "@newsdesk  2h", fill=(30, 30, 30))
    d.text((20, 50), "Watch what the candidate said today", fill=(30, 30, 30))
    d.text((20, h + 110), "12k likes   3k shares", fill=(90, 90, 90))
    return np.asarray(canvas)


# -- video copies -------------------------------------------------------------------------------
def video_cases(rng: np.random.Generator, orig: Original, ref: int) -> list[Case]:
    assert orig.frames is not None and orig.boxes is not None
    n = len(orig.frames)
    start = int(rng.integers(SPEECH_FPS, n // 3))  # the clip starts 1 s or more into the speech
    stop = min(n, start + int(rng.integers(4 * SPEECH_FPS, 5 * SPEECH_FPS)))
    a, b = int(0.8 * SPEECH_FPS), int(3.2 * SPEECH_FPS)  # the altered stretch, in clip frames
    seg = (a / SPEECH_FPS, (b - 1) / SPEECH_FPS)
    swap_seed = int(rng.integers(2**31))

    def cut(edit=None) -> list[np.ndarray]:
        frames = []
        for k, i in enumerate(range(start, stop)):
            f = orig.frames[i].copy()
            if edit is not None and a <= k < b:
                f = edit(f, orig.boxes[i], k)
            frames.append(f)
        return frames

    def swap(f, box, k):
        return imagery.swap_face(np.random.default_rng(swap_seed), f, box)

    def mouth(f, box, k):
        # A re-synthesised mouth: different shape and colour, moving out of step with the original.
        _mouth(f, box, 0.6 + 0.4 * (k % 2), colour=(150, 60, 70))
        return f

    def small(frames):
        return [_resize(f, 256 / f.shape[1]) for f in frames]

    def even(frames):  # yuv420p wants even heights
        return [f[: f.shape[0] // 2 * 2] for f in frames]

    return [
        Case(f"{orig.name}-face-swap-clip", encode_mp4(even(small(cut(swap))), fps=SPEECH_FPS, crf=28), "video", True,
             ref, f"clip {start / SPEECH_FPS:.1f}-{stop / SPEECH_FPS:.1f} s, face swapped, resized, re-encoded", seg),
        Case(f"{orig.name}-mouth-edit-clip", encode_mp4(even(cut(mouth)), fps=SPEECH_FPS, crf=26), "video", True,
             ref, f"clip {start / SPEECH_FPS:.1f}-{stop / SPEECH_FPS:.1f} s, mouth re-synthesised, re-encoded", seg),
        Case(f"{orig.name}-clip", encode_mp4(even(small(cut())), fps=SPEECH_FPS, crf=30), "video", False, ref,
             f"clip {start / SPEECH_FPS:.1f}-{stop / SPEECH_FPS:.1f} s, resized, re-encoded"),
    ]


def build(seed: int = 15, n_photos: int = 6, n_videos: int = 2) -> tuple[list[Original], list[Case]]:
    """Originals (to register as references) and circulating copies of them, with ground truth."""
    rng = np.random.default_rng(seed)
    originals: list[Original] = []
    cases: list[Case] = []
    for i in range(n_photos):
        originals.append(official_photo(rng, i))
        cases.extend(photo_cases(rng, originals[-1], len(originals) - 1))
    for i in range(n_videos):
        originals.append(official_speech(rng, i))
        cases.extend(video_cases(rng, originals[-1], len(originals) - 1))
    return originals, cases
