"""All detectors over a batch of distinct media items, and one verdict per item.

Everything heavy (the model, the C2PA library, the face cascade) loads once in the constructor,
which is meant to run as a Ray actor's constructor; `analyse` is then called per batch. No Ray
here.

Videos: frames are sampled evenly and at scene changes (detectors/video.py); in each frame the
faces found (detectors/faces.py) are cropped and scored, and so is the whole frame (always, or
with `video_frame_with_faces=False` only when no face is found); a frame's score is the highest
of these; the video's is the mean of the top third of its frames, and the time spans of frames
at or above the threshold are its suspect segments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from detectors import registry
from detectors.base import Detection, MediaInput, learned_identity
from detectors.classifier import HFImageClassifier
from detectors.ensemble import EnsembleClassifier
from detectors.fusion import Verdict, fuse
from detectors.hashing import MediaDecodeError
from detectors.faces import FaceBox, FaceFinder
from detectors.video import (
    DEFAULT_MAX_SCENE_FRAMES,
    DEFAULT_SCENE_THRESHOLD,
    SCENE_CHANGE,
    UNIFORM,
    SampledFrame,
    SceneSettings,
    sample_frames,
    sample_frames_and_scene_changes,
)

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


def top_k(n_uniform: int) -> int:
    """How many of the highest frame scores `top_third_mean` averages: a third of the evenly
    spread frames (at least one)."""
    return max(1, math.ceil(n_uniform / 3))


def top_third_mean(scores: list[float], n_uniform: int | None = None) -> float:
    """Mean of the highest third of the scores (at least one).

    A manipulated video is often fake in only some shots, so the mean of all frames would
    dilute it; the single highest frame is at the mercy of one misfire. The top third keeps
    a fake stretch covering a third of the video at full weight while one odd frame in
    eight moves the result by at most a third.

    `n_uniform`: how many of the scores come from evenly spread frames (default: all). The
    third is a third of those: frames added at scene changes are extra candidates, and must not
    dilute a short spliced-in shot that only they caught.
    """
    if not scores:
        raise ValueError("no frame scores to aggregate")
    k = min(len(scores), top_k(len(scores) if n_uniform is None else n_uniform))
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
        threshold: float | None = None,
        review_threshold: float = 0.3,
        batch_size: int = 32,
        device: str = "auto",
        c2pa: bool = True,
        watermark: bool = True,
        video_frames: int = 8,
        classifier_revision: str | None = None,
        metadata: bool = True,
        video_faces: bool = True,
        video_frame_with_faces: bool = True,
        scene_changes: bool = True,
        scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
        max_scene_frames: int = DEFAULT_MAX_SCENE_FRAMES,
        classifiers: list[dict[str, Any]] | None = None,
        c2pa_trust: Any = None,
    ):
        """`metadata`: read unsigned provenance metadata (IPTC/XMP, EXIF, PNG text; cheap).
        `video_faces`: score face crops of video frames (OpenCV's bundled Haar cascade).
        `video_frame_with_faces`: score the whole frame too when it has faces, and keep the
        higher score; right for whole-image classifiers (the demo model), set False for a model
        trained on face crops only. `scene_changes`, `scene_threshold`, `max_scene_frames`:
        besides `video_frames` uniform frames, take up to that many shot starts.
        `threshold` None: the classifier's calibrated threshold (calibration.json beside its
        weights, written by `deepwatch detectors eval`), else 0.5. `classifiers`: an ensemble
        (detectors.ensemble member dicts) instead of `classifier_model`. `c2pa_trust`: a
        detectors.c2pa_trust.TrustSettings (None: the C2PA trust list plus the environment's).
        """
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if not 0.0 <= review_threshold <= 1.0 or (threshold is not None and review_threshold > threshold):
            raise ValueError(
                f"need 0 <= review_threshold <= threshold <= 1, got {review_threshold} and {threshold}"
            )
        if video_frames < 1:
            raise ValueError(f"video_frames must be at least 1, got {video_frames}")
        if classifier_model is not None and classifiers:
            raise ValueError("give classifier_model (one model) or classifiers (an ensemble), not both")
        self.video_frames = video_frames
        self.scenes = SceneSettings(threshold=scene_threshold, max_frames=max_scene_frames) if scene_changes else None
        self.video_frame_with_faces = video_frame_with_faces
        self.classifier: HFImageClassifier | EnsembleClassifier | None = None
        if classifiers:
            self.classifier = registry.create(  # type: ignore[assignment]
                EnsembleClassifier.name, members=classifiers, threshold=0.5 if threshold is None else threshold,
                batch_size=batch_size, device=device)
        elif classifier_model is not None:
            self.classifier = registry.create(  # type: ignore[assignment]
                HFImageClassifier.name,
                model=classifier_model,
                fake_label=fake_label,
                threshold=threshold,
                batch_size=batch_size,
                device=device,
                revision=classifier_revision,
            )
        # The threshold the classifier settled on (a calibrated one, when it had no explicit one)
        # is the one video frames are judged at too. A calibrated threshold under the review
        # threshold pulls that down with it: "fake" must never rank below "review".
        self.threshold = self.classifier.threshold if self.classifier is not None else (0.5 if threshold is None else threshold)
        self.review_threshold = min(review_threshold, self.threshold)
        # Faces are only looked for in what the classifier will score.
        self.faces = FaceFinder() if video_faces and self.classifier is not None else None
        self.others = []  # detectors that take the bytes as they are
        if c2pa:
            self.others.append(registry.create("c2pa", trust=c2pa_trust))
        if watermark:
            self.others.append(registry.create("invisible-watermark"))
        if metadata:
            self.others.append(registry.create("metadata-provenance"))

    def describe(self) -> list[dict[str, Any]]:
        """Name, version and model identity of every detector, for the run report."""
        detectors = ([self.classifier] if self.classifier else []) + ([self.faces] if self.faces else [])
        return [d.describe() for d in detectors + self.others]  # type: ignore[attr-defined]

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
                sampled.append(self._sample(item.data))
            except MediaDecodeError as exc:
                sampled.append(str(exc))
            except Exception as exc:  # a decoder failure on one video must not fail the batch
                sampled.append(f"corrupt video: {type(exc).__name__}: {exc}")
        # What gets scored per frame: its face crops, and the whole frame when it has no face
        # (or always, with video_frame_with_faces). All images of all videos go through the
        # model together, in full batches.
        plans: list[list[_FramePlan]] = [
            [] if isinstance(s, str) else [self._plan(f) for f in s] for s in sampled
        ]
        images = [img for plan in plans for p in plan for img in p.images]
        raw, domains = self.classifier.score_images_with_domain(images) if images else ([], [])
        scores = [float(x) for x in raw]
        out: list[Detection] = []
        pos = 0
        for s, plan in zip(sampled, plans):
            if isinstance(s, str):
                out.append(self._video_detection("error", None, [s], {}))
                continue
            for p in plan:
                p.domains = domains[pos : pos + len(p.images)]
                p.scores, pos = scores[pos : pos + len(p.images)], pos + len(p.images)
            out.append(self._aggregate(plan))
        return out

    def _sample(self, data: bytes) -> list[SampledFrame]:
        if self.scenes is None:
            return sample_frames(data, self.video_frames, max_side=FRAME_MAX_SIDE)
        return sample_frames_and_scene_changes(
            data, self.video_frames, max_side=FRAME_MAX_SIDE, scenes=self.scenes
        )

    def _plan(self, frame: SampledFrame) -> "_FramePlan":
        boxes: list[FaceBox] = []
        crops: list[Any] = []
        face_error = None
        if self.faces is not None:
            try:
                boxes = self.faces.find(frame.image)
                crops = [self.faces.crop(frame.image, b) for b in boxes]
            except Exception as exc:  # one odd frame must not fail the batch: score it whole
                boxes, crops, face_error = [], [], f"face detection failed: {type(exc).__name__}: {exc}"
        whole = not boxes or self.video_frame_with_faces
        return _FramePlan(frame, boxes, crops + ([frame.image] if whole else []), whole,
                          faces_searched=self.faces is not None, face_error=face_error)

    def _aggregate(self, plan: list["_FramePlan"]) -> Detection:
        assert self.classifier is not None
        times = [p.frame.t_s for p in plan]
        frame_scores = [max(p.scores) for p in plan]
        n_uniform = sum(UNIFORM in p.frame.reasons for p in plan) or len(plan)
        score = top_third_mean(frame_scores, n_uniform)
        k = min(len(frame_scores), top_k(n_uniform))
        fake = score >= self.threshold
        segments = suspect_segments(times, frame_scores, self.threshold)
        reasons = [
            f"classifier {self.classifier.model_id} scored {score:.2f} {'>=' if fake else '<'} "
            f"{self.threshold:.2f} (mean of the top {k} of {len(frame_scores)} sampled frames)"
        ]
        if segments:
            spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in segments)
            reasons.append(f"frames scoring >= {self.threshold:.2f} at {spans}")
        cuts = sum(SCENE_CHANGE in p.frame.reasons for p in plan)
        if self.scenes is not None:
            reasons.append(
                f"{len(plan)} frames sampled: {self.video_frames} spread evenly"
                + (f", {cuts} at scene changes" if cuts else ", no scene change found")
            )
        no_face = sum(not p.boxes for p in plan)
        if self.faces is not None:
            with_faces = len(plan) - no_face
            reasons.append(
                f"faces found in {with_faces} of {len(plan)} sampled frames and scored as crops"
                + (f"; no face found in {no_face}, so the whole frame was scored" if no_face else "")
            )
        details: dict[str, Any] = {
            "frames": [p.to_dict() for p in plan],
            "segments": segments,
            "aggregate": "mean of top third of frame scores",
            "frame_score": (
                "whole frame" if self.faces is None
                else "highest of the face crops and the whole frame" if self.video_frame_with_faces
                else "highest face crop; the whole frame when no face was found"
            ),
            "scene_change_frames": cuts,
            "domain": _video_domain(plan, frame_scores, k),
        }
        if self.faces is not None:
            details["face_detector"] = self.faces.describe()
            details["no_face_frames"] = no_face
            details["no_face_reason"] = "no face found by the detector; the whole frame was scored instead"
        from detectors.domain import domain_reason

        reasons += [r for r in [domain_reason(details["domain"])] if r]
        return self._video_detection("fake" if fake else "real", score, reasons, details)

    def _video_detection(
        self, outcome: str, score: float | None, reasons: list[str], details: dict[str, Any]
    ) -> Detection:
        clf = self.classifier
        assert clf is not None
        return Detection(
            **learned_identity(clf),
            outcome=outcome,  # type: ignore[arg-type]
            score=score,
            reasons=reasons,
            # What the threshold is and where it came from (calibration or configuration).
            details={**details, **clf.threshold_details()},
        )


def _video_domain(plan: list["_FramePlan"], frame_scores: list[float], k: int) -> dict[str, Any]:
    """The domain check of the images behind the video's score: the best-scored image of each of
    the top-k frames, all of which must be inside for the score to count."""
    from detectors.domain import combine_domains

    top = sorted(range(len(plan)), key=lambda i: frame_scores[i], reverse=True)[:k]
    parts = []
    for i in top:
        p = plan[i]
        best = max(range(len(p.scores)), key=lambda j: p.scores[j])
        parts.append(p.domains[best] if best < len(p.domains) else None)
    return combine_domains(parts)


@dataclass
class _FramePlan:
    """One sampled frame: the faces found, the images to score (crops first, then the whole
    frame when it is scored) and, once scored, their scores in the same order."""

    frame: SampledFrame
    boxes: list[FaceBox]
    images: list[Any]
    whole: bool
    faces_searched: bool
    face_error: str | None = None
    scores: list[float] = field(default_factory=list)
    domains: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        n = len(self.boxes)
        face_scores = self.scores[:n]
        out: dict[str, Any] = {
            "t_s": self.frame.t_s,
            "taken": list(self.frame.reasons),
            "score": round(max(self.scores), 6),
            "faces": [{"box": b.to_list(), "score": round(s, 6)} for b, s in zip(self.boxes, face_scores)],
            "frame_score": round(self.scores[n], 6) if self.whole else None,
        }
        if self.frame.scene_score is not None:
            out["scene_score"] = self.frame.scene_score
        if self.faces_searched and not self.boxes:
            out["no_face"] = True
        if self.face_error:
            out["face_error"] = self.face_error
        return out
