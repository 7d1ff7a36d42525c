"""Metrics checked against hand-computed cases, and `detectors eval` on a real (tiny) checkpoint."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectors import calibration as cal

# ---------------------------------------------------------------- metrics, by hand

# Four real and four fake scores. Pairs where the fake outscores the real image:
# 0.4 beats 0.1, 0.3 (2); 0.6 beats 0.1, 0.3, 0.5 (3); 0.8 and 0.9 beat all four (8): 13 of 16.
REAL = [0.1, 0.3, 0.5, 0.7]
FAKE = [0.4, 0.6, 0.8, 0.9]


def _case(real: list[float], fake: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0] * len(real) + [1] * len(fake)), np.array(real + fake, dtype=float)


def test_auc_by_hand_and_against_all_pairs():
    assert cal.auc(*_case(REAL, FAKE)) == pytest.approx(13 / 16)
    # Ties count half: 0.9 beats both (2), 0.5 beats 0.2 (1) and ties 0.5 (0.5): 3.5 of 4.
    assert cal.auc(*_case([0.2, 0.5], [0.5, 0.9])) == pytest.approx(3.5 / 4)
    assert cal.auc(*_case([0.1, 0.2], [0.8, 0.9])) == 1.0
    assert cal.auc(*_case([0.8, 0.9], [0.1, 0.2])) == 0.0
    # The rank formula equals counting every (fake, real) pair, ties included.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) * 0.5 + labels * 0.3, 2)  # rounded: many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert cal.auc(labels, scores) == pytest.approx(pairs, abs=1e-12)


def test_roc_points_by_hand():
    roc = cal.roc_curve(*_case(REAL, FAKE))
    assert roc.thresholds[0] == np.inf
    assert roc.thresholds[1:].tolist() == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.1]
    assert roc.fpr.tolist() == [0, 0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0]
    assert roc.tpr.tolist() == [0, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0]


def test_equal_error_rate_by_hand():
    # At threshold 0.6: one real of four (0.7) flagged, one fake of four (0.4) missed.
    assert cal.equal_error_rate(*_case(REAL, FAKE)) == (pytest.approx(0.25), 0.6)
    # Staircase: at 0.7, FPR 1/3 and FNR 1/2; at 0.5, FPR 1/3 and FNR 0. The segment between
    # keeps FPR at 1/3 while FNR falls through it: EER 1/3.
    eer, _ = cal.equal_error_rate(*_case([0.1, 0.2, 0.7], [0.5, 0.8]))
    assert eer == pytest.approx(1 / 3)
    # A tie makes a diagonal step from (FPR 0, FNR .5) to (FPR .5, FNR 0): they meet at .25.
    eer, _ = cal.equal_error_rate(*_case([0.2, 0.5], [0.5, 0.9]))
    assert eer == pytest.approx(0.25)
    assert cal.equal_error_rate(*_case([0.1, 0.2], [0.8, 0.9]))[0] == 0.0


def test_calibrated_threshold_is_the_lowest_meeting_the_target():
    labels, scores = _case(REAL, FAKE)
    # 25% of four real images: one may pass. The threshold sits just above the second-highest
    # real score (0.5): 0.7 passes (FPR .25), and fakes 0.6, 0.8, 0.9 are caught (TPR .75).
    c = cal.calibrate_threshold(labels, scores, 0.25)
    assert c.threshold == np.nextafter(0.5, 1.0)
    assert (c.fpr_at_threshold, c.tpr_at_threshold, c.reached) == (0.25, 0.75, True)
    lower = np.nextafter(c.threshold, 0.0)  # == 0.5: then two real images pass, FPR .5
    assert float((np.array(REAL) >= lower).mean()) == 0.5
    # 1% of four: none may pass; just above the top real score 0.7, catching 0.8 and 0.9.
    c = cal.calibrate_threshold(labels, scores, 0.01)
    assert c.threshold == np.nextafter(0.7, 1.0)
    assert (c.fpr_at_threshold, c.tpr_at_threshold) == (0.0, 0.5)
    assert c.fpr_resolution == 0.25
    # 300 real images at 1%: exactly three may pass (0.01 * 300 is 2.9999... in floats).
    real = list(np.linspace(0.0, 0.299, 300))
    c = cal.calibrate_threshold(*_case(real, [0.5]), 0.01)
    assert c.fpr_at_threshold == 0.01 and c.threshold == np.nextafter(real[-4], 1.0)


def test_calibration_that_cannot_reach_the_target_says_so():
    c = cal.calibrate_threshold(*_case([1.0, 1.0, 0.2], [1.0]), 0.01)
    assert c.threshold == 1.0 and not c.reached and c.fpr_at_threshold == pytest.approx(2 / 3)


def test_bad_metric_inputs_are_named():
    with pytest.raises(ValueError, match="both real and fake"):
        cal.auc(np.array([0, 0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="same length"):
        cal.auc(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        cal.auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        cal.auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="target_fpr"):
        cal.calibrate_threshold(*_case(REAL, FAKE), 0.0)


def test_reliability_bins_and_ece_by_hand(tmp_path):
    labels = np.array([0, 1, 1, 1])
    scores = np.array([0.05, 0.15, 0.95, 1.0])  # 1.0 falls in the last bin, not an 11th
    bins = cal.reliability_bins(labels, scores)
    assert len(bins) == 10 and [b.count for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert (bins[0].mean_score, bins[0].fake_fraction) == (0.05, 0.0)
    assert bins[9].mean_score == pytest.approx(0.975) and bins[9].fake_fraction == 1.0
    assert bins[3].mean_score is None
    # |0.05 - 0| + |0.15 - 1| + 2 * |0.975 - 1|, over 4 images.
    assert cal.expected_calibration_error(bins) == pytest.approx((0.05 + 0.85 + 0.05) / 4)
    png = cal.draw_reliability_diagram(bins, tmp_path / "r.png", title="t")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (640, 600)
        colours = {c for _, c in im.convert("RGB").getcolors(100_000)}
    assert (70, 110, 190) in colours and (220, 80, 40) in colours  # bars and mean dots drawn


# ---------------------------------------------------------------- eval on a real checkpoint

def _write_set(root: Path, n: int, seed: int) -> Path:
    """Dark noisy squares are real, bright ones fake: a task a tiny model learns in seconds."""
    rng = np.random.default_rng(seed)
    for name, base in (("real", 70), ("fake", 150)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            level = base + rng.normal(0, 25)
            pixels = np.clip(level + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    from detectors.train import train_classifier

    tmp = tmp_path_factory.mktemp("eval")
    train_set = _write_set(tmp / "train", 40, seed=1)
    model = tmp / "model"
    train_classifier(train_set, model, image_size=32, epochs=4, batch_size=16, seed=0,
                     augment="shift-flip", learning_rate=1e-2)
    return model, _write_set(tmp / "held-out", 60, seed=2)


def test_eval_writes_calibration_metrics_plot_and_card(trained):
    from detectors.classifier import HFImageClassifier
    from detectors.evaluate import evaluate_model

    model, data = trained
    result = evaluate_model(model, data, target_fpr=0.05)
    calibration = json.loads((model / "calibration.json").read_text())
    assert set(calibration) == {"threshold", "target_fpr", "fpr_at_threshold", "tpr_at_threshold",
                                "eval_set", "created", "reliable", "fpr_upper_bound", "fpr_confidence", "rule", "data"}
    # 60 real images bound a 5% FPR (59 needed), with none over the threshold.
    assert calibration["reliable"] is True and calibration["fpr_upper_bound"] <= 0.05
    assert calibration["data"] == {"n_real": 60, "n_fake": 60, "source": str(data.resolve()),
                                   "digest": calibration["eval_set"].rsplit("@", 1)[1]}
    assert calibration["target_fpr"] == 0.05 and calibration["created"].endswith("+00:00")
    assert calibration["eval_set"].startswith(f"{data.resolve()}@sha256:")
    assert result["n_real"] == result["n_fake"] == 60 and result["auc"] > 0.9

    # Score the set again, independently, and check the calibration against it.
    clf = HFImageClassifier(str(model), threshold=0.5)
    def scores(name: str) -> np.ndarray:
        images = [Image.open(p).convert("RGB") for p in sorted((data / name).glob("*.jpg"))]
        return clf.score_images(images)
    real, fake = scores("real"), scores("fake")
    t = calibration["threshold"]
    assert (real >= t).mean() == calibration["fpr_at_threshold"] <= 0.05
    assert (fake >= t).mean() == pytest.approx(calibration["tpr_at_threshold"])
    assert (real >= np.nextafter(t, 0)).mean() > 0  # the lowest threshold letting no real image through
    labels = np.r_[np.zeros(60), np.ones(60)]
    assert result["auc"] == pytest.approx(cal.auc(labels, np.r_[real, fake]), abs=1e-6)

    saved = json.loads((model / "eval.json").read_text())
    assert saved["model"]["weights_digest"] == clf.weights_digest and saved["eer"] == result["eer"]
    assert len(saved["reliability_bins"]) == 10 and saved["n_unreadable"] == 0
    with Image.open(model / "reliability.png") as im:
        assert im.format == "PNG"
    card = (model / "MODEL_CARD.md").read_text()
    assert clf.weights_digest in card and repr(t) in card and "## Limitations" in card
    assert str((data.parent / "train").resolve()) in card  # training data, from training_metrics.json

    # The detector picks the calibrated threshold up when none is configured.
    assert HFImageClassifier(str(model)).threshold == t


def test_eval_set_id_follows_the_files(trained, tmp_path):
    from detectors.evaluate import eval_set_id

    root = tmp_path
    a = eval_set_id(root, [("real/1.jpg", "aa"), ("fake/1.jpg", "bb")])
    assert a == eval_set_id(root, [("fake/1.jpg", "bb"), ("real/1.jpg", "aa")])  # order-free
    lines = "fake/1.jpg bb\nreal/1.jpg aa\n"
    assert a == f"{root.resolve()}@sha256:{hashlib.sha256(lines.encode()).hexdigest()}"
    assert a != eval_set_id(root, [("real/1.jpg", "ab"), ("fake/1.jpg", "bb")])  # content changed


def test_unreadable_files_are_left_out_and_listed(trained, tmp_path):
    import shutil

    from detectors.evaluate import evaluate_model

    model, data = trained
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    noisy = tmp_path / "data"
    shutil.copytree(data, noisy)
    (noisy / "fake" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (copy / "calibration.json").write_text('{"threshold": "high"}')  # would stop the model loading
    result = evaluate_model(copy, noisy, target_fpr=0.05)
    assert result["n_fake"] == 60 and result["n_unreadable"] == 1
    assert result["unreadable"][0]["file"] == "fake/broken.jpg"
    assert any("could not be scored" in w for w in result["warnings"])
    assert any("previous calibration.json was invalid" in w for w in result["warnings"])
    assert (copy / "calibration.json.invalid").read_text() == '{"threshold": "high"}'
    assert json.loads((copy / "calibration.json").read_text())["target_fpr"] == 0.05


def test_bad_eval_inputs_are_named(trained, tmp_path):
    from detectors.evaluate import EvaluationError, evaluate_model

    model, data = trained
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate_model(tmp_path / "nope", data)
    with pytest.raises(EvaluationError, match="no config.json"):
        evaluate_model(tmp_path, data)
    with pytest.raises(EvaluationError, match="evaluation data folder .* does not exist"):
        evaluate_model(model, tmp_path / "nodata")
    (tmp_path / "d" / "real").mkdir(parents=True)
    with pytest.raises(EvaluationError, match="no fake/ subfolder"):
        evaluate_model(model, tmp_path / "d")
    (tmp_path / "d" / "fake").mkdir()
    (tmp_path / "d" / "fake" / "x.jpg").write_bytes(b"")
    with pytest.raises(EvaluationError, match="no images in .*real"):
        evaluate_model(model, tmp_path / "d")
    with pytest.raises(EvaluationError, match="target FPR"):
        evaluate_model(model, data, target_fpr=1.5)


def test_cli_train_then_eval(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    runner = CliRunner()
    train_set = _write_set(tmp_path / "train", 12, seed=5)
    out = tmp_path / "m"
    res = runner.invoke(app, ["detectors", "train", "--data", str(train_set), "--out", str(out), "--config", "small",
                              "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--seed", "3"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "training_metrics.json").read_text())
    assert metrics["config"] == "small" and metrics["augmentation"] == "transcode" and metrics["seed"] == 3
    # 12 real images cannot bound a 10% FPR (29 are needed): refused, nothing written.
    res = runner.invoke(app, ["detectors", "eval", "--model", str(out), "--data", str(train_set),
                              "--target-fpr", "0.1"])
    assert res.exit_code == 2 and "needs at least 29" in res.output
    assert not (out / "calibration.json").exists()
    # --force writes it, marked unreliable, and the model's score then never makes a finding alone.
    res = runner.invoke(app, ["detectors", "eval", "--model", str(out), "--data", str(train_set),
                              "--target-fpr", "0.1", "--force"])
    assert res.exit_code == 0, res.output
    assert "calibrated threshold" in res.output and "NOT reliable" in res.output
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["reliable"] is False and calibration["fpr_upper_bound"] > 0.1
    from detectors.classifier import HFImageClassifier

    assert HFImageClassifier(str(out)).threshold_details()["calibrated"] is False

    res = runner.invoke(app, ["detectors", "train", "--data", str(tmp_path / "none"), "--out", str(out)])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["detectors", "train", "--data", str(train_set), "--out", str(out),
                              "--base", str(out), "--config", "small"])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(app, ["detectors", "eval", "--model", str(out), "--data", str(tmp_path / "train" / "real")])
    assert res.exit_code == 2 and "no real/" in res.output
