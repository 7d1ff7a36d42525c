"""Transformation benchmark: does a signal find the original again after a platform's edits?

An index holds N originals plus D unrelated distractors (all the project's own generated
photos). Queries are the N originals after each transform (positives) and M unrelated photos
that are not in the index after the same transform (negatives). A query "matches" every index
entry within the signal's default threshold (and over its quality cut-off). Per transform:
  recall    = share of positive queries whose original is among their matches
  precision = correct matches / all matches reported (over positive and negative queries)
Signals: phash (deepwatch's), pdq, pdq_dihedral (the query's 8 rotations/mirrors, so a
flipped copy is found; it also gives 8x the chances of a false match), and pdq_regions: PDQ of
the whole image and of its content region (detectors.regions: screenshot chrome and caption bands
cut away) on both sides, matched by the campaign's own orchestrator.dedup.PerceptualIndex (PDQ <= 31
between any views; pHash <= 10 confirmed by PDQ <= 90; a query with a band verified against
candidates within pHash 20 by the PDQ of the same relative region of both); its one answer per
query is what the recall and precision count.

    .venv/bin/python bench/dedup.py [--quick] [--n 60] [--distractors 200]
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from _common import COMMON_TRANSFORMS, TRANSFORMS, bit_matrix, emit, environment, hamming_matrix, photo_jpegs, transform

from detectors.hashing import phash_fast
from detectors.pdq import decode_for_pdq, pdq_dihedral_from_bytes, pdq_from_image
from detectors.regions import region_hashes
from orchestrator.dedup import PerceptualIndex
from detectors.signals import get_signal

SIZE = (640, 480)
SIGNAL_NAMES = ("phash", "pdq", "pdq_dihedral", "pdq_regions")
_INDEX_CACHE: dict[tuple[str, int], Any] = {}  # per index: its hashes, or the PerceptualIndex


def _hashes(signal: str, data: bytes) -> tuple[list[str], int | None]:
    """The hash(es) a query or index entry contributes, and its quality."""
    if signal == "pdq_dihedral":
        return pdq_dihedral_from_bytes(data)
    (value,) = get_signal(signal).compute(data)
    return [value.hash_hex], value.quality


def _dedup_hashes(data: bytes) -> tuple:
    """What the campaign's fetch stage computes for an image (orchestrator/stages.py): pHash from
    the bytes, PDQ and the content region's hashes from one decode, and the decoded pixels."""
    img = decode_for_pdq(data)
    pdq, quality = pdq_from_image(img)
    return phash_fast(data), pdq, quality, region_hashes(img), img


def _region_scores(index: list[bytes], n_true: int, queries: list[bytes], truth: list[int | None]) -> dict:
    """The campaign's own near-duplicate matcher (orchestrator.dedup.PerceptualIndex, rules 1-3,
    with the pixels of indexed images at hand for region verification): one answer per query."""
    key = ("regions", id(index))
    if key not in _INDEX_CACHE:
        pixels: dict[str, Any] = {}
        dedup = PerceptualIndex(image_loader=pixels.get)
        for j, data in enumerate(index):
            ph, pdq, quality, region, img = _dedup_hashes(data)
            pixels[str(j)] = img
            dedup.add_image(str(j), ph, pdq, quality, region=region)
        _INDEX_CACHE[key] = dedup
    dedup = _INDEX_CACHE[key]
    tp = fp = 0
    for data, want in zip(queries, truth):
        ph, pdq, quality, region, img = _dedup_hashes(data)
        match = dedup.match_image(ph, pdq, quality, region=region, image=img)
        if match is None:
            continue
        hit = want is not None and match.sha256 == str(want)
        tp += int(hit)
        fp += int(not hit)
    reported = tp + fp
    return {"precision": round(tp / reported, 4) if reported else 1.0, "recall": round(tp / n_true, 4),
            "false_matches": fp}


def _scores(signal: str, index: list[bytes], n_true: int, queries: list[bytes], truth: list[int | None]) -> dict:
    if signal == "pdq_regions":
        return _region_scores(index, n_true, queries, truth)
    base = get_signal("pdq" if signal == "pdq_dihedral" else signal)
    key = ("phash" if signal == "phash" else "pdq", id(index))
    if key not in _INDEX_CACHE:  # the index is the same for every transform
        _INDEX_CACHE[key] = [_hashes(key[0], d) for d in index]
    idx = _INDEX_CACHE[key]
    idx_bits = bit_matrix([h[0] for h, _ in idx])
    idx_ok = np.array([base.quality_cutoff is None or (q or 0) >= base.quality_cutoff for _, q in idx])
    tp = fp = 0
    true_d: list[int] = []  # distance from each positive query to its original
    false_d: list[int] = []  # distance from each query to its nearest wrong index entry
    for data, want in zip(queries, truth):
        hashes, quality = _hashes(signal, data)
        if base.quality_cutoff is not None and (quality or 0) < base.quality_cutoff:
            continue  # an unusable query matches nothing: counts against recall only
        dist = hamming_matrix(bit_matrix(hashes), idx_bits).min(axis=0)
        hits = np.flatnonzero((dist <= base.default_threshold) & idx_ok)
        if want is not None:
            true_d.append(int(dist[want]))
        wrong = np.delete(dist, want) if want is not None else dist
        false_d.append(int(wrong.min()))
        hit = want is not None and want in hits
        tp += int(hit)
        fp += len(hits) - int(hit)
    reported = tp + fp
    return {
        "precision": round(tp / reported, 4) if reported else 1.0,
        "recall": round(tp / n_true, 4),
        "false_matches": fp,
        "median_true_distance": float(np.median(true_d)) if true_d else None,
        "min_wrong_distance": min(false_d) if false_d else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--n", type=int, default=60, help="originals in the index")
    parser.add_argument("--distractors", type=int, default=200, help="unrelated images in the index")
    parser.add_argument("--negatives", type=int, default=60, help="unrelated query images per transform")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.quick:
        args.n, args.distractors, args.negatives = 16, 40, 16
    start = time.perf_counter()
    w, h = SIZE
    originals = photo_jpegs(args.seed, args.n, w, h)
    distractors = photo_jpegs(args.seed + 1, args.distractors, w, h)
    strangers = photo_jpegs(args.seed + 2, args.negatives, w, h)
    index = originals + distractors

    results: dict[str, dict[str, dict]] = {s: {} for s in SIGNAL_NAMES}
    for name in TRANSFORMS:
        queries = [transform(name, d) for d in originals] + [transform(name, d) for d in strangers]
        truth: list[int | None] = list(range(args.n)) + [None] * args.negatives
        for signal in SIGNAL_NAMES:
            results[signal][name] = _scores(signal, index, args.n, queries, truth)
        print(name, {s: results[s][name] for s in SIGNAL_NAMES}, flush=True)

    common = {}
    for signal in SIGNAL_NAMES:
        rows = [results[signal][t] for t in COMMON_TRANSFORMS]
        common[signal] = {
            "min_recall": min(r["recall"] for r in rows),
            "min_precision": min(r["precision"] for r in rows),
        }
    best = max(SIGNAL_NAMES, key=lambda s: (common[s]["min_precision"] >= 0.99, common[s]["min_recall"]))
    emit({
        "bench": "dedup",
        "quick": args.quick,
        "image_size": f"{w}x{h}",
        "originals": args.n,
        "distractors": args.distractors,
        "negative_queries": args.negatives,
        "thresholds": {s: get_signal("phash" if s == "phash" else "pdq").default_threshold for s in SIGNAL_NAMES},
        "per_transform": results,
        "common_transforms": list(COMMON_TRANSFORMS),
        "common": common,
        "best_signal": best,
        "goal_recall95_at_precision99_met": common[best]["min_recall"] >= 0.95 and common[best]["min_precision"] >= 0.99,
        "seconds": round(time.perf_counter() - start, 1),
        "env": environment(),
    })


if __name__ == "__main__":
    main()
