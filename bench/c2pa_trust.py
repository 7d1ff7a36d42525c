"""C2PA verdicts before and after the trust rule (issue 22), and what the trust check costs.

Inputs: the C2PA SDK's own signed test files in ../shared/fixtures/c2pa (signed_valid and
signed_invalid), plus files signed here with a certificate made a moment ago (the abuse case:
a real-looking photo signed as trainedAlgorithmicMedia, and one signed as algorithmicMedia), and
the same files read with that CA configured as an anchor.

  before  the old rule, re-applied to the same facts: a valid signature on unaltered content that
          declares any of trainedAlgorithmicMedia, compositeWithTrainedAlgorithmicMedia,
          algorithmicMedia or compositeSynthetic was confirmed_ai, whoever signed it;
  after   detectors.fusion on the detector's output: only a trusted signer confirms; an
          untrusted one is at most likely_fake; algorithmicMedia is a finding.

Timing: ms per file for the detector (reader + crJSON + trust assessment, with the bundled C2PA
trust list loaded) against a bare c2pa.Reader(...).json() with the SDK's defaults (ratio_vs_plain_reader).

    .venv/bin/python bench/c2pa_trust.py [--quick] [--repeat N]

Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT.parent / "shared" / "fixtures" / "c2pa"
OLD_GENERATIVE = {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
                  "compositeSynthetic"}
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mp4": "video/mp4"}


def old_band(facts: dict) -> str:
    declared = {d["type"] for d in facts.get("digital_source_types", [])} & OLD_GENERATIVE
    if declared and facts.get("signed_valid") and not facts.get("tampered"):
        return "confirmed_ai"
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timing repeats")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 20)
    if not FIXTURES.is_dir():
        sys.exit(f"needs the C2PA fixtures at {FIXTURES}")

    import c2pa

    from detectors.base import MediaInput
    from detectors.c2pa_check import C2PADetector
    from detectors.c2pa_trust import TrustSettings
    from detectors.fusion import fuse
    from tests.test_c2pa import make_signing_chain, plain_jpeg, sign_jpeg

    files = [(p.name, p.read_bytes(), MIME[p.suffix]) for d in ("signed_valid", "signed_invalid")
             for p in sorted((FIXTURES / d).iterdir())]
    chain = make_signing_chain()
    own = [(f"self-signed {t}", sign_jpeg(plain_jpeg(i), IPTC + t, chain), "image/jpeg")
           for i, t in enumerate(("trainedAlgorithmicMedia", "algorithmicMedia"))]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ca.pem").write_bytes(chain[2])
        with_anchor = C2PADetector(trust=TrustSettings.build(anchors=[Path(tmp) / "ca.pem"]))
    default = C2PADetector(trust=TrustSettings())

    rows, before, after = [], Counter(), Counter()
    for label, detector, batch in (("C2PA list only", default, files + own), ("own CA as anchor", with_anchor, own)):
        for name, data, mime in batch:
            det = detector.detect_one(MediaInput("0" * 64, "video" if mime.startswith("video") else "image", data, mime))
            band = fuse([det], 0.3).band
            was = old_band(det.details)
            if label == "C2PA list only":
                before[was] += 1
                after[band] += 1
            trust = det.details.get("trust") or {}
            rows.append({"file": name, "trust_settings": label, "before": was, "after": band,
                         "signer": trust.get("signer"), "trusted": trust.get("trusted")})
            print(f"{label:17s} {name:40s} before {was:12s} after {band:12s} signer {trust.get('signer')}"
                  f" trusted {trust.get('trusted')}")

    def timed(fn) -> float:
        start = time.perf_counter()
        for _ in range(repeat):
            for _name, data, mime in files:
                fn(data, mime)
        return (time.perf_counter() - start) * 1000 / (repeat * len(files))

    def plain(data: bytes, mime: str) -> None:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            json.loads(reader.json())

    ms_plain = timed(plain)
    ms_ours = timed(lambda data, mime: default.detect_one(
        MediaInput("0" * 64, "video" if mime.startswith("video") else "image", data, mime)))
    print(json.dumps({
        "files": len(files) + len(own), "sdk_test_files": len(files),
        "confirmed_ai_before": before["confirmed_ai"], "confirmed_ai_after": after["confirmed_ai"],
        "likely_fake_after": after["likely_fake"], "bands_after": dict(after),
        "own_ca_as_anchor_confirmed": sum(r["after"] == "confirmed_ai" for r in rows
                                          if r["trust_settings"] == "own CA as anchor"),
        "ms_per_file_detector": round(ms_ours, 2), "ms_per_file_plain_reader": round(ms_plain, 2),
        "ratio_vs_plain_reader": round(ms_ours / ms_plain, 2), "repeat": repeat,
        "c2pa_python": c2pa.__version__,
    }))


if __name__ == "__main__":
    main()
