"""Benchmark of storage.hashindex at PDQ scale: build, insert, query latency, memory, recall.

    .venv/bin/python bench/index.py            # 10M random 256-bit hashes
    .venv/bin/python bench/index.py --quick    # 1M hashes, under a minute

Random hashes plus planted near-duplicates: every query is a stored hash with a known number of
bits flipped (0..31), and each query also has extra planted rows at known distances. Recall is
measured against those planted answers for every query, and against a brute-force numpy
popcount scan (run in the same process) for a sample of queries, whose latency is also reported.
The last line printed is one JSON object with all figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.hashindex import BinaryHashIndex, to_hex  # noqa: E402

BITS = 256  # set from --bits in main()
MAX_D = 31


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), falling back to the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def flip(code: np.ndarray, nbits: int, rng: np.random.Generator) -> np.ndarray:
    out = code.copy()
    octets = out.view(np.uint8)
    for b in rng.choice(BITS, size=nbits, replace=False):
        octets[b // 8] ^= np.uint8(1 << (b % 8))
    return out


def brute_force(codes: np.ndarray, query: np.ndarray, max_distance: int, chunk: int = 1 << 19) -> list[tuple[int, int]]:
    """Reference answer: popcount of XOR against every stored hash (row number = id here)."""
    hits_rows, hits_dist = [], []
    for start in range(0, codes.shape[0], chunk):
        dist = np.bitwise_count(codes[start : start + chunk] ^ query).sum(axis=1)
        rows = np.flatnonzero(dist <= max_distance)
        hits_rows.append(rows + start)
        hits_dist.append(dist[rows])
    rows, dist = np.concatenate(hits_rows), np.concatenate(hits_dist)
    order = np.lexsort((rows, dist))
    return list(zip(rows[order].tolist(), dist[order].astype(int).tolist()))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1M hashes instead of 10M")
    ap.add_argument("--n", type=int, default=None, help="override the number of hashes")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--brute-queries", type=int, default=None, help="queries also answered by brute force")
    ap.add_argument("--seed", type=int, default=20260)
    ap.add_argument("--bits", type=int, choices=(64, 256), default=256, help="256 = PDQ (d<=31), 64 = pHash (d<=10)")
    args = ap.parse_args()
    global BITS, MAX_D
    BITS, MAX_D = args.bits, (31 if args.bits == 256 else 10)
    n = args.n or (1_000_000 if args.quick else 10_000_000)
    brute_q = args.brute_queries if args.brute_queries is not None else (50 if args.quick else 20)
    rng = np.random.default_rng(args.seed)
    rss0 = rss_bytes()

    # Random hashes, then planted rows: for each query 3 extra rows at chosen distances from it.
    codes = np.frombuffer(rng.bytes(n * BITS // 8), dtype=np.uint64).reshape(n, BITS // 64).copy()
    nq = args.queries
    base_rows = rng.choice(n - 3 * nq, size=nq, replace=False)
    query_dist = rng.integers(0, MAX_D + 1, size=nq)
    queries = np.stack([flip(codes[r], int(d), rng) for r, d in zip(base_rows, query_dist)])
    planted: list[dict[int, int]] = []
    for i in range(nq):
        truth = {int(base_rows[i]): int(query_dist[i])}
        for k in range(3):
            row = n - 3 * nq + 3 * i + k
            d = int(rng.integers(0, MAX_D + 1)) if k < 2 else int(rng.integers(MAX_D + 1, MAX_D + 17))  # one beyond
            codes[row] = flip(queries[i], d, rng)
            if d <= MAX_D:
                truth[row] = d
        planted.append(truth)
    ids = np.arange(n, dtype=np.int64)

    t = time.perf_counter()
    index = BinaryHashIndex(BITS)
    index.add_codes(ids, codes)
    build_s = time.perf_counter() - t

    # Single inserts (hex, through the public add_one), then the merge they eventually cost.
    n_ins = 20_000
    ins_codes = np.frombuffer(rng.bytes(n_ins * BITS // 8), dtype=np.uint64).reshape(n_ins, -1)
    ins_hex = [to_hex(c) for c in ins_codes]
    t = time.perf_counter()
    for k, h in enumerate(ins_hex):
        index.add_one(n + k, h)
    insert_s = time.perf_counter() - t
    del codes  # the index holds the same buffer; drop the bench's name for it

    query_hex = [to_hex(q) for q in queries]
    lat, recall_hits, recall_total, extra = [], 0, 0, 0
    results = []
    for i, qh in enumerate(query_hex):
        t0 = time.perf_counter_ns()
        res = index.search(qh, MAX_D)
        lat.append((time.perf_counter_ns() - t0) / 1e6)
        results.append(res)
        got = dict(res)
        recall_total += len(planted[i])
        recall_hits += sum(1 for r, d in planted[i].items() if got.get(r) == d)
        extra += sum(1 for r in got if r not in planted[i])

    # Memory of the index in use: everything it holds, measured before the merge below makes
    # transient copies. The process RSS includes Python, numpy and the bench's small arrays.
    rss_in_use = rss_bytes()
    t = time.perf_counter()
    index.compact()
    merge_s = time.perf_counter() - t
    lat_after_merge = []
    for qh in query_hex[:200]:
        t0 = time.perf_counter_ns()
        index.search(qh, MAX_D)
        lat_after_merge.append((time.perf_counter_ns() - t0) / 1e6)

    brute_lat, brute_agree = [], 0
    for i in range(brute_q):
        t0 = time.perf_counter_ns()
        ref = brute_force(index._codes, queries[i], MAX_D)  # after compact, row number == id
        brute_lat.append((time.perf_counter_ns() - t0) / 1e6)
        brute_agree += ref == results[i]

    report = {
        "n_hashes": len(index),
        "bits": BITS,
        "max_distance": MAX_D,
        "queries": nq,
        "build_s": round(build_s, 2),
        "build_hashes_per_s": round(n / build_s),
        "single_insert_per_s": round(n_ins / insert_s),
        "merge_of_inserts_s": round(merge_s, 3),
        "query_ms_p50": pct(lat, 50),
        "query_ms_p99": pct(lat, 99),
        "query_ms_max": round(max(lat), 3),
        "query_ms_p50_after_merge": pct(lat_after_merge, 50),
        "query_ms_p99_after_merge": pct(lat_after_merge, 99),
        "recall_planted": round(recall_hits / recall_total, 6),
        "unexpected_hits": extra,
        "brute_queries": brute_q,
        "brute_identical_results": brute_agree,
        "brute_ms_p50": pct(brute_lat, 50) if brute_lat else None,
        "ratio_vs_bruteforce": round(pct(brute_lat, 50) / pct(lat, 50), 1) if brute_lat else None,
        "index_nbytes": index.nbytes(),
        "index_bytes_per_hash": round(index.nbytes() / len(index), 2),
        "rss_bytes": rss_in_use,
        "rss_minus_baseline_bytes": rss_in_use - rss0,
        "rss_baseline_bytes": rss0,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cpu_threads": os.cpu_count(),
    }
    print(f"index: {report['n_hashes']:,} hashes, {report['index_nbytes'] / 1e6:.0f} MB, "
          f"p50 {report['query_ms_p50']} ms, p99 {report['query_ms_p99']} ms, brute p50 {report['brute_ms_p50']} ms")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
