"""Cost of one search-by-image request for a 7000x7000 PNG (issue 16, finding 3): seconds and peak
memory added, the old way (two full decodes: image_phash + pdq_from_bytes) against the new one
(console.image_search.hash_upload: one decode, reduced before hashing).

    .venv/bin/python bench/image_search_cost.py [--quick]

Each measurement runs in a fresh interpreter and reads its VmHWM (peak resident memory) before and
after the request, so the figure belongs to that request alone. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import sys, time

def hwm_mb():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
sys.path.insert(0, sys.argv[3])
data = open(sys.argv[1], "rb").read()
if sys.argv[2] == "after":
    from console.image_search import hash_upload
    run = lambda: hash_upload(data)
else:
    from detectors.hashing import image_phash
    from detectors.pdq import pdq_from_bytes
    import imagehash, pdqhash  # noqa: F401  (imported before the baseline, like a warm server)
    run = lambda: (image_phash(data), *pdq_from_bytes(data))
before = hwm_mb()
t = time.perf_counter()
run()
print(time.perf_counter() - t, hwm_mb() - before)
"""


def probe_png(side: int = 7000) -> bytes:
    """A small, highly compressible PNG with a huge pixel count: what the outside probe sent."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (side, side), (235, 230, 220))
    draw = ImageDraw.Draw(img)
    for i in range(40):
        draw.ellipse((i * 170, i * 120, i * 170 + 900, i * 120 + 700), outline=(i * 6 % 255, 90, 200 - i * 4), width=25)
        draw.rectangle((6800 - i * 160, i * 170, 6900 - i * 160, i * 170 + 400), fill=(30 + i * 5, 140, 60))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def measure(path: Path, mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode, str(ROOT)], capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run each instead of three")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.png"
        path.write_bytes(probe_png())
        size_kb = path.stat().st_size / 1024
        result: dict[str, float | int | str] = {"png_kb": round(size_kb, 1), "pixels": 7000 * 7000, "runs": runs}
        for mode in ("before", "after"):
            samples = [measure(path, mode) for _ in range(runs)]
            result[f"{mode}_s"] = round(statistics.median(s[0] for s in samples), 3)
            result[f"{mode}_peak_mb"] = round(statistics.median(s[1] for s in samples), 1)
            print(f"{mode:6s}: {result[f'{mode}_s']} s, +{result[f'{mode}_peak_mb']} MB peak", flush=True)
    result["time_ratio_vs_before"] = round(float(result["after_s"]) / float(result["before_s"]), 3)
    result["memory_ratio_vs_before"] = round(float(result["after_peak_mb"]) / float(result["before_peak_mb"]), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
