"""detectors.decode: the CPU and the device decoders, and the classifier's calibrated threshold.

The device decoder's torch steps run on the CPU here (Pillow stands in for nvJPEG); the tests
marked `cuda` run the nvJPEG path and run only where a GPU is (bench/gpu_check.sh runs them).
"""
from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from detectors.base import MediaInput  # noqa: E402
from detectors.classifier import HFImageClassifier, ModelLoadError  # noqa: E402
from detectors.decode import CpuDecoder, DeviceDecoder, make_decoder, plain_preprocess  # noqa: E402
from tests.test_classifier import make_tiny_vit  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


def photo(seed: int, size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    """A smooth picture with edges (resizers differ most on noise, which photos do not have)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, (x + y) / (w + h)], axis=-1) * 200
    for _ in range(4):  # a few flat rectangles
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        base[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def vit_prep(size: int = 32, **kwargs):
    from transformers import ViTImageProcessor

    return plain_preprocess(ViTImageProcessor(size={"height": size, "width": size}, **kwargs))


BLOBS = [photo(0, (640, 480)), photo(1, (300, 200), "PNG"), photo(2, (640, 480)), photo(3, (90, 170))]


def test_device_decoder_matches_the_cpu_decoder():
    prep = vit_prep(64)
    cpu = CpuDecoder(prep).decode(BLOBS)
    dev = DeviceDecoder(prep, "cpu").decode(BLOBS)
    assert cpu.rows == dev.rows == [0, 1, 2, 3] and not cpu.errors and not dev.errors
    assert dev.pixels.shape == cpu.pixels.shape == (4, 3, 64, 64)
    diff = (dev.pixels - cpu.pixels).abs()
    # Both resample antialiased bilinear from the same draft-decoded pixels; they may differ by
    # a rounding step (1/255 of the range = 0.008 after the 0.5 std) on a few edge pixels.
    assert diff.mean().item() < 0.01, diff.mean().item()
    assert diff.max().item() < 0.1, diff.max().item()


def test_shortest_edge_and_centre_crop_on_the_device():
    from transformers import CLIPImageProcessor

    prep = plain_preprocess(CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}))
    assert prep is not None and prep.resample == 3  # bicubic
    cpu = CpuDecoder(prep).decode(BLOBS)
    dev = DeviceDecoder(prep, "cpu").decode(BLOBS)
    assert dev.pixels.shape == cpu.pixels.shape == (4, 3, 32, 32)
    assert (dev.pixels - cpu.pixels).abs().mean().item() < 0.02


@pytest.mark.parametrize("decoder_cls", [CpuDecoder, DeviceDecoder])
def test_bad_items_get_reasons_at_their_positions(decoder_cls):
    truncated = photo(5, (200, 150))[:300]
    blobs = [BLOBS[0], truncated, b"<html>gone</html>", BLOBS[1]]
    batch = decoder_cls(vit_prep(), "cpu").decode(blobs)
    assert batch.rows == [0, 3]
    assert batch.errors == {1: "corrupt image: truncated", 2: "not an image: sniffed text/html"}
    assert batch.pixels.shape == (2, 3, 32, 32)
    empty = decoder_cls(vit_prep(), "cpu").decode([truncated])
    assert empty.pixels is None and empty.rows == [] and empty.errors == {0: "corrupt image: truncated"}


def test_make_decoder_choices():
    prep = vit_prep()
    assert isinstance(make_decoder(prep, "cpu", "auto"), CpuDecoder)  # no GPU: the CPU path
    assert isinstance(make_decoder(prep, "cpu", "gpu"), DeviceDecoder)
    with pytest.raises(ValueError, match="decode must be one of"):
        make_decoder(prep, "cpu", "fast")
    lanczos = vit_prep(resample=1)
    with pytest.raises(ValueError, match="resample filter 1"):
        DeviceDecoder(lanczos, "cpu")
    assert isinstance(make_decoder(lanczos, "cpu", "auto"), CpuDecoder)


def items_of(blobs: list[bytes]) -> list[MediaInput]:
    return [MediaInput(hashlib.sha256(b).hexdigest(), "image", b) for b in blobs]


def test_classifier_scores_the_same_with_either_decoder(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit")
    blobs = BLOBS + [b"not an image at all"]
    cpu = HFImageClassifier(str(folder), decode="cpu", batch_size=2).detect_batch(items_of(blobs))
    dev_clf = HFImageClassifier(str(folder), decode="gpu", batch_size=3)
    dev = dev_clf.detect_batch(items_of(blobs))
    assert dev_clf.describe()["decode"] == "gpu"
    assert [r.outcome for r in dev][4] == "error" == cpu[4].outcome
    np.testing.assert_allclose([r.score for r in dev[:4]], [r.score for r in cpu[:4]], atol=5e-3)
    with pytest.raises(ValueError, match="decode must be one of"):
        HFImageClassifier(str(folder), decode="nvjpeg")


# ---------------------------------------------------------------------------- calibration


def write_calibration(folder, **overrides) -> None:
    record = {"threshold": 0.7, "target_fpr": 0.01, "fpr_at_threshold": 0.008, "tpr_at_threshold": 0.91,
              "eval_set": "/data/eval sha256:abc", "created": "2026-11-28T12:00:00+00:00"}
    record.update(overrides)
    (folder / "calibration.json").write_text(json.dumps(record))


def test_without_calibration_the_threshold_is_configured(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit", fixed_logits=(0.0, math.log(3.0)))  # P(fake) = 0.75
    result = HFImageClassifier(str(folder)).detect_batch(items_of([BLOBS[0]]))[0]
    assert result.threshold == 0.5 and result.outcome == "fake"
    assert {k: result.details[k] for k in ("fake_label", "threshold", "threshold_source", "calibrated_fpr")} == {
        "fake_label": "fake", "threshold": 0.5, "threshold_source": "configured", "calibrated_fpr": None}
    # Uncalibrated and with no domain check: the detection says so (fusion keeps it at needs_review).
    assert result.details["calibrated"] is False and result.details["domain"]["inside"] is None
    assert result.reasons[0] == f"classifier {folder} scored 0.75 >= 0.50"
    assert result.reasons[1].startswith("domain check: none")


def test_calibration_file_sets_the_threshold_unless_one_is_passed(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit", fixed_logits=(0.0, math.log(3.0)))
    write_calibration(folder, threshold=0.8)
    clf = HFImageClassifier(str(folder))
    scored, broken = clf.detect_batch(items_of([BLOBS[0], b"\xff\xd8\xff garbage"]))
    assert scored.threshold == 0.8 and scored.outcome == "real"  # 0.75 < 0.8
    assert scored.details["threshold_source"] == "calibration" and scored.details["calibrated_fpr"] == 0.01
    assert scored.reasons[0] == f"classifier {folder} scored 0.75 < 0.80 (threshold calibrated for a 1.0% false-positive rate)"
    assert scored.reasons[1].startswith("domain check: none")
    assert broken.outcome == "error" and broken.details["calibrated_fpr"] == 0.01
    assert clf.describe()["threshold_source"] == "calibration"

    explicit = HFImageClassifier(str(folder), threshold=0.6).detect_batch(items_of([BLOBS[0]]))[0]
    assert explicit.threshold == 0.6 and explicit.outcome == "fake"
    assert explicit.details["threshold_source"] == "configured" and explicit.details["calibrated_fpr"] is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"threshold": 1.5}, r"'threshold' must be in \[0, 1\]"), ({"target_fpr": "1%"}, "'target_fpr' must be a number"),
     ({"created": None}, "'created' must be a string")],
)
def test_a_malformed_calibration_file_is_refused_by_name(tmp_path, overrides, message):
    folder = make_tiny_vit(tmp_path / "vit")
    write_calibration(folder, **overrides)
    with pytest.raises(ModelLoadError, match=f"calibration.json: {message}"):
        HFImageClassifier(str(folder))
    (folder / "calibration.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="calibration.json: not readable JSON"):
        HFImageClassifier(str(folder))


# ---------------------------------------------------------------------------- on a GPU


@cuda
def test_nvjpeg_decode_matches_pillow_and_refuses_what_it_should():
    prep = vit_prep(64)
    dev = DeviceDecoder(prep, "cuda")
    assert dev.nvjpeg, "torchvision cannot decode JPEGs on this GPU"
    truncated = photo(5, (200, 150))[:300]
    blobs = BLOBS + [truncated]
    batch = dev.decode(blobs)
    cpu = CpuDecoder(prep).decode(blobs)
    assert batch.rows == [0, 1, 2, 3] and batch.errors == {4: "corrupt image: truncated"}
    assert batch.pixels.device.type == "cuda"
    # nvJPEG decodes at full size and its IDCT differs from libjpeg's draft mode a little.
    assert (batch.pixels.cpu() - cpu.pixels).abs().mean().item() < 0.03


@cuda
def test_classifier_on_the_gpu_agrees_with_the_cpu(tmp_path):
    folder = make_tiny_vit(tmp_path / "vit")
    blobs = BLOBS * 5
    cpu = HFImageClassifier(str(folder), device="cpu").detect_batch(items_of(blobs))
    gpu_clf = HFImageClassifier(str(folder), device="cuda", batch_size=8)  # bf16 autocast, nvJPEG
    gpu = gpu_clf.detect_batch(items_of(blobs))
    assert gpu_clf.describe()["decode"] == "gpu" and gpu_clf.describe()["dtype"] in ("bfloat16", "float16")
    np.testing.assert_allclose([r.score for r in gpu], [r.score for r in cpu], atol=0.03)
