"""PDQ hashing (detectors.pdq) against the upstream ThreatExchange reference hashes."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from detectors.hashing import MediaDecodeError
from detectors.pdq import (
    pdq_dihedral_from_bytes,
    pdq_dihedral_from_image,
    pdq_distance,
    pdq_from_bytes,
    pdq_from_image,
)
from tests.conftest import fixtures_dir

UPSTREAM_TOLERANCE = 16  # upstream's own implementations differ from each other by up to this
REFERENCE_COLUMNS = ("expected_python_reference", "expected_wasm_csv", "expected_cpp_readme")


def _expected_rows() -> list[dict[str, str]]:
    root = fixtures_dir() / "pdq"
    with open(root / "expected_pdq.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_fixture_images_land_within_tolerance_of_every_upstream_hash():
    root = fixtures_dir() / "pdq"
    checked = 0
    for row in _expected_rows():
        hash_hex, quality = pdq_from_bytes((root / row["file"]).read_bytes())
        assert len(hash_hex) == 64 and int(hash_hex, 16) >= 0
        assert 0 <= quality <= 100
        for column in REFERENCE_COLUMNS:
            if row[column]:
                d = pdq_distance(hash_hex, row[column])
                assert d <= UPSTREAM_TOLERANCE, f"{row['file']} is {d} bits from {column}"
                checked += 1
    assert checked >= 40  # every image, and every implementation that gave a value


def test_quality_is_high_for_photos_and_low_for_flat_images():
    root = fixtures_dir() / "pdq"
    _, photo_q = pdq_from_bytes((root / "images/bridge-mods/aaa-orig.jpg").read_bytes())
    _, flat_q = pdq_from_bytes((root / "images/misc-images/small.jpg").read_bytes())
    assert photo_q >= 90  # a detailed photo
    assert flat_q < 50  # a near-blank gradient: under the match cut-off
    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    assert pdq_from_image(grey)[1] == 0


def test_bridge_edits_stay_close_and_other_photos_stay_far():
    root = fixtures_dir() / "pdq" / "images"
    orig, _ = pdq_from_bytes((root / "bridge-mods/aaa-orig.jpg").read_bytes())
    for path in sorted((root / "bridge-mods").glob("*.jpg")):
        assert pdq_distance(orig, pdq_from_bytes(path.read_bytes())[0]) <= 31, path.name
    for path in sorted((root / "reg-test-input/labelme-subset").glob("*.jpg")):
        assert pdq_distance(orig, pdq_from_bytes(path.read_bytes())[0]) > 64, path.name


def test_dihedral_variants_find_the_rotated_and_flipped_bridge():
    root = fixtures_dir() / "pdq" / "images" / "reg-test-input" / "dih"
    with Image.open(root / "bridge-1-original.jpg") as im:
        variants = pdq_dihedral_from_image(im)
    assert len(variants) == 8
    for path in sorted(root.glob("bridge-*.jpg")):
        query, _ = pdq_from_bytes(path.read_bytes())
        assert min(pdq_distance(query, v) for v in variants) <= 31, path.name
    flipped, _ = pdq_from_bytes((root / "bridge-5-flipx.jpg").read_bytes())
    assert pdq_distance(flipped, variants[0]) > 100  # plain PDQ misses a mirror image
    from_bytes, quality = pdq_dihedral_from_bytes((root / "bridge-1-original.jpg").read_bytes())
    assert from_bytes == variants and quality == 100


def test_draft_decode_stays_within_tolerance_of_full_decode():
    # The fixture photos are under 1024 px on the short side, so draft mode leaves them whole;
    # a 2x enlargement (2008 px) is decoded at half scale, which is what this measures.
    root = fixtures_dir() / "pdq" / "images"
    for name in ("bridge-mods/aaa-orig.jpg", "misc-images/c.png", "reg-test-input/labelme-subset/q2821.jpg"):
        with Image.open(root / name) as im:
            big = im.convert("RGB").resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=92)
        draft, dq = pdq_from_bytes(buf.getvalue())
        full, fq = pdq_from_bytes(buf.getvalue(), draft=False)
        assert pdq_distance(draft, full) <= 12, name
        assert abs(dq - fq) <= 10


def test_exif_rotation_is_applied_before_hashing():
    rng = np.random.default_rng(3)
    pixels = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    pixels[:, :80] //= 3  # a dark left half, so rotation matters
    upright = Image.fromarray(pixels)
    stored = upright.rotate(90, expand=True)  # stored turned, EXIF says to turn it back
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    ref, _ = pdq_from_image(upright)
    assert pdq_distance(pdq_from_bytes(buf.getvalue())[0], ref) <= 16


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"<!doctype html><html><body>gone</body></html>", "text/html"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "cannot read this image/jpeg"),
    ],
)
def test_bad_bytes_raise_media_decode_error(data, reason):
    with pytest.raises(MediaDecodeError, match=reason):
        pdq_from_bytes(data)


def test_truncated_jpeg_raises_media_decode_error():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    with pytest.raises(MediaDecodeError, match="truncated|corrupt"):
        pdq_from_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_distance_rejects_malformed_hashes():
    with pytest.raises(ValueError, match="64 hex"):
        pdq_distance("ab", "cd")
    with pytest.raises(ValueError, match="not hex"):
        pdq_distance("z" * 64, "0" * 64)
    assert pdq_distance("0" * 64, "f" * 64) == 256
