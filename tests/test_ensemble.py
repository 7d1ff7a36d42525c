"""EnsembleClassifier over two small transformers checkpoints built from configs in tmp dirs."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectors.base import MediaInput
from detectors.ensemble import EnsembleClassifier

torch = pytest.importorskip("torch")


def _vit(folder: Path, labels: tuple[str, str], logits: tuple[float, float]) -> Path:
    """A 1-layer ViT whose head is zeroed and biased, so every image gets `logits`: scores a
    test knows in advance, through the real loading and preprocessing code."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=2, id2label=dict(enumerate(labels)),
                       label2id={label: i for i, label in enumerate(labels)})
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(logits))
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ens")
    # A: P(fake) = 3/4. B names its classes differently; P(synthetic) = 1/4.
    a = _vit(root / "a", ("real", "fake"), (0.0, math.log(3)))
    b = _vit(root / "b", ("synthetic", "authentic"), (0.0, math.log(3)))
    # A was calibrated by `detectors eval` (the file it writes).
    (a / "calibration.json").write_text(json.dumps({
        "threshold": 0.7, "target_fpr": 0.01, "fpr_at_threshold": 0.008, "tpr_at_threshold": 0.9,
        "eval_set": "/data/held-out@sha256:00", "created": "2026-05-01T00:00:00+00:00"}))
    return a, b


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _members(a: Path, b: Path, wa: float = 1.0, wb: float = 3.0) -> list[dict]:
    return [{"model": str(a), "weight": wa},
            {"model": str(b), "fake_label": "synthetic", "weight": wb, "threshold": 0.2}]


def test_weighted_mean_and_every_members_result_kept(models):
    from detectors.classifier import weights_digest

    a, b = models
    ens = EnsembleClassifier(_members(a, b), threshold=0.3, device="cpu")
    items = [MediaInput(sha256=f"{i:064x}", kind="image", data=_png(i)) for i in range(3)]
    dets = ens.detect_batch(items)
    assert len(dets) == 3
    det = dets[0]
    # (1 * 0.75 + 3 * 0.25) / 4
    assert det.score == pytest.approx(0.375) and det.outcome == "fake" and det.threshold == 0.3
    assert det.detector == "hf-ensemble" and det.weights_digest == ens.weights_digest
    assert "0.38 >= 0.30" in det.reasons[0]
    first, second = det.details["members"]
    assert first["model_id"] == str(a) and first["model_revision"] == "local"
    assert first["weights_digest"] == weights_digest(a) and second["weights_digest"] == weights_digest(b)
    assert first["score"] == pytest.approx(0.75) and second["score"] == pytest.approx(0.25)
    assert first["threshold"] == 0.7  # from A's calibration.json
    assert (first["threshold_source"], first["calibrated_fpr"]) == ("calibration", 0.01)
    assert (det.details["threshold"], det.details["threshold_source"]) == (0.3, "configured")
    assert second["threshold"] == 0.2 and second["fake_label"] == "synthetic"  # configured
    assert (first["outcome"], second["outcome"]) == ("fake", "fake")
    assert (first["weight"], second["weight"]) == (1.0, 3.0)
    json.dumps(det.to_dict())  # storable as it is

    described = ens.describe()
    assert [m["weight"] for m in described["members"]] == [1.0, 3.0]


def test_ensemble_threshold_decides(models):
    a, b = models
    det = EnsembleClassifier(_members(a, b), threshold=0.5, device="cpu").detect_batch(
        [MediaInput(sha256="0" * 64, kind="image", data=_png(0))])[0]
    assert det.outcome == "real" and "0.38 < 0.50" in det.reasons[0]
    # Frames (videos) go through score_images: the same weighted mean.
    scores = EnsembleClassifier(_members(a, b, 3.0, 1.0), device="cpu").score_images(
        [Image.open(io.BytesIO(_png(1)))])
    assert scores == pytest.approx([(3 * 0.75 + 0.25) / 4])


def test_identity_changes_with_weights(models):
    a, b = models
    one = EnsembleClassifier(_members(a, b, 1.0, 3.0), device="cpu")
    other = EnsembleClassifier(_members(a, b, 1.0, 2.0), device="cpu")
    assert one.weights_digest != other.weights_digest
    assert one.model_id != other.model_id and "*3" in one.model_id


def test_unreadable_items_are_errors_with_member_reasons(models):
    a, b = models
    ens = EnsembleClassifier(_members(a, b), device="cpu")
    dets = ens.detect_batch([
        MediaInput(sha256="1" * 64, kind="image", data=b"not an image"),
        MediaInput(sha256="2" * 64, kind="image", data=_png(2)),
        MediaInput(sha256="3" * 64, kind="video", data=b"..."),
    ])
    assert [d.outcome for d in dets] == ["error", "real", "error"]  # 0.375 < the default 0.5
    assert dets[0].reasons and dets[0].score is None and dets[0].detector == "hf-ensemble"
    assert "video" in dets[2].reasons[0]


def test_bad_ensembles_are_refused(models):
    a, b = models
    with pytest.raises(ValueError, match="at least two"):
        EnsembleClassifier([{"model": str(a)}], device="cpu")
    with pytest.raises(ValueError, match="weight must be positive"):
        EnsembleClassifier(_members(a, b, 0.0, 1.0), device="cpu")
    with pytest.raises(ValueError, match="needs 'model'"):
        EnsembleClassifier([{"weight": 1.0}, {"model": str(b)}], device="cpu")
    with pytest.raises(ValueError, match="unknown ensemble member setting"):
        EnsembleClassifier([{"model": str(a), "wieght": 2}, {"model": str(b)}], device="cpu")
    from detectors.classifier import ModelLoadError
    with pytest.raises(ModelLoadError, match="no label 'fake'"):
        EnsembleClassifier([{"model": str(a)}, {"model": str(b)}], device="cpu")  # B has no 'fake'


def test_registered_and_built_from_a_campaign_spec(models):
    from detectors import registry
    from detectors.fusion import fuse
    from orchestrator.spec import parse_spec

    a, b = models
    assert registry.get("hf-ensemble") is EnsembleClassifier
    spec = parse_spec({
        "name": "t", "keywords": ["x"],
        "sources": [{"name": "s", "type": "demo_api", "params": {"base_url": "embedded"}}],
        "detectors": {"classifiers": [{"model": str(a), "weight": 1},
                                      {"model": str(b), "fake_label": "synthetic", "weight": 3}],
                      "ensemble": {"threshold": 0.35, "review_threshold": 0.2}},
    })
    d = spec.detectors
    ens = registry.create("hf-ensemble", members=[m.model_dump() for m in d.classifiers],
                          threshold=d.ensemble_settings().threshold, device="cpu")
    det = ens.detect_batch([MediaInput(sha256="4" * 64, kind="image", data=_png(4))])[0]
    assert det.outcome == "fake" and det.threshold == 0.35
    assert det.details["members"][1]["threshold"] == 0.5  # B has no calibration and none configured
    # Neither member is calibrated, so the ensemble's score only asks for review.
    assert det.details["calibrated"] is False and det.details["domain"]["inside"] is None
    assert fuse([det], d.ensemble_settings().review_threshold).band == "needs_review"


def test_a_campaign_spec_with_classifiers_runs_the_ensemble_in_the_pipeline(models):
    # The path a campaign takes: spec -> CampaignRun._detector_kwargs -> DetectionPipeline.
    from detectors.pipeline import DetectionPipeline
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec

    a, b = models
    spec = parse_spec({
        "name": "t", "keywords": ["x"],
        "sources": [{"name": "s", "type": "demo_api", "params": {"base_url": "embedded"}}],
        "detectors": {"classifiers": [{"model": str(a), "weight": 1},
                                      {"model": str(b), "fake_label": "synthetic", "weight": 3}],
                      "ensemble": {"threshold": 0.35, "review_threshold": 0.2}, "c2pa": False, "watermark": False},
    })
    kwargs = CampaignRun._detector_kwargs(type("Run", (), {"spec": spec, "_c2pa_trust": lambda self: None})())
    pipeline = DetectionPipeline(**kwargs, device="cpu")
    assert isinstance(pipeline.classifier, EnsembleClassifier) and pipeline.threshold == 0.35
    (analysis,) = pipeline.analyse([MediaInput(sha256="5" * 64, kind="image", data=_png(5))])
    ensemble = next(d for d in analysis.detections if d.detector == "hf-ensemble")
    assert ensemble.score == pytest.approx(0.375) and len(ensemble.details["members"]) == 2
    assert ensemble.outcome == "fake" and analysis.verdict.band == "needs_review"  # uncalibrated members
