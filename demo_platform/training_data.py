"""A training set for the demo detector, made with the same generators as the demo world's
manipulated media (type (c)), but from a different seed so the demo measures generalisation.

Layout is an ImageFolder: `out_dir/real/*.jpg` and `out_dir/fake/*.jpg`. Most fakes are the
face-swapped version of a real photo that is also in the set, so the only thing separating the two
classes is the manipulation itself, not the scene. Every image then goes through the kind of
transcode a platform applies (small crop, resize, JPEG at varied quality), and a share of them
through an H.264 round trip like the world's videos, so the model learns artefacts that survive.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from demo_platform import imagery
from demo_platform.video import VIDEO_SIZE, h264_roundtrip_frame


def _platform_copy(rng: np.random.Generator, pixels: np.ndarray) -> bytes:
    """One augmented JPEG: what a photo looks like after an upload or two."""
    roll = rng.random()
    if roll < 0.15:
        # Video-like sample: a frame at the world's video size through a real H.264 encode.
        from PIL import Image

        frame = np.asarray(Image.fromarray(pixels).resize(VIDEO_SIZE, Image.Resampling.BILINEAR))
        return imagery.jpeg_bytes(h264_roundtrip_frame(frame, crf=int(rng.integers(20, 33))), 95)
    if roll < 0.55:
        data, _ = imagery.transcode(rng, pixels, scale=(0.5, 1.0), quality=(55, 95), max_crop=0.05)
        return data
    return imagery.jpeg_bytes(pixels, int(rng.integers(70, 96)))


def _write_pair(root: Path, seed: int, i: int) -> None:
    """Real and fake image number `i`; a pure function of (seed, i), so workers can split them."""
    rng = np.random.default_rng([seed, i])
    w, h = int(rng.integers(256, 481)), int(rng.integers(256, 481))
    # 3 in 4 reals show a person, so "has a face" is no shortcut to "fake".
    with_face = rng.random() < 0.75
    real = imagery.render_photo(rng, w, h, face=with_face)
    if real.face_box is not None:
        fake_pixels = imagery.swap_face(rng, real.pixels, real.face_box)
    else:
        other = imagery.render_photo(rng, int(rng.integers(256, 481)), int(rng.integers(256, 481)), face=True)
        assert other.face_box is not None
        fake_pixels = imagery.swap_face(rng, other.pixels, other.face_box)
    (root / "real" / f"r{i:05d}.jpg").write_bytes(_platform_copy(rng, real.pixels))
    (root / "fake" / f"f{i:05d}.jpg").write_bytes(_platform_copy(rng, fake_pixels))


def write_training_set(out_dir: str | Path, seed: int = 1000, n_per_class: int = 1000,
                       *, workers: int | None = None) -> Path:
    """Write `n_per_class` real and `n_per_class` fake JPEGs under `out_dir`; returns `out_dir`.

    Deterministic for a given seed whatever the number of `workers` (threads; default: one per
    available CPU, at most 4; the heavy numpy/PIL work releases the GIL, so threads scale about
    as well as processes without their start-up and main-module pitfalls). Raises ValueError
    for a non-positive `n_per_class`.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    root = Path(out_dir)
    (root / "real").mkdir(parents=True, exist_ok=True)
    (root / "fake").mkdir(parents=True, exist_ok=True)
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:
            workers = os.cpu_count() or 1
        workers = min(workers, 4)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # list(): re-raise the first failure here rather than losing it in a future.
        list(pool.map(lambda i: _write_pair(root, seed, i), range(n_per_class)))
    return root
