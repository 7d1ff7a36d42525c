"""All detectors over a batch of distinct media items, and one verdict per item.

Everything heavy (the model, the C2PA library) loads once in the constructor, which is
meant to run as a Ray actor's constructor; `analyse` is then called per batch. No Ray here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detectors import registry
from detectors.base import Detection, MediaInput
from detectors.classifier import HFImageClassifier
from detectors.fusion import Verdict, fuse
from detectors.hashing import MediaDecodeError
from detectors.video import SampledFrame, sample_frames

# Frames are shrunk to this on decoding: classifiers look at a few hundred pixels, and eight
# 4K frames would otherwise hold ~200 MB per video.
FRAME_MAX_SIDE = 1024


@dataclass
class Analysis:
    sha256: str
    detections: list[Detection]
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "detections": [d.to_dict() for d in self.detections],
            "verdict": self.verdict.to_dict(),
        }


def top_third_mean(scores: list[float]) -> float:
    """Mean of the highest third of the scores (at least one).

    A manipulated video is often fake in only some shots, so the mean of all frames would
    dilute it; the single highest frame is at the mercy of one misfire. The top third keeps
    a fake stretch covering a third of the video at full weight while one odd frame in
    eight moves the result by at most a third.
    """
    if not scores:
        raise ValueError("no frame scores to aggregate")
    k = max(1, math.ceil(len(scores) / 3))
    return sum(sorted(scores, reverse=True)[:k]) / k


def suspect_segments(times: list[float], scores: list[float], threshold: float) -> list[list[float]]:
    """[[start_s, end_s], ...] over runs of consecutive sampled frames scoring >= threshold."""
    segments: list[list[float]] = []
    run_start: float | None = None
    previous = 0.0
    for t, s in zip(times, scores):
        if s >= threshold and run_start is None:
            run_start = t
        elif s < threshold and run_start is not None:
            segments.append([run_start, previous])
            run_start = None
        previous = t
    if run_start is not None:
        segments.append([run_start, previous])
    return segments


class DetectionPipeline:
    def __init__(
        self,
        *,
        classifier_model: str | None,
        fake_label: str = "fake",
        threshold: float = 0.5,
        review_threshold: float = 0.3,
        batch_size: int = 32,
        device: str = "auto",
        c2pa: bool = True,
        watermark: bool = True,
        video_frames: int = 8,
        classifier_revision: str | None = None,
    ):
        if not 0.0 <= review_threshold <= threshold <= 1.0:
            raise ValueError(
                f"need 0 <= review_threshold <= threshold <= 1, got {review_threshold} and {threshold}"
            )
        if video_frames < 1:
            raise ValueError(f"video_frames must be at least 1, got {video_frames}")
        self.threshold = threshold
        self.review_threshold = review_threshold
        self.video_frames = video_frames
        self.classifier: HFImageClassifier | None = None
        if classifier_model is not None:
            self.classifier = registry.create(  # type: ignore[assignment]
                HFImageClassifier.name,
                model=classifier_model,
                fake_label=fake_label,
                threshold=threshold,
                batch_size=batch_size,
                device=device,
                revision=classifier_revision,
            )
        self.others = []  # detectors that take the bytes as they are
        if c2pa:
            self.others.append(registry.create("c2pa"))
        if watermark:
            self.others.append(registry.create("invisible-watermark"))

    def describe(self) -> list[dict[str, Any]]:
        """Name, version and model identity of every detector, for the run report."""
        detectors = ([self.classifier] if self.classifier else []) + self.others
        return [d.describe() for d in detectors]  # type: ignore[attr-defined]

    def analyse(self, items: list[MediaInput], *, provenance_only: bool = False) -> list[Analysis]:
        """One Analysis per item, in the order given. Bad items never fail the batch.

        `provenance_only` skips the learned classifier: for near-duplicates of an item already
        classified. Provenance (a C2PA manifest, a watermark) lives in each copy's own bytes and
        is lost in a re-encode, so every copy is still checked for it; it is cheap.
        """
        per_item: list[list[Detection]] = [[] for _ in items]
        images = [i for i, item in enumerate(items) if item.kind == "image"]
        videos = [i for i, item in enumerate(items) if item.kind == "video"]

        if self.classifier is not None and not provenance_only:
            for i, det in zip(images, self.classifier.detect_batch([items[i] for i in images])):
                per_item[i].append(det)
            for i, det in zip(videos, self._classify_videos([items[i] for i in videos])):
                per_item[i].append(det)
        for detector in self.others:
            wanted = images + [i for i in videos if "video" in detector.kinds]
            wanted.sort()
            for i, det in zip(wanted, detector.detect_batch([items[i] for i in wanted])):
                per_item[i].append(det)
        for i, item in enumerate(items):
            if item.kind not in ("image", "video"):
                per_item[i].append(
                    Detection(
                        detector="pipeline",
                        version="1.0",
                        outcome="error",
                        reasons=[f"unknown media kind {item.kind!r}: expected image or video"],
                    )
                )
        return [
            Analysis(item.sha256, dets, fuse(dets, self.review_threshold))
            for item, dets in zip(items, per_item)
        ]

    # ------------------------------------------------------------------ videos

    def _classify_videos(self, videos: list[MediaInput]) -> list[Detection]:
        assert self.classifier is not None
        sampled: list[list[SampledFrame] | str] = []
        for item in videos:
            try:
                sampled.append(sample_frames(item.data, self.video_frames, max_side=FRAME_MAX_SIDE))
            except MediaDecodeError as exc:
                sampled.append(str(exc))
            except Exception as exc:  # a decoder failure on one video must not fail the batch
                sampled.append(f"corrupt video: {type(exc).__name__}: {exc}")
        # Frames of all videos go through the model together, in full batches.
        frames = [f for s in sampled if not isinstance(s, str) for f in s]
        scores = list(self.classifier.score_images([f.image for f in frames])) if frames else []
        out: list[Detection] = []
        pos = 0
        for s in sampled:
            if isinstance(s, str):
                out.append(self._video_detection("error", None, [s], {}))
                continue
            mine = [float(x) for x in scores[pos : pos + len(s)]]
            pos += len(s)
            out.append(self._aggregate([f.t_s for f in s], mine))
        return out

    def _aggregate(self, times: list[float], scores: list[float]) -> Detection:
        assert self.classifier is not None
        score = top_third_mean(scores)
        k = max(1, math.ceil(len(scores) / 3))
        fake = score >= self.threshold
        segments = suspect_segments(times, scores, self.threshold)
        reasons = [
            f"classifier {self.classifier.model_id} scored {score:.2f} {'>=' if fake else '<'} "
            f"{self.threshold:.2f} (mean of the top {k} of {len(scores)} sampled frames)"
        ]
        if segments:
            spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in segments)
            reasons.append(f"frames scoring >= {self.threshold:.2f} at {spans}")
        details = {
            "frames": [{"t_s": t, "score": round(s, 6)} for t, s in zip(times, scores)],
            "segments": segments,
            "aggregate": "mean of top third of frame scores",
        }
        return self._video_detection("fake" if fake else "real", score, reasons, details)

    def _video_detection(
        self, outcome: str, score: float | None, reasons: list[str], details: dict[str, Any]
    ) -> Detection:
        clf = self.classifier
        assert clf is not None
        return Detection(
            detector=clf.name,
            version=clf.version,
            outcome=outcome,  # type: ignore[arg-type]
            score=score,
            threshold=clf.threshold,
            model_id=clf.model_id,
            model_revision=clf.model_revision,
            weights_digest=clf.weights_digest,
            reasons=reasons,
            details=details,
        )
