"""Training the demo detector: the generated training set, train_classifier and ensure_demo_model."""
from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo_platform.training_data import write_training_set
from detectors.train import ensure_demo_model, train_classifier


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.jpg"))}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return write_training_set(tmp_path_factory.mktemp("data"), seed=2024, n_per_class=100)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    return _bright_is_fake(tmp_path_factory.mktemp("tiny") / "data", 12, seed=0)


@pytest.fixture(scope="module")
def tiny_model(tiny_set, tmp_path_factory) -> Path:
    """A small ResNet from the config, trained for seconds: a checkpoint to fine-tune or copy."""
    out = tmp_path_factory.mktemp("tiny-model")
    train_classifier(tiny_set, out, image_size=32, epochs=2, batch_size=8, seed=0)
    return out


@pytest.fixture(scope="module")
def small_model(small_set, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("model")
    started = time.monotonic()
    metrics = train_classifier(small_set, out, image_size=96, epochs=8, batch_size=32, seed=0)
    metrics["_wall"] = time.monotonic() - started
    return out, metrics


def test_training_set_layout_and_determinism(small_set, tmp_path):
    reals = sorted((small_set / "real").glob("*.jpg"))
    fakes = sorted((small_set / "fake").glob("*.jpg"))
    assert len(reals) == len(fakes) == 100
    for p in reals[:5] + fakes[:5]:
        with Image.open(p) as im:
            assert im.format == "JPEG" and min(im.size) >= 64
    again = write_training_set(tmp_path / "again", seed=2024, n_per_class=10, workers=1)
    assert _digest_tree(again) == {k: v for k, v in _digest_tree(small_set).items()
                                   if int(k.split("/")[-1][1:6]) < 10}
    with pytest.raises(ValueError):
        write_training_set(tmp_path / "none", n_per_class=0)


@pytest.mark.slow  # ~30 s on a quiet 2-core machine, minutes on a busy one
def test_small_model_trains_fast_saves_and_loads(small_model, tmp_path):
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from demo_platform import imagery

    out, metrics = small_model
    assert metrics["_wall"] < 120  # loose: the machine may be shared (speed belongs in bench/)
    assert (out / "preprocessor_config.json").is_file() and (out / "config.json").is_file()
    saved = json.loads((out / "training_metrics.json").read_text())
    assert saved["n_train"] == metrics["n_train"] == 170 and saved["n_val"] == 30
    assert 0.5 < saved["val_accuracy"] <= 1.0 and saved["val_auc"] > 0.5
    assert saved["epochs_completed"] == 8 and saved["seconds"] > 0

    model = AutoModelForImageClassification.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    assert model.config.id2label == {0: "real", 1: "fake"}
    assert model.config.label2id == {"real": 0, "fake": 1}

    # Fresh images from another seed: the model must beat chance on them, not just on its data.
    images, labels = [], []
    for i in range(40):
        rng = np.random.default_rng([99, i])
        scene = imagery.render_photo(rng, 360, 300, face=True)
        pixels = imagery.swap_face(rng, scene.pixels, scene.face_box) if i % 2 else scene.pixels
        with Image.open(io.BytesIO(imagery.jpeg_bytes(pixels, 90))) as im:
            images.append(im.convert("RGB"))
        labels.append(i % 2)
    with torch.inference_mode():
        probs = torch.softmax(model(**processor(images=images, return_tensors="pt")).logits, -1)[:, 1].numpy()
    accuracy = float(((probs >= 0.5).astype(int) == np.array(labels)).mean())
    assert accuracy > 0.6, accuracy


def test_fine_tunes_a_base_checkpoint(tiny_model, tiny_set, tmp_path):
    from transformers import AutoModelForImageClassification

    metrics = train_classifier(tiny_set, tmp_path / "tuned", base_model=str(tiny_model), epochs=1, seed=1)
    assert metrics["base_model"] == str(tiny_model) and metrics["n_train"] == 20 and metrics["n_val"] == 4
    assert metrics["config"] is None and metrics["fake_label"] == "fake"
    tuned = AutoModelForImageClassification.from_pretrained(tmp_path / "tuned")
    assert tuned.config.id2label == {0: "real", 1: "fake"}
    with pytest.raises(FileNotFoundError, match="cannot load base model"):
        train_classifier(tiny_set, tmp_path / "x", base_model=str(tmp_path / "missing"), epochs=1)


def test_max_seconds_stops_early_but_still_saves(small_set, tmp_path):
    metrics = train_classifier(small_set, tmp_path / "m", image_size=48, epochs=50, max_seconds=2.0)
    assert metrics["stopped_early"] and metrics["epochs_completed"] < 50
    assert (tmp_path / "m" / "training_metrics.json").is_file()


def test_bad_training_data_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_classifier(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "data" / "real").mkdir(parents=True)
    with pytest.raises(ValueError, match="'fake/'"):
        train_classifier(tmp_path / "data", tmp_path / "out")
    (tmp_path / "data" / "fake").mkdir()
    with pytest.raises(ValueError, match="no images"):
        train_classifier(tmp_path / "data", tmp_path / "out")


def test_ensure_demo_model_reuses_an_existing_model(tiny_model, tmp_path):
    import shutil

    existing = tmp_path / "demo"
    shutil.copytree(tiny_model, existing)
    before = {p.name: p.stat().st_mtime_ns for p in existing.iterdir()}
    started = time.monotonic()
    assert ensure_demo_model(existing) == existing
    assert time.monotonic() - started < 2
    assert {p.name: p.stat().st_mtime_ns for p in existing.iterdir()} == before
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError):
        ensure_demo_model(junk)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_model_meets_the_target_on_the_demo_world(tmp_path):
    """The full recipe: recall >= 0.97 on manipulated images with <= 1% of real images flagged,
    and video frames separated. Its time (about 3 min on a quiet 2-core CPU) is printed, not
    asserted: a shared machine makes any bound either loose or flaky; the pytest timeout
    bounds it."""
    from demo_platform.evaluate import evaluate_on_world
    from demo_platform.world import build_world

    started = time.monotonic()
    model_dir = ensure_demo_model(tmp_path / "demo-model")
    seconds = time.monotonic() - started
    print(f"ensure_demo_model took {seconds:.0f} s")
    result = evaluate_on_world(model_dir, build_world(seed=7))
    summary = {k: v for k, v in result.items() if k not in ("image_scores", "videos")}
    print(json.dumps(summary, indent=1))
    assert result["manipulated_recall"] >= 0.97
    assert result["real_false_positive_rate"] <= 0.01
    assert result["video_manipulated_min_mean"] >= 0.5
    assert result["video_real_max_mean"] < 0.5


# ---------------------------------------------------------------- transcode augmentation, configs, labels

def _bright_is_fake(root: Path, n: int, seed: int) -> Path:
    """Dark noisy squares are real, bright ones fake: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for name, base in (("real", 70), ("fake", 150)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            level = base + rng.normal(0, 20)
            pixels = np.clip(level + rng.normal(0, 30, (48, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def test_transcode_augment_is_reproducible_and_looks_like_a_repost():
    from detectors.train import transcode_augment

    rng_img = np.random.default_rng(0)
    img = Image.fromarray((rng_img.random((120, 160, 3)) * 255).astype(np.uint8))
    same = [np.asarray(transcode_augment(img, np.random.default_rng([1, 2, 3]))) for _ in range(2)]
    assert np.array_equal(*same)  # per-image randomness comes from the seed alone
    outs = [transcode_augment(img, np.random.default_rng([7, i])) for i in range(60)]
    assert all(o.mode == "RGB" and min(o.size) >= 8 for o in outs)
    sizes = {o.size for o in outs}
    assert len(sizes) > 5  # crops, caption bands and letterboxing change the frame
    assert any(o.size[1] > 120 and o.size[0] == 160 for o in outs)  # a caption band added height
    assert any(o.size[0] == o.size[1] == 160 for o in outs)  # letterboxed to a square
    changed = [o for o in outs if o.size == img.size]
    assert changed and all(not np.array_equal(np.asarray(o), np.asarray(img)) for o in changed)


def test_vit_tiny_config_records_how_it_was_trained(tmp_path):
    from detectors.classifier import HFImageClassifier

    data = _bright_is_fake(tmp_path / "data", 12, seed=1)
    metrics = train_classifier(data, tmp_path / "vit", config="vit-tiny", image_size=32, epochs=2,
                               batch_size=8, seed=4, workers=1)
    assert metrics["architecture"] == "ViTForImageClassification" and metrics["config"] == "vit-tiny"
    assert metrics["augmentation"] == "transcode" and metrics["fake_label"] == "fake"
    assert metrics["data_dir"] == str(data.resolve()) and metrics["n_train"] + metrics["n_val"] == 24
    clf = HFImageClassifier(str(tmp_path / "vit"), device="cpu")
    assert clf.fake_label == "fake" and clf.model.config.id2label == {0: "real", 1: "fake"}
    # The same seed gives the same weights: transcodes are seeded per image, not per thread.
    again = train_classifier(data, tmp_path / "vit2", config="vit-tiny", image_size=32, epochs=2,
                             batch_size=8, seed=4, workers=2)
    assert again["history"] == metrics["history"]


def test_fine_tune_can_keep_the_base_labels(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    from detectors.classifier import HFImageClassifier

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    labels = ("synthetic", "authentic")  # fake first: the targets must follow the base's order
    base = tmp_path / "base"
    ViTForImageClassification(ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=2, id2label=dict(enumerate(labels)),
        label2id={x: i for i, x in enumerate(labels)})).save_pretrained(base)
    from detectors.train import _make_processor
    _make_processor(32).save_pretrained(base)

    data = _bright_is_fake(tmp_path / "data", 20, seed=2)
    metrics = train_classifier(data, tmp_path / "tuned", base_model=str(base), fake_label="Synthetic",
                               epochs=6, batch_size=8, learning_rate=3e-3, augment="none", val_fraction=0.25)
    assert metrics["fake_label"] == "synthetic" and metrics["id2label"] == {0: "synthetic", 1: "authentic"}
    assert metrics["val_auc"] > 0.8  # learnt the right way round: bright scores high on "synthetic"
    clf = HFImageClassifier(str(tmp_path / "tuned"), fake_label="synthetic", device="cpu")
    bright = Image.fromarray(np.full((40, 40, 3), 160, np.uint8))
    dark = Image.fromarray(np.full((40, 40, 3), 60, np.uint8))
    fake_score, real_score = clf.score_images([bright, dark])
    assert fake_score > real_score

    with pytest.raises(ValueError, match="no label 'fake'.*authentic"):
        train_classifier(data, tmp_path / "x", base_model=str(base), fake_label="fake", epochs=1)
    three = tmp_path / "three"
    ViTForImageClassification(ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=3, id2label={0: "a", 1: "b", 2: "fake"},
        label2id={"a": 0, "b": 1, "fake": 2})).save_pretrained(three)
    _make_processor(32).save_pretrained(three)
    with pytest.raises(ValueError, match="has 3 labels"):
        train_classifier(data, tmp_path / "x", base_model=str(three), fake_label="fake", epochs=1)


def test_conflicting_training_options_are_named(tmp_path):
    data = _bright_is_fake(tmp_path / "data", 2, seed=3)
    with pytest.raises(ValueError, match="not both"):
        train_classifier(data, tmp_path / "o", base_model="x", config="small")
    with pytest.raises(ValueError, match="unknown model config 'huge'"):
        train_classifier(data, tmp_path / "o", config="huge")
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        train_classifier(data, tmp_path / "o", augment="blur")
    with pytest.raises(ValueError, match="keeps a base checkpoint's labels"):
        train_classifier(data, tmp_path / "o", fake_label="fake")
