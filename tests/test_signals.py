"""The signal registry (detectors.signals) and deepwatch's fast pHash (detectors.hashing.phash_fast)."""
from __future__ import annotations

import csv
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from detectors.hashing import MediaDecodeError, hamming, image_phash, phash_fast
from detectors.signals import SIGNALS, SignalType, SignalValue, _registry, get_signal, signals_for
from tests.conftest import fixtures_dir


def _photo(seed: int, width: int = 320, height: int = 240) -> np.ndarray:
    from demo_platform import imagery

    return imagery.render_photo(np.random.default_rng(seed), width, height, face=True).pixels


def _jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def clip() -> bytes:
    from demo_platform import video

    return video.encode_mp4(video.render_clip(np.random.default_rng(5), manipulated=False))


def test_registry_declares_each_signal_once_with_its_parameters():
    assert set(SIGNALS) == {"sha256", "phash", "pdq", "vpdq"}
    assert all(isinstance(s, SignalType) and SIGNALS[name] is s and s.name == name for name, s in SIGNALS.items())
    expected = {  # name: (kinds, bits, threshold, quality cut-off)
        "sha256": (("image", "video"), 256, 0, None),
        "phash": (("image",), 64, 10, None),
        "pdq": (("image",), 256, 31, 50),
        "vpdq": (("video",), 256, 31, 50),
    }
    for name, (kinds, bits, threshold, cutoff) in expected.items():
        s = get_signal(name)
        assert (s.kinds, s.bits, s.default_threshold, s.quality_cutoff) == (kinds, bits, threshold, cutoff)
    assert [s.name for s in signals_for("video")] == ["sha256", "vpdq"]
    with pytest.raises(ValueError, match="unknown media kind"):
        signals_for("audio")
    with pytest.raises(dataclasses_frozen_error()):
        SIGNALS["pdq"].default_threshold = 99  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_unknown_name_lists_the_known_ones_and_duplicates_are_refused():
    with pytest.raises(KeyError, match="known signals: pdq, phash, sha256, vpdq"):
        get_signal("md5")
    pdq = get_signal("pdq")
    with pytest.raises(ValueError, match=r"declared more than once: \['pdq'\]"):
        _registry((pdq, get_signal("phash"), pdq))


def test_distances_check_hash_length_and_count_bits():
    sha, ph, pdq = get_signal("sha256"), get_signal("phash"), get_signal("pdq")
    assert sha.distance("a" * 64, "A" * 64) == 0
    assert sha.distance("a" * 64, "b" * 64) == 256  # exact only: no notion of "nearly equal"
    assert ph.distance("0" * 16, "0" * 15 + "7") == 3
    assert pdq.distance("0" * 64, "f" * 64) == 256
    with pytest.raises(ValueError, match="need 16 hex chars, got 64"):
        ph.distance("0" * 64, "0" * 64)
    with pytest.raises(ValueError, match="not a pdq hash"):
        pdq.distance("0" * 16, "0" * 16)


def test_matches_applies_threshold_and_quality_cutoff():
    pdq = get_signal("pdq")
    zero = SignalValue("0" * 64, 100, None)
    at_threshold = SignalValue("f" * 7 + "e" + "0" * 56, 100, None)  # 31 bits
    past = SignalValue("f" * 8 + "0" * 56, 100, None)  # 32 bits
    assert pdq.matches(zero, at_threshold) and not pdq.matches(zero, past)
    assert not pdq.matches(zero, SignalValue("0" * 64, 49, None))  # under the cut-off
    assert get_signal("phash").matches(SignalValue("0" * 16, None, None), SignalValue("0" * 13 + "3ff", None, None))


def test_each_image_signal_computes_on_a_generated_photo():
    pixels = _photo(1)
    data = _jpeg(pixels)
    recompressed = _jpeg(pixels, 50)
    other = _jpeg(_photo(2))
    (sha,) = get_signal("sha256").compute(data)
    assert sha == SignalValue(hashlib.sha256(data).hexdigest(), None, None)
    for name in ("phash", "pdq"):
        s = get_signal(name)
        (v,) = s.compute(data)
        assert len(v.hash_hex) * 4 == s.bits and v.t_s is None
        assert (v.quality is None) == (s.quality_cutoff is None)
        (w,) = s.compute(recompressed)
        (u,) = s.compute(other)
        assert s.matches(v, w), f"{name}: recompressed copy must match"
        assert not s.matches(v, u), f"{name}: an unrelated photo must not match"
    assert get_signal("pdq").compute(data)[0].quality >= 50


def test_vpdq_computes_one_frame_hash_per_second(clip):
    values = get_signal("vpdq").compute(clip)
    assert [v.t_s for v in values] == [0.0, 1.0]  # a 2 s clip at 10 fps
    assert all(len(v.hash_hex) == 64 and 0 <= v.quality <= 100 for v in values)
    (sha,) = get_signal("sha256").compute(clip)
    assert sha.hash_hex == hashlib.sha256(clip).hexdigest()


def test_image_signals_reject_bad_bytes(clip):
    for name in ("phash", "pdq"):
        with pytest.raises(MediaDecodeError, match="not an image: sniffed text/html"):
            get_signal(name).compute(b"<html><body>404</body></html>")
        with pytest.raises(MediaDecodeError, match="sniffed video/mp4"):
            get_signal(name).compute(clip)
    with pytest.raises(MediaDecodeError, match="empty"):
        get_signal("sha256").compute(b"")
    with pytest.raises(MediaDecodeError, match="not a video: sniffed image/jpeg"):
        get_signal("vpdq").compute(_jpeg(_photo(1)))


def test_phash_fast_equals_imagehash_on_its_reference_image():
    folder = fixtures_dir() / "dedup" / "imagehash"
    with open(folder / "expected_hashes.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["algorithm"] == "phash" and r["params"].startswith("default")]
    assert rows
    for row in rows:
        assert phash_fast((folder / row["file"]).read_bytes()) == row["expected_hash"], row["file"]


def test_phash_fast_stays_within_a_few_bits_of_imagehash_on_jpegs():
    import imagehash

    for seed in range(4):
        data = _jpeg(_photo(seed, 1280, 720), 85)
        reference = str(imagehash.phash(Image.open(io.BytesIO(data))))
        assert hamming(phash_fast(data), reference) <= 4
        assert hamming(phash_fast(data), image_phash(data)) <= 4
