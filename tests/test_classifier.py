"""HFImageClassifier against tiny real ViT checkpoints written to tmp_path."""
from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectors.base import MediaInput
from detectors.classifier import HFImageClassifier, ModelLoadError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def make_tiny_vit(
    folder: Path,
    *,
    labels: tuple[str, ...] = ("real", "fake"),
    seed: int = 0,
    fixed_logits: tuple[float, ...] | None = None,
    processor: object | None = None,
) -> Path:
    """A 2-layer ViT on 32x32 inputs, saved like any hub checkpoint.

    `fixed_logits` zeroes the head's weights and sets its bias, so every image gets exactly
    those logits: a model whose scores a test can know in advance.
    """
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = ViTForImageClassification(config)
    if fixed_logits is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(fixed_logits))
    model.save_pretrained(folder)
    (processor or ViTImageProcessor(size={"height": 32, "width": 32})).save_pretrained(folder)
    return folder


# What every detection of a model without `detectors eval` says about its domain check.
NO_DOMAIN = "domain check: none (no domain check fitted for this model (run 'deepwatch detectors eval'))"


def png(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def items_of(blobs: list[bytes]) -> list[MediaInput]:
    return [MediaInput(hashlib.sha256(b).hexdigest(), "image", b) for b in blobs]


def pipeline_scores(folder: Path, blobs: list[bytes], label: str = "fake") -> list[float]:
    from transformers import pipeline

    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    out = []
    for blob in blobs:
        result = pipe(Image.open(io.BytesIO(blob)), top_k=None)
        out.append(next(r["score"] for r in result if r["label"] == label))
    return out


SIZES = [(40, 30), (300, 200), (32, 32), (17, 90), (64, 64)]


def test_batch_of_mixed_sizes_matches_transformers_pipeline(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit")
    blobs = [png(i, size) for i, size in enumerate(SIZES)]
    clf = HFImageClassifier(str(folder), batch_size=2)  # several model batches
    results = clf.detect_batch(items_of(blobs))

    assert all(r.outcome in ("fake", "real") for r in results)
    ours = np.array([r.score for r in results])
    np.testing.assert_allclose(ours, pipeline_scores(folder, blobs), rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        clf.score_images([Image.open(io.BytesIO(b)) for b in blobs]), ours, rtol=0, atol=1e-6
    )
    first = results[0]
    assert first.detector == "hf-classifier" and first.model_id == str(folder)
    assert first.model_revision == "local" and first.threshold == 0.5
    assert first.reasons == [
        f"classifier {folder} scored {first.score:.2f} {'>=' if first.score >= 0.5 else '<'} 0.50",
        NO_DOMAIN,
    ]


def test_corrupt_item_is_an_error_and_the_others_still_score(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit")
    good = [png(1, (50, 40)), png(2, (80, 80))]
    truncated = png(3, (120, 90))[:200]
    blobs = [good[0], truncated, b"<html>not found</html>", good[1]]
    items = items_of(blobs) + [MediaInput("v" * 64, "video", b"\x00")]
    results = HFImageClassifier(str(folder)).detect_batch(items)

    assert [r.outcome for r in results][1:3] == ["error", "error"]
    assert results[1].reasons == ["corrupt image: truncated"]
    assert results[2].reasons == ["not an image: sniffed text/html"]
    assert results[4].outcome == "error" and "takes images" in results[4].reasons[0]
    assert results[1].score is None and results[1].model_id == str(folder)
    np.testing.assert_allclose(
        [results[0].score, results[3].score], pipeline_scores(folder, good), atol=1e-5
    )


def test_known_logits_give_known_score_and_outcome(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit", fixed_logits=(0.0, math.log(3.0)))  # P(fake) = 3/4
    clf = HFImageClassifier(str(folder), threshold=0.8)
    result = clf.detect_batch(items_of([png(0, (64, 48))]))[0]
    assert result.score == pytest.approx(0.75, abs=1e-6)
    assert result.outcome == "real"
    assert result.reasons == [f"classifier {folder} scored 0.75 < 0.80", NO_DOMAIN]
    assert result.details["domain"]["inside"] is None and result.details["calibrated"] is False
    assert HFImageClassifier(str(folder), threshold=0.7).detect_batch(items_of([png(0, (64, 48))]))[0].outcome == "fake"


def test_label_lookup_is_case_insensitive_and_single_logit_uses_sigmoid(tmp_path):
    folder = make_tiny_vit(tmp_path / "caps", labels=("Real", "FAKE"), fixed_logits=(math.log(3.0), 0.0))
    clf = HFImageClassifier(str(folder), fake_label="fake")
    assert clf.fake_label == "FAKE" and clf.fake_index == 1
    assert clf.detect_batch(items_of([png(0, (40, 40))]))[0].score == pytest.approx(0.25, abs=1e-6)

    single = make_tiny_vit(tmp_path / "single", labels=("synthetic",), fixed_logits=(math.log(3.0),))
    clf = HFImageClassifier(str(single), fake_label="synthetic")
    assert clf.sigmoid
    assert clf.detect_batch(items_of([png(0, (40, 40))]))[0].score == pytest.approx(0.75, abs=1e-6)


def test_weights_digest_is_the_sha256_of_the_weights_and_stable(tmp_path):
    a = make_tiny_vit(tmp_path / "a", seed=0)
    b = make_tiny_vit(tmp_path / "b", seed=1)
    digest = HFImageClassifier(str(a)).weights_digest
    assert digest == hashlib.sha256((a / "model.safetensors").read_bytes()).hexdigest()
    assert HFImageClassifier(str(a)).weights_digest == digest
    assert HFImageClassifier(str(b)).weights_digest != digest
    result = HFImageClassifier(str(a), revision="v1").detect_batch(items_of([png(0, (40, 40))]))[0]
    assert result.weights_digest == digest and result.model_revision == "v1"


def test_missing_model_names_the_path_or_id(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model.*does not exist"):
        HFImageClassifier(str(missing))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="deepwatch-tests/not-a-model.*HF_HUB_OFFLINE"):
        HFImageClassifier("deepwatch-tests/not-a-model")


def test_unknown_fake_label_lists_the_labels(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit", labels=("human", "ai"))
    with pytest.raises(ModelLoadError, match=r"no label 'fake'.*\['ai', 'human'\]"):
        HFImageClassifier(str(folder))
    assert HFImageClassifier(str(folder), fake_label="AI").fake_label == "ai"


def test_bad_settings_are_refused(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit")
    with pytest.raises(ValueError, match="threshold"):
        HFImageClassifier(str(folder), threshold=1.5)
    with pytest.raises(ValueError, match="dtype"):
        HFImageClassifier(str(folder), dtype="int8")


def test_resize_then_centre_crop_processor_uses_the_fast_path(tmp_path):
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    folder = make_tiny_vit(tmp_path / "clip", processor=processor)
    clf = HFImageClassifier(str(folder))
    assert clf.describe()["preprocessing"] == "built-in batched"
    blobs = [png(i, size) for i, size in enumerate(SIZES)]
    ours = [r.score for r in clf.detect_batch(items_of(blobs))]
    np.testing.assert_allclose(ours, pipeline_scores(folder, blobs), atol=1e-5)


def test_unusual_processor_falls_back_to_the_checkpoint_processor(tmp_path):
    from transformers import ConvNextImageProcessor

    # ConvNeXt resizes by crop_pct in its own way: the checkpoint's processor does it.
    folder = make_tiny_vit(tmp_path / "convnext", processor=ConvNextImageProcessor(size={"shortest_edge": 32}))
    clf = HFImageClassifier(str(folder))
    assert clf.describe()["preprocessing"] == "checkpoint processor"
    blobs = [png(i, size) for i, size in enumerate(SIZES)]
    ours = [r.score for r in clf.detect_batch(items_of(blobs))]
    np.testing.assert_allclose(ours, pipeline_scores(folder, blobs), atol=1e-5)


def test_large_jpeg_decodes_in_draft_mode_and_scores(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit")
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((1200, 1600, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    clf = HFImageClassifier(str(folder))
    decoded = clf._decode(items_of([buf.getvalue()])[0])
    assert decoded.size == (200, 150)  # 1/8 scale straight from the DCT data
    assert clf.detect_batch(items_of([buf.getvalue()]))[0].outcome in ("fake", "real")


def test_hub_id_loads_offline_from_the_cache_with_its_commit(tmp_path):
    """A hub id resolves through the Hugging Face cache; the snapshot's commit is recorded.

    Runs in a child process because the hub cache location is read at import time.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys

    source = make_tiny_vit(tmp_path / "src")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--deepwatch-tests--tiny-vit"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "import json; from detectors.classifier import HFImageClassifier;"
        "print(json.dumps(HFImageClassifier('deepwatch-tests/tiny-vit').describe()))"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[1], timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    described = json.loads(run.stdout.strip().splitlines()[-1])
    assert described["model_id"] == "deepwatch-tests/tiny-vit"
    assert described["model_revision"] == commit
    assert described["weights_digest"] == hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
