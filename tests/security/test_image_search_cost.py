"""Issue 16, finding 3: one small PNG of 7000x7000 sent to search-by-image cost 8 s and +900 MB.
Peak memory per request is measured in a fresh interpreter (its VmHWM before and after)."""
from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from console.image_search import SearchLimits, SearchRefused, hash_upload
from detectors.hashing import MediaDecodeError, image_phash
from detectors.pdq import pdq_distance, pdq_from_bytes

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
PEAK_MB_LIMIT = 400  # one RGB copy of 49 MP is 147 MB; the old path took +900 MB or more


def test_peak_memory_of_one_huge_png_search(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from image_search_cost import measure, probe_png
    finally:
        sys.path.remove(str(ROOT / "bench"))
    path = tmp_path / "probe.png"
    path.write_bytes(probe_png())
    assert path.stat().st_size < 1_000_000
    seconds, peak_mb = measure(path, "after")
    assert peak_mb < PEAK_MB_LIMIT, f"one search added {peak_mb:.0f} MB"


def test_hashes_stay_near_the_full_size_ones():
    import numpy as np

    from demo_platform import imagery

    img = Image.fromarray(imagery.render_photo(np.random.default_rng(3), 600, 400, face=True).pixels).resize((3000, 2000))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    phash, pdq, quality = hash_upload(buf.getvalue())
    full_pdq, _ = pdq_from_bytes(buf.getvalue())
    assert pdq_distance(pdq, full_pdq) <= 31  # still a match by PDQ's own threshold
    assert (int(phash, 16) ^ int(image_phash(buf.getvalue()), 16)).bit_count() <= 10
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, "PNG")  # 64 MP: over our cap, under Pillow's
    with pytest.raises(MediaDecodeError, match="pixel limit"):
        hash_upload(bomb.getvalue())


def test_concurrency_cap_and_per_user_rate():
    limits = SearchLimits(concurrent=1, per_minute=3, busy_wait_s=0.05)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with limits.slot("ada"):
            held.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(5)
    with pytest.raises(SearchRefused) as busy:
        with limits.slot("ivan"):
            pass
    assert busy.value.status == 503
    release.set()
    worker.join()
    with limits.slot("ivan"):
        pass
    with pytest.raises(SearchRefused) as rate:
        for _ in range(3):  # ada's 2nd and 3rd searches this minute pass, the 4th is refused
            with limits.slot("ada"):
                pass
    assert rate.value.status == 429 and "a minute" in str(rate.value)
