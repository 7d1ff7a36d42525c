"""Fusing the detectors' results for one item into one verdict an investigator can act on.

Bands, strongest first:

* ``confirmed_ai``  a C2PA manifest whose signature validates declares generative AI and
                    the content was not altered after signing;
* ``likely_fake``   a known generator watermark decoded, or the classifier scored at or
                    above its threshold;
* ``needs_review``  the classifier scored at or above the review threshold, the C2PA data
                    hash does not match (tampering), a manifest declares AI but its
                    signature does not validate, or a detector failed on an item that no
                    other detector could judge;
* ``no_signal``     none of the above; this is not a finding that the item is real.

Reasons from every signal that counted are kept, strongest first, with their numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from detectors.base import Detection

Band = Literal["confirmed_ai", "likely_fake", "needs_review", "no_signal"]
BANDS: tuple[Band, ...] = ("confirmed_ai", "likely_fake", "needs_review", "no_signal")
FLAGGED_BANDS: tuple[Band, ...] = ("confirmed_ai", "likely_fake")

C2PA = "c2pa"
WATERMARK = "invisible-watermark"


@dataclass
class Verdict:
    band: Band
    score: float | None  # the highest detector score (P(fake)) seen, None when none scored
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"band": self.band, "score": self.score, "reasons": list(self.reasons)}


def fuse(detections: list[Detection], review_threshold: float) -> Verdict:
    """The verdict for one item from all its detections."""
    if not 0.0 <= review_threshold <= 1.0:
        raise ValueError(f"review_threshold must be in [0, 1], got {review_threshold}")
    found: dict[Band, list[str]] = {band: [] for band in BANDS}

    for det in detections:
        if det.detector == C2PA:
            _c2pa(det, found)
        elif det.detector == WATERMARK:
            if det.outcome == "fake":
                found["likely_fake"].extend(det.reasons)
        elif det.score is not None and det.outcome != "error":
            threshold = det.threshold if det.threshold is not None else 0.5
            if det.score >= threshold:
                found["likely_fake"].extend(det.reasons)
            elif det.score >= review_threshold:
                found["needs_review"].append(
                    f"{det.reasons[0] if det.reasons else det.detector} "
                    f"(at or above the review threshold {review_threshold:.2f})"
                )

    errors = [d for d in detections if d.outcome == "error"]
    judged = any(d.outcome in ("fake", "real") for d in detections)
    if errors and not judged:
        for det in errors:
            found["needs_review"].append(
                f"{det.detector} could not analyse the item ({'; '.join(det.reasons) or 'no reason given'}) "
                "and no other detector could judge it"
            )

    scores = [d.score for d in detections if d.score is not None and d.outcome != "error"]
    band = next((b for b in BANDS[:-1] if found[b]), "no_signal")
    reasons = [r for b in BANDS[:-1] for r in found[b]]
    if band == "no_signal":
        reasons = _no_signal_reasons(detections)
    return Verdict(band=band, score=max(scores) if scores else None, reasons=reasons)


def _c2pa(det: Detection, found: dict[Band, list[str]]) -> None:
    facts = det.details
    if not facts.get("manifest_present"):
        return
    declared = facts.get("generative_ai_declared", False)
    valid = facts.get("signed_valid", False)
    tampered = facts.get("tampered", False)
    declaration = [r for r in det.reasons if " declares " in r]
    tamper = [r for r in det.reasons if "tampering" in r]
    if declared and valid and not tampered:
        found["confirmed_ai"].extend(declaration)
        return
    if tampered:
        found["needs_review"].extend(tamper)
    if declared:
        why = "the content was altered after signing" if tampered else "its signature does not validate"
        found["needs_review"].extend(f"{r}, but {why}" for r in declaration)


def _no_signal_reasons(detections: list[Detection]) -> list[str]:
    """What each detector said, so a 'no signal' verdict still shows what was looked at."""
    if not detections:
        return ["no detector ran on this item"]
    return [f"{d.detector}: {'; '.join(d.reasons) or d.outcome}" for d in detections]
