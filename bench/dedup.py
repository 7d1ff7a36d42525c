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
cut away) on both sides, with detectors.regions.views_match's rules (PDQ <= 31 between any views;
pHash <= 10 and PDQ <= 47 agreeing; a query with a band verified against candidates within pHash
20 by the PDQ of the same relative region of both).

    .venv/bin/python bench/dedup.py [--quick] [--n 60] [--distractors 200]
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from _common import COMMON_TRANSFORMS, TRANSFORMS, bit_matrix, emit, environment, hamming_matrix, photo_jpegs, transform

from detectors.pdq import pdq_dihedral_from_bytes
from detectors.regions import ImageViews, views_match
from detectors.signals import get_signal

SIZE = (640, 480)
SIGNAL_NAMES = ("phash", "pdq", "pdq_dihedral", "pdq_regions")
_INDEX_CACHE: dict[tuple[str, int], list[tuple[list[str], int | None]]] = {}


def _hashes(signal: str, data: bytes) -> tuple[list[str], int | None]:
    """The hash(es) a query or index entry contributes, and its quality."""
    if signal == "pdq_dihedral":
        return pdq_dihedral_from_bytes(data)
    (value,) = get_signal(signal).compute(data)
    return [value.hash_hex], value.quality


def _views(data: bytes) -> ImageViews:
    return ImageViews(Image.open(io.BytesIO(data)))


def _region_scores(index: list[bytes], n_true: int, queries: list[bytes], truth: list[int | None]) -> dict:
    pdq = get_signal("pdq")
    key = ("regions", id(index))
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = [_views(d) for d in index]
    idx = _INDEX_CACHE[key]
    tp = fp = 0
    for data, want in zip(queries, truth):
        query = _views(data)
        hits = {j for j, entry in enumerate(idx)
                if views_match(query, entry, pdq_threshold=pdq.default_threshold, quality_cutoff=pdq.quality_cutoff or 0)}
        hit = want is not None and want in hits
        tp += int(hit)
        fp += len(hits) - int(hit)
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
