"""Measure a real/fake image classifier on the demo world's planted truth.

Used to check the demo model's target: on the world's manipulated images (type (c)) and its
real images, recall >= 0.97 with at most 1% of real images scored >= 0.5; and on video frames
decoded with PyAV, manipulated clips high and real clips low.

The model is loaded with the plain transformers Auto classes and the checkpoint's own image
processor, i.e. independently of the detectors package.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from demo_platform.world import World


def _scorer(model_dir: str | Path):
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir)
    fake_index = {v.lower(): int(k) for k, v in model.config.id2label.items()}["fake"]

    def score(images: list) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), 64):
                batch = processor(images=images[start: start + 64], return_tensors="pt")
                logits = model(**batch).logits
                out.append(torch.softmax(logits.float(), dim=-1)[:, fake_index].numpy())
        return np.concatenate(out) if out else np.zeros(0)

    return score


def evaluate_on_world(model_dir: str | Path, world: World, *, threshold: float = 0.5,
                      frames_per_video: int = 8) -> dict[str, Any]:
    """Scores and summary figures of the model at `model_dir` on `world`'s media.

    Image figures cover originals only (real images vs manipulated images); re-uploads of
    manipulated images are reported separately. Video figures use `frames_per_video` frames
    spread over each clip; a clip's score is the mean of its frame scores.
    """
    from PIL import Image

    from demo_platform.video import decode_frames

    score = _scorer(model_dir)
    groups: dict[str, list[str]] = {"real_image": [], "manipulated_image": [], "reupload_of_manipulated": []}
    for path, t in world.truth.items():
        if t.kind != "image":
            continue
        if t.label == "real":
            groups["real_image"].append(path)
        elif t.fake_kind == "manipulated":
            groups["manipulated_image"].append(path)
        elif t.fake_kind == "reupload" and t.original and world.truth[t.original].fake_kind == "manipulated":
            groups["reupload_of_manipulated"].append(path)

    def load(path: str):
        with Image.open(io.BytesIO(world.media[path].data)) as im:
            return im.convert("RGB")

    scores = {g: score([load(p) for p in paths]) for g, paths in groups.items()}
    real, fake = scores["real_image"], scores["manipulated_image"]
    result: dict[str, Any] = {
        "threshold": threshold,
        "n_real_images": len(real),
        "n_manipulated_images": len(fake),
        "manipulated_recall": float((fake >= threshold).mean()) if len(fake) else None,
        "real_false_positive_rate": float((real >= threshold).mean()) if len(real) else None,
        "real_max_score": float(real.max()) if len(real) else None,
        "manipulated_min_score": float(fake.min()) if len(fake) else None,
        "reupload_of_manipulated_recall": (float((scores["reupload_of_manipulated"] >= threshold).mean())
                                           if len(scores["reupload_of_manipulated"]) else None),
        "image_scores": {p: float(s) for g, paths in groups.items() for p, s in zip(paths, scores[g])},
    }

    videos = []
    for path, t in world.truth.items():
        if t.kind != "video" or t.label != "fake" and t.label != "real":
            continue
        frames = decode_frames(world.media[path].data)
        picks = np.linspace(0, len(frames) - 1, min(frames_per_video, len(frames))).astype(int)
        frame_scores = score([Image.fromarray(frames[i]) for i in picks])
        origin = world.truth[t.original] if t.original else t
        videos.append({"path": path, "label": t.label, "fake_kind": t.fake_kind,
                       "manipulated": origin.fake_kind == "manipulated",
                       "mean": float(frame_scores.mean()), "min": float(frame_scores.min()),
                       "max": float(frame_scores.max())})
    result["videos"] = videos
    manipulated_v = [v for v in videos if v["manipulated"]]
    real_v = [v for v in videos if v["label"] == "real"]
    result["video_manipulated_min_mean"] = min((v["mean"] for v in manipulated_v), default=None)
    result["video_real_max_mean"] = max((v["mean"] for v in real_v), default=None)
    return result
