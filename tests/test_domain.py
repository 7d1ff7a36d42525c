"""A learned score counts only inside its model's domain: the FPR bound, the domain check, and the
verdicts a real (tiny) calibrated model gives inside and outside it."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectors import calibration as cal
from detectors.domain import DomainError, combine_domains, fit_domain, ledoit_wolf, load_domain

pytest.importorskip("torch")


# ---------------------------------------------------------------- the FPR bound

def test_clopper_pearson_bound_and_the_count_it_needs():
    # No false positive among n: the bound solves (1 - p)^n = 0.05.
    assert cal.fpr_upper_bound(0, 299) == pytest.approx(1 - 0.05 ** (1 / 299), rel=1e-9)
    assert cal.fpr_upper_bound(0, 299) <= 0.01 < cal.fpr_upper_bound(0, 298)
    assert cal.real_needed(0.01) == 299 and cal.real_needed(0.05) == 59
    # k of n: P(X <= k) at the bound is exactly 5%.
    p = cal.fpr_upper_bound(3, 1000)
    assert sum(math.comb(1000, i) * p**i * (1 - p) ** (1000 - i) for i in range(4)) == pytest.approx(0.05, abs=1e-9)
    with pytest.raises(ValueError, match="false_positives"):
        cal.fpr_upper_bound(5, 3)


def test_bounded_threshold_allows_only_what_the_bound_allows():
    rng = np.random.default_rng(0)
    real, fake = rng.random(1000) * 0.9, 0.5 + rng.random(100) * 0.5
    labels, scores = np.r_[np.zeros(1000), np.ones(100)], np.r_[real, fake]
    b = cal.calibrate_threshold_bounded(labels, scores, 0.01)
    # The plain rule would let 10 of 1000 through; the bound allows 4 (bound(5, 1000) > 1%).
    assert b.false_positives == 4 == int((real >= b.choice.threshold).sum())
    assert b.reliable and b.fpr_upper_bound <= 0.01 < cal.fpr_upper_bound(5, 1000)
    small = cal.calibrate_threshold_bounded(labels[900:], scores[900:], 0.01)  # 100 real images
    assert not small.reliable and small.false_positives == 0 and small.real_needed == 299


# ---------------------------------------------------------------- the domain check on features

def test_domain_check_keeps_its_own_kind_inside_and_others_out(tmp_path):
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(16, 16))
    inside = rng.normal(size=(600, 16)) @ mix
    check = fit_domain(inside, "digest-a")
    assert check.n_fit + check.n_holdout == 600 and check.holdout_inside >= 0.95
    fresh = rng.normal(size=(2000, 16)) @ mix  # new items of the same kind
    assert (check.distances(fresh) <= check.limit).mean() >= 0.95
    shifted = 3.0 * fresh[:200]  # another distribution: three times the spread
    assert (check.distances(shifted) > check.limit).mean() > 0.95
    entry = check.assess(float(check.distances(shifted[:1])[0]))
    assert entry["inside"] is False and entry["distance"] > entry["limit"]

    check.save(tmp_path)
    loaded, why = load_domain(tmp_path, "digest-a")
    assert why is None and np.allclose(loaded.distances(fresh[:5]), check.distances(fresh[:5]))
    other, why = load_domain(tmp_path, "digest-b")
    assert other is None and "fitted for other weights" in why
    none, why = load_domain(tmp_path / "nowhere", "digest-a")
    assert none is None and "no domain check" in why
    with pytest.raises(DomainError, match="at least 40"):
        fit_domain(inside[:10], "d")
    with pytest.raises(DomainError, match="dimension 16"):
        check.distances(np.zeros((1, 3)))


def test_ledoit_wolf_shrinks_a_singular_sample_covariance():
    x = np.random.default_rng(2).normal(size=(10, 30))  # fewer items than dimensions
    assert np.linalg.matrix_rank(np.cov(x.T, bias=True)) < 30
    shrunk = ledoit_wolf(x)
    assert np.linalg.matrix_rank(shrunk) == 30 and np.allclose(shrunk, shrunk.T)


def test_combined_domain_is_inside_only_when_every_part_is():
    a = {"distance": 5.0, "limit": 10.0, "inside": True}
    b = {"distance": 30.0, "limit": 12.0, "inside": False}
    assert combine_domains([a, a])["inside"] is True
    both = combine_domains([a, b])
    assert both["inside"] is False and both["distance"] == 30.0 and both["limit"] == 12.0
    assert combine_domains([a, {"inside": None, "note": "no check"}]) == {"inside": None, "note": "no check"}


# ---------------------------------------------------------------- a real calibrated model

def _squares(root: Path, n: int, seed: int) -> Path:
    """Dark noisy squares are real, bright ones fake: a task a tiny model learns in seconds."""
    rng = np.random.default_rng(seed)
    for name, base in (("real", 70), ("fake", 150)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            level = base + rng.normal(0, 25)
            pixels = np.clip(level + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def _unlike(seed: int) -> bytes:
    """Saturated stripes and checks: nothing like the noisy grey squares the model knows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:40]
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[..., 0] = 255 * ((x // 2) % 2)
    pixels[..., 2] = 255 * ((y // 3) % 2)
    pixels[..., 1] = rng.integers(200, 256)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> tuple[Path, Path]:
    from detectors.evaluate import evaluate_model
    from detectors.train import train_classifier

    tmp = tmp_path_factory.mktemp("domain")
    model = tmp / "model"
    train_classifier(_squares(tmp / "train", 40, seed=1), model, image_size=32, epochs=4, batch_size=16, seed=0,
                     augment="shift-flip", learning_rate=1e-2)
    held_out = _squares(tmp / "held-out", 60, seed=2)
    evaluate_model(model, held_out, target_fpr=0.05, source="test squares")  # 60 real: enough for 5%
    return model, _squares(tmp / "fresh", 30, seed=3)


def test_eval_fits_the_domain_check_and_records_its_data(calibrated):
    model, _ = calibrated
    calibration = json.loads((model / "calibration.json").read_text())
    assert calibration["reliable"] is True
    assert calibration["data"]["n_real"] == 60 and calibration["data"]["source"] == "test squares"
    assert (model / "domain.npz").is_file()
    result = json.loads((model / "eval.json").read_text())
    assert result["domain_check"]["holdout_inside"] >= 0.95 and result["domain_check"]["n_holdout"] >= 20
    card = (model / "MODEL_CARD.md").read_text()
    assert "## Domain check" in card and "**Reliable**" in card and "test squares" in card


def test_calibrated_model_flags_inside_its_domain_and_only_asks_for_review_outside(calibrated):
    from detectors.base import MediaInput
    from detectors.pipeline import DetectionPipeline

    model, fresh = calibrated
    pipe = DetectionPipeline(classifier_model=str(model), c2pa=False, watermark=False, metadata=False)
    fakes = [MediaInput(f"{i:064x}", "image", p.read_bytes()) for i, p in enumerate(sorted((fresh / "fake").iterdir()))]
    analyses = pipe.analyse(fakes)
    inside = [a for a in analyses if a.detections[0].details["domain"]["inside"]]
    assert len(inside) >= 0.9 * len(fakes)  # new images of the calibrated kind stay inside
    assert all(a.verdict.band == "likely_fake" for a in inside if a.detections[0].outcome == "fake")
    assert any(a.verdict.band == "likely_fake" for a in inside)

    odd = [MediaInput(f"{100 + i:064x}", "image", _unlike(i)) for i in range(5)]
    for a in pipe.analyse(odd):
        det = a.detections[0]
        assert det.details["domain"]["inside"] is False, det.details["domain"]
        assert any(r.startswith("domain check: outside the data the model was validated on") for r in det.reasons)
        assert a.verdict.band in ("needs_review", "no_signal")
        if det.outcome == "fake":
            assert "outside the data this model was validated on" in a.verdict.reasons[-1]


def test_takedown_explanation_carries_the_domain_check():
    from evidence.takedown import explain

    line = "domain check: inside the data the model was validated on (distance 12.0 <= limit 40.0)"
    entry = {
        "media": {"kind": "image", "url": "https://x.example/m.jpg", "sha256": "ab" * 32},
        "post": {"url": "https://x.example/p/1", "account": "a", "posted_at": None},
        "verdict": {"band": "likely_fake", "score": 0.9, "reasons": ["classifier scored 0.90 >= 0.50"]},
        "detections": [{"detector": "hf-classifier", "model_id": "m", "weights_digest": "abc123abc123abc",
                        "score": 0.9, "threshold": 0.5, "outcome": "fake",
                        "reasons": ["classifier m scored 0.90 >= 0.50", line]}],
        "provenance": [], "bank_matches": [], "reviews": [],
        "legal_assessment": {"in_ban_window": None, "ai_label_present": None, "campaign_purpose": None, "notes": ""},
    }
    assert "Domain check: inside the data the model was validated on (distance 12.0 <= limit 40.0)." in explain(entry, "en")
