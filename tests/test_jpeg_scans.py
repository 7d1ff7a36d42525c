"""detectors.jpeg_scans: a progressive JPEG cut to its DC scans decodes at 1/8 scale to exactly
the pixels of the whole file, on files written here (several layouts) and by other encoders
(the third-party fixtures); anything else (baseline, small, truncated, not a JPEG) is left alone."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detectors.hashing import FAST_PHASH_DRAFT_SIZE, MediaDecodeError, _decode, phash_fast, phash_from_gray
from detectors.jpeg_scans import dc_scans_only

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def photo(width: int, height: int, seed: int = 3, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([(xx * (3 + c) + yy * (5 - c)) % 256 for c in range(3)], axis=2).astype(float)
    img += rng.normal(0, 18, img.shape)
    for _ in range(12):  # hard edges: where smoothing would show
        x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 120)
        img[max(0, y - r):y + r, max(0, x - r):x + r] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert(mode)


def encode(img: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=options.pop("quality", 85), **options)
    return out.getvalue()


def small_luma(data: bytes) -> np.ndarray:
    return np.asarray(_decode(data, FAST_PHASH_DRAFT_SIZE, gray=True)[0])


LAYOUTS = {
    "4:2:0 720p": (photo(1280, 720), {}),
    "4:4:4 odd size": (photo(777, 513), {"subsampling": 0}),
    "4:2:2 portrait": (photo(600, 1001), {"subsampling": 1}),
    "greyscale": (photo(900, 640, mode="L"), {}),
    "CMYK": (photo(640, 640, mode="CMYK"), {}),
    "restart markers": (photo(1024, 768), {"restart_marker_blocks": 7}),
    "low quality": (photo(800, 600), {"quality": 30}),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_dc_scans_decode_to_the_whole_files_pixels(layout):
    img, options = LAYOUTS[layout]
    data = encode(img, progressive=True, **options)
    dc_only = dc_scans_only(data)
    assert dc_only is not None and len(dc_only) < len(data) / 3
    assert np.array_equal(small_luma(dc_only), small_luma(data))
    assert phash_fast(data) == phash_from_gray(_decode(data, FAST_PHASH_DRAFT_SIZE, gray=True)[0])


def test_exif_orientation_survives_the_cut():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    data = encode(photo(1280, 720), progressive=True, exif=exif.tobytes())
    dc_only = dc_scans_only(data)
    assert small_luma(dc_only).shape == small_luma(data).shape == (160, 90)
    assert np.array_equal(small_luma(dc_only), small_luma(data))


def test_progressive_files_from_other_encoders():
    files = [FIXTURES / "c2pa/signed_valid/cli_verify.jpeg",
             *sorted((FIXTURES / "pdq/images/reg-test-input/dih").glob("bridge-[2-8]-*.jpg"))]
    if not all(f.exists() for f in files):
        pytest.skip("the shared fixtures are not beside this checkout")
    for path in files:
        data = path.read_bytes()
        dc_only = dc_scans_only(data)
        assert dc_only is not None, path.name
        assert np.array_equal(small_luma(dc_only), small_luma(data)), path.name


def test_everything_else_is_left_to_the_ordinary_decode():
    big = photo(1280, 720)
    progressive = encode(big, progressive=True)
    assert dc_scans_only(encode(big)) is None  # baseline
    assert dc_scans_only(encode(photo(640, 480), progressive=True)) is None  # 1/8 scale would be under 64 px
    assert dc_scans_only(b"\x89PNG\r\n\x1a\n" + b"\0" * 64) is None
    assert dc_scans_only(b"") is None
    for cut in (len(progressive) // 2, len(progressive) - 2, 40):
        truncated = progressive[:cut]
        assert dc_scans_only(truncated) is None
        with pytest.raises(MediaDecodeError):
            phash_fast(truncated)  # still reported, by the whole-file decode


def test_garbage_inside_a_progressive_file_is_not_rewritten():
    data = bytearray(encode(photo(1280, 720), progressive=True))
    data[data.index(b"\xff\xdb")] = 0x00  # no marker where the quantisation table's should be
    assert dc_scans_only(bytes(data)) is None
    with pytest.raises(MediaDecodeError):
        phash_fast(bytes(data))
