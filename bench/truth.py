"""Do deepwatch's verdicts hold on real media? False flags on real photographs nobody here made.

Section `real_photos`: with the set-up `make demo` leaves (the demo model, trained and calibrated
on the demo world, with its domain check), `deepwatch scan`'s own code (orchestrator.scan) runs
over the real photographs in ../shared/fixtures (ThreatExchange's PDQ test images and
imagehash's test images: bridges, streets, objects, a face). Every one is authentic, so any
`likely_fake` or `confirmed_ai` is a false flag (goal <= 1%, limit 5%). Also reported: how many the
classifier alone would have flagged (score >= threshold) and how many fell outside its domain.

The demo model at var/models/demo-detector is used when present (made by `make demo`); else it
is trained with the demo recipe into a temporary folder (minutes on 2 cores) and the output
says so. `--quick` scans one image in three.

Section `reference_library`: bench/truth_reference.py, the reference detector (comparison with
authentic originals) on altered copies and unaltered re-posts under platform transforms.
Each section in SECTIONS is `measure(quick) -> dict`, merged into the one JSON object printed last.

    .venv/bin/python bench/truth.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT.parent / "shared" / "fixtures"
PHOTO_DIRS = ("pdq/images", "dedup/imagehash")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
DEMO_MODEL = ROOT / "var" / "models" / "demo-detector"
FLAGGED = ("likely_fake", "confirmed_ai")


def real_photos() -> list[Path]:
    found = sorted(p for d in PHOTO_DIRS for p in (FIXTURES / d).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise SystemExit(f"no real photographs under {FIXTURES} ({', '.join(PHOTO_DIRS)}): the benchmark needs them")
    return found


def demo_model(tmp: Path) -> tuple[Path, str]:
    """(calibrated demo model folder, how it was obtained)."""
    from detectors.demo_calibration import calibrate_demo_model, is_calibrated
    from detectors.train import _holds_model, ensure_demo_model

    if _holds_model(DEMO_MODEL):
        how = "cached var/models/demo-detector"
        if not is_calibrated(DEMO_MODEL):
            calibrate_demo_model(DEMO_MODEL)
            how += " (calibrated now: it had no reliable calibration or domain check)"
        return DEMO_MODEL, how
    print("no var/models/demo-detector (run `make demo`): training the demo model with the quick demo recipe",
          file=sys.stderr)
    model = ensure_demo_model(tmp / "demo-detector")
    calibrate_demo_model(model)
    return model, "trained now with the demo recipe (no cached model)"


def measure_real_photos(quick: bool) -> dict[str, Any]:
    from orchestrator.scan import scan_inputs

    photos = real_photos()[:: 3 if quick else 1]
    with tempfile.TemporaryDirectory(prefix="truth-") as tmp:
        model, how = demo_model(Path(tmp))
        t0 = time.perf_counter()
        results = list(scan_inputs([str(p) for p in photos], model=str(model), model_source="bench"))
        seconds = time.perf_counter() - t0
    bands: Counter[str] = Counter()
    score_over = outside = 0
    flagged: list[str] = []
    for p, r in zip(photos, results):
        if "error" in r:
            bands["error"] += 1
            continue
        bands[r["verdict"]["band"]] += 1
        if r["verdict"]["band"] in FLAGGED:
            flagged.append(str(p.relative_to(FIXTURES)))
        for d in r["detections"]:
            if d["detector"] == "hf-classifier" and d["score"] is not None:
                score_over += int(d["score"] >= d["threshold"])
                outside += int((d["details"].get("domain") or {}).get("inside") is False)
    n = sum(bands.values()) - bands["error"]
    return {
        "real_photos": len(photos),
        "scored": n,
        "model": how,
        "false_flag_rate": round(len(flagged) / n, 4) if n else None,
        "false_flags": flagged,
        "bands": dict(sorted(bands.items())),
        "classifier_score_over_threshold": score_over,
        "classifier_alone_flag_rate": round(score_over / n, 4) if n else None,
        "outside_domain": outside,
        "seconds_per_photo": round(seconds / max(len(photos), 1), 3),
    }


def measure_reference_library(quick: bool) -> dict[str, Any]:
    """The reference detector on the demo world's altered and unaltered copies of official media
    (bench/truth_reference.py): recall, false-flag rate, time per matched item."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from truth_reference import measure

    return measure(quick)


SECTIONS: list[tuple[str, Callable[[bool], dict[str, Any]]]] = [
    ("real_photos", measure_real_photos),
    ("reference_library", measure_reference_library),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one photo in three")
    args = parser.parse_args()
    out: dict[str, Any] = {"bench": "truth", "quick": args.quick}
    for name, measure in SECTIONS:
        out[name] = measure(args.quick)
        print(f"{name}: {json.dumps(out[name])}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
