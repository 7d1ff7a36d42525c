"""Ground truth for the reference detector: altered copies of authentic originals and unaltered
re-posts of them (demo_platform/reference_media.py), matched against the originals registered as
references, as `scan`, campaigns and rescans do (storage/reference_check.py).

* ``reference_recall``: share of altered copies called altered (outcome "fake");
* ``reference_false_flag_rate``: share of unaltered re-posts called altered;
* ``reference_match_rate``: share of all copies whose original was found;
* ``reference_ms_per_matched_item``: mean time of a check that found its original (photos and
  videos separately too).

Unrelated pictures are also checked: ``reference_unrelated_matched`` must be 0.

Usage: .venv/bin/python bench/truth_reference.py [--quick]; the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from demo_platform import imagery  # noqa: E402
from demo_platform.reference_media import build  # noqa: E402
from storage.blobs import BlobStore  # noqa: E402
from storage.db import Store  # noqa: E402
from storage.reference_check import ReferenceChecker  # noqa: E402
from storage.references import ReferenceLibrary  # noqa: E402


def measure(quick: bool = False) -> dict:
    n_photos, n_videos, n_unrelated = (4, 2, 4) if quick else (12, 4, 12)
    originals, cases = build(seed=15, n_photos=n_photos, n_videos=n_videos)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/ref.db")
        library = ReferenceLibrary(store, BlobStore(Path(tmp) / "blobs"))
        for o in originals:
            library.add(o.data, owner=o.owner, source_url=o.source_url)
        checker = ReferenceChecker(library)
        rows = []
        for case in cases:
            start = time.perf_counter()
            det = checker.check(case.data, case.kind)
            ms = (time.perf_counter() - start) * 1000
            rows.append({"name": case.name, "kind": case.kind, "altered": case.altered, "ms": ms,
                         "matched": det is not None, "flagged": det is not None and det.outcome == "fake",
                         "reason": det.reasons[0] if det is not None and det.reasons else None})
        rng = np.random.default_rng(1515)
        unrelated = sum(
            checker.check(imagery.jpeg_bytes(imagery.render_photo(rng, 640, 480, face=True).pixels, 88), "image") is not None
            for _ in range(n_unrelated))
        store.close()
    altered = [r for r in rows if r["altered"]]
    clean = [r for r in rows if not r["altered"]]
    matched = [r for r in rows if r["matched"]]

    def mean_ms(kind: str | None) -> float | None:
        ms = [r["ms"] for r in matched if kind is None or r["kind"] == kind]
        return round(float(np.mean(ms)), 1) if ms else None

    for r in rows:
        wrong = r["flagged"] != r["altered"]
        print(f"{'WRONG' if wrong else 'ok   '} {r['name']:32} {r['ms']:7.0f} ms  {r['reason']}", file=sys.stderr)
    return {
        "reference_items": len(rows),
        "reference_altered": len(altered),
        "reference_unaltered": len(clean),
        "reference_recall": round(sum(r["flagged"] for r in altered) / max(1, len(altered)), 4),
        "reference_false_flag_rate": round(sum(r["flagged"] for r in clean) / max(1, len(clean)), 4),
        "reference_match_rate": round(len(matched) / max(1, len(rows)), 4),
        "reference_unrelated_matched": int(unrelated),
        "reference_ms_per_matched_item": mean_ms(None),
        "reference_ms_per_matched_photo": mean_ms("image"),
        "reference_ms_per_matched_video": mean_ms("video"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer originals and copies")
    args = parser.parse_args()
    print(json.dumps(measure(args.quick)))


if __name__ == "__main__":
    main()
