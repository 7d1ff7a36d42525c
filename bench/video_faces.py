"""Video analysis cost: even frames only (before) vs even frames + scene changes + face crops (now).

Clips: the demo world's kind (demo_platform.video.render_clip: 2 s, 10 fps, 384x288 H.264 pans
with sensor noise), each made of two shots (the second a different scene) so that scene-change
sampling has a cut to find; half the first shots show a face. The classifier is a small ViT
built from ViTConfig with random weights (cost does not depend on the weights), loaded through
the detector's real loading code. Both arms run DetectionPipeline with the same model.

    .venv/bin/python bench/video_faces.py [--quick] [--videos N] [--device cpu|cuda]

Prints ONE JSON object as its last line: ms per video for each arm, ratio_vs_uniform (now / before,
higher = slower), face finding ms per frame, frames per video, and the metadata detector's ms per
item. Needs torch, transformers, PyAV, OpenCV (4.x, for its bundled Haar cascade); not Ray.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import emit, environment


def clips(n: int, seed: int) -> list[bytes]:
    from demo_platform import video

    out = []
    for i in range(n):
        first = video.render_clip(np.random.default_rng([seed, i, 1]), manipulated=False, face=i % 2 == 0)
        second = video.render_clip(np.random.default_rng([seed, i, 2]), manipulated=False, face=False)
        out.append(video.encode_mp4(first + second))
    return out


def build_model(folder: Path) -> str:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192,
                       id2label={0: "real", 1: "fake"}, label2id={"real": 0, "fake": 1})
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor().save_pretrained(folder)
    return str(folder)


def best_ms_per_item(fn, items: list, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(items)
        best = min(best, (time.perf_counter() - start) / len(items) * 1000)
    return round(best, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, well under a minute")
    parser.add_argument("--videos", type=int, default=None, help="clips per arm [default: 6 quick, 24]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=None, help="timed passes, best kept [default: 2 quick, 3]")
    args = parser.parse_args()
    n = args.videos or (6 if args.quick else 24)
    repeat = args.repeat or (2 if args.quick else 3)

    from detectors.base import MediaInput
    from detectors.faces import FaceFinder
    from detectors.metadata import MetadataProvenanceDetector
    from detectors.pipeline import DetectionPipeline
    from detectors.video import sample_frames_and_scene_changes

    data = clips(n, seed=11)
    items = [MediaInput(hashlib.sha256(d).hexdigest(), "video", d, "video/mp4") for d in data]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "vit")
        common = dict(classifier_model=model, c2pa=False, watermark=False, metadata=False, device=args.device)
        before = DetectionPipeline(video_faces=False, scene_changes=False, **common)
        now = DetectionPipeline(**common)
        before.analyse(items[:1]), now.analyse(items[:1])  # warm-up: first-call allocations
        before_ms = best_ms_per_item(before.analyse, items, repeat)
        now_ms = best_ms_per_item(now.analyse, items, repeat)
        details = [a.detections[0].details for a in now.analyse(items)]

    frames = [f.image for d in data for f in sample_frames_and_scene_changes(d, 8, max_side=1024)]
    finder = FaceFinder()
    find_ms = best_ms_per_item(lambda xs: [finder.find(x) for x in xs], frames, repeat)
    meta = MetadataProvenanceDetector()
    meta_ms = best_ms_per_item(meta.detect_batch, items, repeat)
    emit({
        "bench": "video_faces", "videos": n, "device": args.device, **environment(),
        "uniform_only_ms_per_video": before_ms,
        "scenes_and_faces_ms_per_video": now_ms,
        "ratio_vs_uniform": round(now_ms / before_ms, 2),
        "face_find_ms_per_frame": find_ms,
        "frames_per_video": round(sum(len(d["frames"]) for d in details) / n, 2),
        "scene_change_frames_per_video": round(sum(d["scene_change_frames"] for d in details) / n, 2),
        "no_face_frames_share": round(sum(d["no_face_frames"] for d in details)
                                      / sum(len(d["frames"]) for d in details), 3),
        "metadata_ms_per_video": meta_ms,
    })


if __name__ == "__main__":
    sys.exit(main())
