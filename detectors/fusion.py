"""Fusing the detectors' results for one item into one verdict an investigator can act on.

Bands, strongest first:

* ``confirmed_ai``  a C2PA manifest whose signature validates declares generative AI, its
                    signer's chain ends in a configured trust anchor (detectors/c2pa_trust.py)
                    and the content was not altered after signing;
* ``likely_fake``   an altered copy of an authentic reference (the original found and the
                    localised change shown), the same declaration from a valid but untrusted
                    signer (anyone can make a certificate), a known generator watermark decoded, the classifier scored at or
                    above its threshold, or unsigned metadata names an AI generator (or
                    declares AI as the IPTC digital source type) and another detector agrees
                    (a classifier score at or above the review threshold, a watermark, a
                    validly signed C2PA declaration);
* ``needs_review``  the classifier scored at or above its threshold but the item matches an
                    authentic reference unaltered, the classifier scored at or above the review threshold, the C2PA data
                    hash does not match (tampering), a manifest declares AI but its
                    signature does not validate, unsigned metadata says AI with nothing else
                    agreeing, or a detector failed on an item that no other detector could
                    judge;
* ``no_signal``     none of the above; this is not a finding that the item is real.

Unsigned metadata never reaches ``confirmed_ai``: anyone can write it, including onto a real
photo to discredit it. Reasons from every signal that counted are kept, strongest first, with
their numbers.
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
METADATA = "metadata-provenance"
REFERENCE = "reference-library"  # comparison with an authentic original (storage/reference_check.py)


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
    support: list[str] = []  # other detectors' signals that unsigned metadata can lean on
    metadata_claims: list[str] = []
    learned_fake: list[str] = []  # likely_fake reasons that came from a learned score only
    authentic_match: list[str] = []

    for det in detections:
        if det.detector == REFERENCE:
            # An altered copy of an authentic original is shown, not inferred: likely_fake. An
            # unaltered copy matches the original: below, no learned score alone may flag it.
            if det.outcome == "fake":
                found["likely_fake"].extend(det.reasons)
            elif det.outcome == "real":
                authentic_match.extend(det.reasons[:1])
        elif det.detector == C2PA:
            _c2pa(det, found)
            # A declaration whose signature fails is no more than another unsigned claim, which
            # anyone forging the metadata could have added too; a validly signed one (even on
            # content altered since) comes from its signer.
            if det.details.get("generative_ai_declared") and det.details.get("signed_valid"):
                support.append("the signed C2PA declaration")
        elif det.detector == WATERMARK:
            if det.outcome == "fake":
                found["likely_fake"].extend(det.reasons)
                support.append("the decoded watermark")
        elif det.detector == METADATA:
            if det.outcome == "fake":
                metadata_claims = list(det.reasons)
        elif det.score is not None and det.outcome != "error":
            threshold = det.threshold if det.threshold is not None else 0.5
            untrusted = learned_score_caveat(det)
            if det.score >= threshold and untrusted:
                found["needs_review"].extend(det.reasons)
                found["needs_review"].append(f"{untrusted}, so its score alone is not a finding")
            elif det.score >= threshold:
                found["likely_fake"].extend(det.reasons)
                learned_fake.extend(det.reasons)
            elif det.score >= review_threshold:
                found["needs_review"].append(
                    f"{det.reasons[0] if det.reasons else det.detector} "
                    f"(at or above the review threshold {review_threshold:.2f})"
                )
            if det.score >= review_threshold and not untrusted:
                support.append(f"the {det.detector} score {det.score:.2f}")

    # A classifier's "likely_fake" needs a calibrated model and an item inside its domain
    # (learned_score_caveat); else it is at most "needs_review", with the reason.
    if metadata_claims:
        if support:
            found["likely_fake"].extend(metadata_claims)
            found["likely_fake"].append(
                f"the unsigned metadata agrees with {' and '.join(support)}, so together they make a likely fake"
            )
        else:
            found["needs_review"].extend(metadata_claims)
            found["needs_review"].append("no other detector backs the metadata up, so a person should review it")

    if authentic_match and found["likely_fake"] and found["likely_fake"] == learned_fake:
        found["needs_review"][:0] = [
            f"{r} (a learned score says fake, but the item {authentic_match[0]}: review it)" for r in learned_fake]
        found["likely_fake"] = []

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
        trust = facts.get("trust") or {}
        if facts.get("trusted"):
            found["confirmed_ai"].extend(declaration + [r for r in det.reasons if r.startswith("C2PA signer trusted")])
        else:
            signer = trust.get("signer") or trust.get("issuer") or "an unnamed signer"
            found["likely_fake"].extend(
                f"{r}, but the signer {signer} is not on the trust list: at most a likely fake" for r in declaration)
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


def learned_score_caveat(det: Detection) -> str | None:
    """Why a learned detector's score may not make `likely_fake` on its own, None when it may.

    A score counts only from a model calibrated on enough data (`calibrated`) and for an item
    inside the data it was calibrated on (`domain.inside`): a classifier trained on one kind of
    image scores unlike images at random, often at 1.00. Detectors without a model are not
    learned and are left alone.
    """
    if det.model_id is None:
        return None
    details = det.details or {}
    if not details.get("calibrated"):
        return "model not calibrated (no reliable calibration.json: run 'deepwatch detectors eval')"
    domain = details.get("domain") or {}
    if domain.get("inside") is None:
        return f"model has no domain check ({domain.get('note') or 'none fitted'})"
    if not domain["inside"]:
        return (f"outside the data this model was validated on: distance {domain['distance']:.0f} "
                f"> limit {domain['limit']:.0f}")
    return None
