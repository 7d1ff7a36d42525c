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


def test_small_model_trains_fast_saves_and_loads(small_model, tmp_path):
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from demo_platform import imagery

    out, metrics = small_model
    assert metrics["_wall"] < 60
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


def test_fine_tunes_a_base_checkpoint(small_model, small_set, tmp_path):
    from transformers import AutoModelForImageClassification

    base, _ = small_model
    metrics = train_classifier(small_set, tmp_path / "tuned", base_model=str(base), epochs=1, seed=1)
    assert metrics["base_model"] == str(base) and metrics["n_train"] == 170
    tuned = AutoModelForImageClassification.from_pretrained(tmp_path / "tuned")
    assert tuned.config.id2label == {0: "real", 1: "fake"}
    with pytest.raises(FileNotFoundError, match="cannot load base model"):
        train_classifier(small_set, tmp_path / "x", base_model=str(tmp_path / "missing"), epochs=1)


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


def test_ensure_demo_model_reuses_an_existing_model(small_model, tmp_path):
    import shutil

    existing = tmp_path / "demo"
    shutil.copytree(small_model[0], existing)
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
    """The full recipe: <= 3 min on a 2-core CPU (timing reported, asserted loosely because
    the machine may be shared), recall >= 0.97 on manipulated images with <= 1% of real
    images flagged, and video frames separated."""
    from demo_platform.evaluate import evaluate_on_world
    from demo_platform.world import build_world

    started = time.monotonic()
    model_dir = ensure_demo_model(tmp_path / "demo-model")
    seconds = time.monotonic() - started
    print(f"ensure_demo_model took {seconds:.0f} s")
    assert seconds < 360
    result = evaluate_on_world(model_dir, build_world(seed=7))
    summary = {k: v for k, v in result.items() if k not in ("image_scores", "videos")}
    print(json.dumps(summary, indent=1))
    assert result["manipulated_recall"] >= 0.97
    assert result["real_false_positive_rate"] <= 0.01
    assert result["video_manipulated_min_mean"] >= 0.5
    assert result["video_real_max_mean"] < 0.5
