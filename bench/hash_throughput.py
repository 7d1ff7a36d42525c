"""Hashing throughput: JPEG bytes in, hash out, decode included, single process.

Compares, on the same ~720p JPEGs in the same run:
  deepwatch phash   detectors.hashing.phash_fast (luma-only draft decode + 8x32 DCT rows)
  imagehash phash   str(imagehash.phash(PIL.Image.open(BytesIO(jpeg))))
  deepwatch pdq     detectors.pdq.pdq_from_bytes (draft decode >= 512 px, pdqhash)
and reports images per second, `ratio_vs_imagehash` (deepwatch phash over imagehash phash),
and how many bits deepwatch's pHash differs from imagehash's on these images. An optional
process-pool figure (--pool N) is labelled as such and not part of the ratio.

The same pictures are also re-encoded as progressive JPEGs (same quality), the form social
platforms serve photos in: there deepwatch reads only the DC scans (detectors.jpeg_scans, the
same pixels from about a tenth of the bytes), and both hashers are timed again.
`ratio_vs_imagehash_progressive` compares them on those files; `ratio_progressive_vs_imagehash_baseline`
is the stricter figure, deepwatch on the progressive files against imagehash on the baseline ones
(which decode faster than progressive ones).

It also times the decode floor: libjpeg-turbo asked for the smallest luma image it can give
(1/8 DCT scale), with no hashing at all. Every baseline JPEG's Huffman-coded coefficients must
all be entropy-decoded to reach even the DC terms, so no hasher built on a standard decoder can
beat that rate on one core; `ceiling_ratio_vs_imagehash` is the ratio such a hasher would reach
if hashing itself cost nothing.

    .venv/bin/python bench/hash_throughput.py [--quick] [--images 40] [--rounds 5] [--pool 2]
"""
from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from _common import emit, environment, photo_jpegs

from detectors.hashing import hamming, phash_fast
from detectors.pdq import pdq_from_bytes

SIZE = (1280, 720)


def imagehash_phash(data: bytes) -> str:
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.open(io.BytesIO(data))))


def draft_decode_only(data: bytes) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", (img.width // 8, img.height // 8))
        img.load()


def _progressive(data: bytes) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, "JPEG", quality=85, progressive=True)
    return out.getvalue()


def _rates(contenders: dict[str, Callable[[bytes], object]], images: list[bytes], rounds: int) -> dict[str, float]:
    """Images per second for each contender, best of `rounds` passes.

    The contenders take turns within each round, so drifting load on a shared machine hits
    them alike, and the best pass is the one least disturbed by other processes.
    """
    best = {name: float("inf") for name in contenders}
    for fn in contenders.values():
        fn(images[0])  # warm-up: imports, DCT basis
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for data in images:
                fn(data)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(images) / t for name, t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=0, help="also time a process pool of this many workers")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 12, 3
    w, h = SIZE
    images = photo_jpegs(args.seed, args.images, w, h, quality=85)

    progressive = [_progressive(d) for d in images]
    rates = _rates({"imagehash_phash": imagehash_phash, "deepwatch_phash": phash_fast,
                    "deepwatch_pdq": pdq_from_bytes, "decode_floor": draft_decode_only}, images, args.rounds)
    prog_rates = _rates({"imagehash_phash": imagehash_phash, "deepwatch_phash": phash_fast}, progressive, args.rounds)

    bits = [hamming(imagehash_phash(d), phash_fast(d)) for d in images]
    prog_bits = [hamming(imagehash_phash(p), phash_fast(p)) for p in progressive]
    same_as_baseline = sum(phash_fast(p) == phash_fast(d) for p, d in zip(progressive, images))
    result = {
        "bench": "hash_throughput",
        "quick": args.quick,
        "image_size": f"{w}x{h}",
        "jpeg_quality": 85,
        "images": args.images,
        "rounds": args.rounds,
        "images_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_vs_imagehash": round(rates["deepwatch_phash"] / rates["imagehash_phash"], 2),
        "ceiling_ratio_vs_imagehash": round(rates["decode_floor"] / rates["imagehash_phash"], 2),
        "pdq_ratio_vs_imagehash_phash": round(rates["deepwatch_pdq"] / rates["imagehash_phash"], 2),
        "phash_bits_vs_imagehash": {"max": max(bits), "mean": round(sum(bits) / len(bits), 2)},
        "progressive": {
            "images_per_s": {k: round(v, 1) for k, v in prog_rates.items()},
            "mean_bytes": round(sum(map(len, progressive)) / len(progressive)),
            "phash_bits_vs_imagehash": {"max": max(prog_bits), "mean": round(sum(prog_bits) / len(prog_bits), 2)},
            "phash_equal_to_baseline_files": f"{same_as_baseline}/{len(images)}",
        },
        "ratio_vs_imagehash_progressive": round(prog_rates["deepwatch_phash"] / prog_rates["imagehash_phash"], 2),
        "ratio_progressive_vs_imagehash_baseline": round(prog_rates["deepwatch_phash"] / rates["imagehash_phash"], 2),
        "env": environment(),
    }
    if args.pool:
        with ProcessPoolExecutor(args.pool) as pool:
            list(pool.map(phash_fast, images[: args.pool]))  # start the workers first
            start = time.perf_counter()
            list(pool.map(phash_fast, images * args.rounds, chunksize=8))
            elapsed = time.perf_counter() - start
        pooled = len(images) * args.rounds / elapsed
        result["process_pool"] = {"workers": args.pool, "deepwatch_phash_images_per_s": round(pooled, 1),
                                  "ratio_vs_imagehash_one_process": round(pooled / rates["imagehash_phash"], 2)}
    emit(result)


if __name__ == "__main__":
    main()
