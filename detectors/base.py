"""The detector contract: a detector maps a batch of media to a batch of results.

Every detector declares its name, version and the media kinds it takes, and returns one
`Detection` per input item, in order. A failure on one item is a `Detection` with
`outcome="error"` and a reason: it never fails the batch. Stages import no Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

MediaKind = Literal["image", "video"]

# What a detector concluded about one item:
#   "fake"          the detector's evidence says synthetic/manipulated (score >= threshold, a
#                   decoded AI watermark, a manifest declaring generative AI...)
#   "real"          the detector looked and found no sign (score < threshold, no manifest...)
#   "inconclusive"  it could not tell (watermark decode failed, no frames...)
#   "error"         the item could not be analysed (corrupt bytes...); `reasons` says why
Outcome = Literal["fake", "real", "inconclusive", "error"]


@dataclass(frozen=True)
class MediaInput:
    """What a detector gets: the bytes of one distinct media item, keyed by sha256."""

    sha256: str
    kind: MediaKind
    data: bytes
    mime: str = ""


@dataclass
class Detection:
    detector: str  # registry name, e.g. "hf-classifier", "c2pa", "invisible-watermark", "metadata-provenance"
    version: str  # version of the detector code / library
    outcome: Outcome
    score: float | None = None  # probability of "fake" in [0, 1] where the detector scores
    threshold: float | None = None  # the threshold the outcome was decided at
    model_id: str | None = None  # hub id or local path of the model, learned detectors only
    model_revision: str | None = None
    weights_digest: str | None = None  # sha256 over the weight files
    reasons: list[str] = field(default_factory=list)  # plain words, shown to investigators
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable extras

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "version": self.version,
            "outcome": self.outcome,
            "score": self.score,
            "threshold": self.threshold,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_digest": self.weights_digest,
            "reasons": list(self.reasons),
            "details": dict(self.details),
        }


def learned_identity(detector: Any) -> dict[str, Any]:
    """The Detection fields that name a learned detector's model and decision threshold (a
    classifier or an ensemble): every result it gives, per item or per video, carries them."""
    return {
        "detector": detector.name,
        "version": detector.version,
        "threshold": detector.threshold,
        "model_id": detector.model_id,
        "model_revision": detector.model_revision,
        "weights_digest": detector.weights_digest,
    }


class Detector(Protocol):
    name: str
    version: str
    kinds: tuple[MediaKind, ...]

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]: ...
