"""InvisibleWatermarkDetector on images watermarked here with the library's own encoder."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detectors.base import MediaInput
from detectors.watermark import InvisibleWatermarkDetector, allowed_bit_errors
from detectors.watermark_payloads import KNOWN_WATERMARKS, WatermarkPayload

imwatermark = pytest.importorskip("imwatermark")


def picture(seed: int = 0, size: int = 512) -> np.ndarray:
    """A smooth, muted RGB picture with mild noise.

    Muted on purpose: on strongly coloured pictures the library's own encode-decode round
    trip loses several bits even without any re-saving (its decoding is unreliable), and
    these tests are about this detector, not about that.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for _ in range(8):
        colour, (cx, cy, r) = rng.random(3), rng.random(3)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.1 * r))[..., None] * colour
    img = img / img.max()
    grey = img.mean(axis=2, keepdims=True)
    img = (grey + 0.3 * (img - grey)) * 180 + 30 + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, payload: WatermarkPayload) -> np.ndarray:
    encoder = imwatermark.WatermarkEncoder()
    if payload.payload_type == "bytes":
        encoder.set_watermark("bytes", bytes(np.packbits(np.array(payload.bits, dtype=np.uint8))))
    else:
        encoder.set_watermark("bits", list(payload.bits))
    return encoder.encode(array, "dwtDct")


def png(rgb: np.ndarray) -> MediaInput:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "PNG")
    return MediaInput("0" * 64, "image", buf.getvalue(), "image/png")


@pytest.fixture(scope="module")
def detector() -> InvisibleWatermarkDetector:
    return InvisibleWatermarkDetector()


@pytest.mark.parametrize("name", ["sdxl", "stable_diffusion_v1"])
def test_stability_style_watermark_is_detected(detector, name):
    # Stability's scripts flip RGB to BGR, encode, and flip back before saving.
    rgb = picture(1)
    marked = encode(np.ascontiguousarray(rgb[:, :, ::-1]), KNOWN_WATERMARKS[name])[:, :, ::-1]
    result = detector.detect_one(png(marked))
    assert result.outcome == "fake"
    assert result.details["matched"] == [name]
    attempt = next(a for a in result.details["attempts"] if a["payload"] == name)
    assert attempt["channel_order"] == "BGR" and attempt["bit_errors"] <= attempt["allowed_errors"]
    n = KNOWN_WATERMARKS[name].length_bits
    assert result.reasons == [f"invisible watermark of {name} decoded ({attempt['bit_errors']}/{n} bits differ, BGR order)"]


def test_diffusers_style_rgb_order_watermark_is_detected(detector):
    # diffusers' SDXL watermarker hands the RGB array to the encoder as if it were BGR.
    marked = encode(picture(2).copy(), KNOWN_WATERMARKS["sdxl"])
    result = detector.detect_one(png(marked))
    assert result.outcome == "fake" and result.details["matched"] == ["sdxl"]
    attempt = next(a for a in result.details["attempts"] if a["payload"] == "sdxl")
    assert attempt["channel_order"] == "RGB"  # the BGR pass did not find it; the RGB pass did


def test_unverified_payload_match_carries_the_caveat(detector):
    marked = encode(picture(3).copy(), KNOWN_WATERMARKS["flux2"])
    result = detector.detect_one(png(marked))
    assert result.outcome == "fake" and "quoted second-hand" in result.reasons[0]


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_plain_image_is_inconclusive_never_real(detector, seed):
    result = detector.detect_one(png(picture(seed)))
    assert result.outcome == "inconclusive"
    assert result.reasons[0].startswith("no known invisible watermark decoded (closest: ")
    assert "does not show there is none" in result.reasons[0]
    assert len(result.details["attempts"]) == len(KNOWN_WATERMARKS)


def test_small_images_videos_and_corrupt_bytes(detector):
    small = detector.detect_one(png(picture(0, size=200)))
    assert small.outcome == "inconclusive" and "smaller than the 256x256" in small.reasons[0]
    video = detector.detect_one(MediaInput("0" * 64, "video", b"\x00\x00\x00\x18ftypmp42", "video/mp4"))
    assert video.outcome == "inconclusive" and video.reasons == ["invisible watermark check not applicable to video"]
    corrupt = detector.detect_one(MediaInput("0" * 64, "image", b"<html></html>", "image/png"))
    assert corrupt.outcome == "error" and corrupt.reasons == ["not an image: sniffed text/html"]
    batch = detector.detect_batch([png(picture(0, size=200)), MediaInput("0" * 64, "image", b"", "")])
    assert [d.outcome for d in batch] == ["inconclusive", "error"]


def test_bit_error_allowance_keeps_chance_matches_rare():
    assert allowed_bit_errors(48, 4, 1e-9) == 4
    assert allowed_bit_errors(136, 4, 1e-9) == 4
    assert allowed_bit_errors(32, 4, 1e-9) == 0  # SDV2's 32 bits: exact match only
    assert allowed_bit_errors(16, 4, 1e-9) == -1
    with pytest.raises(ValueError, match="too short"):
        InvisibleWatermarkDetector([WatermarkPayload("tiny", "bits", (1, 0) * 8)])


@pytest.mark.parametrize("shape", [(512, 512), (387, 701), (256, 259), (720, 1280)])
def test_vectorised_decode_gives_the_library_decoders_bits(shape):
    """block_scores + bits_from_scores must equal imwatermark's own decoder, bit for bit, for
    every payload length and both channel orders, on marked and unmarked pictures of odd sizes."""
    from detectors.watermark import bits_from_scores, block_scores

    rows, cols = shape
    rng = np.random.default_rng(rows * cols)
    base = np.asarray(Image.fromarray(picture(seed=rows, size=max(shape))).crop((0, 0, cols, rows)))
    noisy = np.clip(base.astype(int) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    marked = encode(np.ascontiguousarray(base), KNOWN_WATERMARKS["sdxl"])
    for image in (base, noisy, marked, np.ascontiguousarray(marked[:, :, ::-1])):
        image = np.ascontiguousarray(image)
        scores = block_scores(image)
        for length in (32, 48, 136):
            expected = np.asarray(imwatermark.WatermarkDecoder("bits", length).decode(image, "dwtDct"), dtype=bool)
            assert np.array_equal(bits_from_scores(scores, length), expected), (shape, length)
