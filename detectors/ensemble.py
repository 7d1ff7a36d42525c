"""Several image classifiers judged as one: a weighted mean of their P(fake).

Each member is an `HFImageClassifier` (its own checkpoint, fake label, revision and threshold,
the calibrated one when its folder has calibration.json). The ensemble's Detection carries its
own threshold and, in `details["members"]`, every member's model, revision, weights digest,
score, threshold and outcome, so a finding can be traced to each model that contributed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from detectors.base import Detection, MediaInput, learned_identity

if TYPE_CHECKING:
    from PIL import Image

ENSEMBLE_VERSION = "1.0"


@dataclass(frozen=True)
class MemberSpec:
    """One member as configured: `detectors.classifiers[i]` in a campaign spec."""

    model: str
    fake_label: str = "fake"
    revision: str | None = None
    weight: float = 1.0
    threshold: float | None = None  # None: the checkpoint's calibrated threshold, else 0.5

    @classmethod
    def of(cls, value: "MemberSpec | Mapping[str, Any]") -> "MemberSpec":
        if isinstance(value, MemberSpec):
            return value
        if hasattr(value, "model_dump"):  # the spec's EnsembleMember, passed as it is
            value = value.model_dump()
        unknown = set(value) - {"model", "fake_label", "revision", "weight", "threshold"}
        if unknown:
            raise ValueError(f"unknown ensemble member setting(s) {sorted(unknown)}")
        if "model" not in value:
            raise ValueError("an ensemble member needs 'model' (hub id or local path)")
        return cls(**value)


class EnsembleClassifier:
    """Weighted mean of the members' P(fake); fake when it reaches the ensemble's threshold."""

    name = "hf-ensemble"
    kinds = ("image",)

    def __init__(
        self,
        members: list["MemberSpec | Mapping[str, Any]"],
        *,
        threshold: float = 0.5,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "auto",
    ):
        from detectors.classifier import HFImageClassifier

        specs = [MemberSpec.of(m) for m in members]
        if len(specs) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(specs)}")
        for i, spec in enumerate(specs):
            if not spec.weight > 0:
                raise ValueError(f"ensemble member {i} ({spec.model}): weight must be positive, got {spec.weight}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.batch_size = batch_size
        self.specs = specs
        self.members: list[HFImageClassifier] = []
        for spec in specs:
            kwargs: dict[str, Any] = dict(fake_label=spec.fake_label, batch_size=batch_size, device=device,
                                          revision=spec.revision, dtype=dtype)
            if spec.threshold is not None:  # else the member's own (calibrated) threshold
                kwargs["threshold"] = spec.threshold
            self.members.append(HFImageClassifier(spec.model, **kwargs))
        total = sum(s.weight for s in specs)
        self.weights = np.asarray([s.weight / total for s in specs], dtype=np.float64)
        self.version = f"{ENSEMBLE_VERSION}+" + self.members[0].version
        self.model_id = "ensemble(" + ", ".join(f"{m.model_id}*{s.weight:g}" for m, s in zip(self.members, specs)) + ")"
        self.model_revision = ",".join(m.model_revision for m in self.members)
        # One identity for the combination: any member's weights, its label or its weight
        # changing makes a new digest, so stored results never mix two ensembles.
        identity = "".join(f"{m.weights_digest} {m.fake_label} {s.weight!r}\n" for m, s in zip(self.members, specs))
        self.weights_digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ scoring

    def score_images_by_member(self, images: list["Image.Image"]) -> tuple[np.ndarray, np.ndarray]:
        """(ensemble P(fake) per image, members x images matrix of the members' P(fake))."""
        per_member = np.stack([m.score_images(images) for m in self.members]) if images else np.zeros((len(self.members), 0))
        return self.weights @ per_member, per_member

    def score_images(self, images: list["Image.Image"]) -> np.ndarray:
        """The ensemble's P(fake) per image (video frames go through here)."""
        return self.score_images_by_member(images)[0]

    def score_images_with_domain(self, images: list["Image.Image"]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The ensemble's P(fake) and combined domain check per image: inside only if inside every member's."""
        from detectors.domain import combine_domains

        got = [m.score_images_with_domain(images) for m in self.members]
        per_member = np.stack([g[0] for g in got]) if images else np.zeros((len(self.members), 0))
        domains = [combine_domains([g[1][i] for g in got]) for i in range(len(images))]
        return self.weights @ per_member, domains

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        """One Detection per item. An item any member could not read is an error: a mean over
        fewer members is not the ensemble that was configured."""
        per_member = [m.detect_batch(items) for m in self.members]
        out = []
        for i in range(len(items)):
            results = [dets[i] for dets in per_member]
            failed = [r for r in results if r.outcome == "error" or r.score is None]
            if failed:
                reasons = list(dict.fromkeys(reason for r in failed for reason in (r.reasons or ["no score"])))
                out.append(Detection(outcome="error", reasons=reasons,
                                     details={**self.threshold_details(), "members": self._member_details(results)},
                                     **self._base()))
                continue
            score = float(self.weights @ np.asarray([r.score for r in results], dtype=np.float64))
            out.append(self._scored(score, results))
        return out

    # ------------------------------------------------------------------ results

    def _member_details(self, results: list[Detection]) -> list[dict[str, Any]]:
        return [
            {
                "model_id": m.model_id,
                "model_revision": m.model_revision,
                "weights_digest": m.weights_digest,
                "fake_label": m.fake_label,
                "weight": s.weight,
                "score": r.score,
                "threshold": r.threshold,
                "outcome": r.outcome,
                # Calibration facts the member recorded (calibrated_fpr...), passed through.
                **{k: v for k, v in r.details.items() if k not in ("fake_label",)},
            }
            for m, s, r in zip(self.members, self.specs, results)
        ]

    def _base(self) -> dict[str, Any]:
        return learned_identity(self)

    def threshold_details(self) -> dict[str, Any]:
        """The ensemble's threshold and where it came from (the same keys a classifier gives).

        It is the configured one: a calibration belongs to one checkpoint, and the members'
        own calibrations are listed with each member."""
        # Calibrated when every member is reliably calibrated: each score in the mean is then trusted.
        return {"threshold": self.threshold, "threshold_source": "configured", "calibrated_fpr": None,
                "calibrated": all(m.calibration is not None and m.calibration.reliable for m in self.members)}

    def _scored(self, score: float, results: list[Detection]) -> Detection:
        from detectors.domain import combine_domains

        fake = score >= self.threshold
        parts = ", ".join(f"{m.model_id} {r.score:.2f}" for m, r in zip(self.members, results))
        return Detection(
            outcome="fake" if fake else "real",
            score=score,
            reasons=[f"ensemble of {len(self.members)} classifiers scored {score:.2f} "
                     f"{'>=' if fake else '<'} {self.threshold:.2f} (weighted mean of {parts})"],
            details={"combine": "weighted mean of P(fake)", **self.threshold_details(),
                     "domain": combine_domains([r.details.get("domain") for r in results]),
                     "members": self._member_details(results)},
            **self._base(),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_digest": self.weights_digest,
            **self.threshold_details(),
            "combine": "weighted mean of P(fake)",
            "members": [{**m.describe(), "weight": s.weight} for m, s in zip(self.members, self.specs)],
        }
