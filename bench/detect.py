"""Detector throughput end to end: JPEG bytes in, P(fake) out, for one model on one device.

Three arms, in one run, on the same device, with the same model and dtype:
  deepwatch  orchestrator.detect_pool.DetectWorker (what each pool actor runs): concurrent callers
             hand in JPEG bytes, its batcher fills model batches, the decoder (Pillow draft mode
             on the CPU, or nvJPEG + torch resize on the GPU) prepares the next batch while the
             model runs. Timed from bytes to scores.
  pipeline   transformers.pipeline("image-classification", model=..., image_processor=...,
             device=..., dtype=...) fed PIL images opened from the same bytes (decoding is
             timed), at the pipeline's default batch size; `pipeline_batched`, the same
             pipeline with batch_size equal to ours (the stronger peer); and, when the run is
             in half precision, `pipeline_fp32`: the pipeline as called without a dtype.
  ceiling    the bare model forward on pre-decoded, pre-normalised tensors already on the
             device, in the same dtype and batch size: what no decoder can beat.

The model is a ViT-B/16 built from `ViTConfig()` with random weights (throughput does not
depend on the weights), saved and loaded through the detector's real loading code; `--tiny`
is a 2-layer ViT for quick CPU runs, `--model DIR` a local checkpoint. Images: N distinct
640x480 camera-like JPEGs made in memory (a few rendered scenes, each shifted, cropped and
re-graded before encoding, so that no two files are the same).

    .venv/bin/python bench/detect.py [--quick] [--device cpu|cuda] [--dtype auto|bf16|fp16|fp32]
                                     [--decode auto|cpu|gpu] [--n N] [--batch-size B] [--tiny]

Prints ONE JSON object as its last line: images_per_s per arm, ratio_vs_pipeline (same dtype,
its default batch size), ratio_vs_pipeline_batched, ratio_vs_pipeline_fp32, ratio_vs_ceiling,
and how far our scores are from the pipeline's.
Needs torch, transformers, numpy, Pillow (torchvision for GPU decoding); not Ray.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from _common import emit, environment, photo_jpegs

_DTYPES = {"auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
           "fp32": "float32", "float32": "float32"}
SIZE = (640, 480)


def distinct_jpegs(n: int, seed: int, workers: int) -> list[bytes]:
    """n different 640x480 JPEGs: a few rendered scenes, each copy shifted, cropped, re-graded."""
    bases = [Image.open(io.BytesIO(b)).convert("RGB") for b in photo_jpegs(seed, min(n, 16), 720, 540)]
    rng = np.random.default_rng(seed)
    plans = [(i % len(bases), int(rng.integers(0, 80)), int(rng.integers(0, 60)), float(rng.uniform(0.8, 1.2)),
              int(rng.integers(80, 95))) for i in range(n)]

    def make(plan: tuple[int, int, int, float, int]) -> bytes:
        base, dx, dy, gain, quality = plan
        img = bases[base].crop((dx, dy, dx + SIZE[0], dy + SIZE[1]))
        img = ImageEnhance.Brightness(img).enhance(gain)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return buf.getvalue()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        out = list(pool.map(make, plans))
    assert len(set(out)) == n, "generated JPEGs are not all distinct"
    return out


def build_model(folder: Path, tiny: bool) -> str:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    labels = {"id2label": {0: "real", 1: "fake"}, "label2id": {"real": 0, "fake": 1}}
    if tiny:
        config = ViTConfig(hidden_size=96, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192, **labels)
    else:
        config = ViTConfig(**labels)  # ViT-B/16 at 224x224: 86M parameters
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor().save_pretrained(folder)  # 224x224, mean/std 0.5: the ViT defaults
    return str(folder)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_deepwatch(model: str, blobs: list[bytes], args: argparse.Namespace) -> dict:
    from orchestrator.detect_pool import DetectWorker, PoolItem

    worker = DetectWorker(model, device=args.device, dtype=args.dtype, decode=args.decode,
                          max_batch=args.batch_size, max_wait_ms=2.0, max_queued=4 * args.batch_size)
    # Concurrent callers, each handing in a quarter batch at a time as pool actors get them:
    # four batches' worth in flight, so one can gather while one decodes and one runs.
    callers = 16
    chunk = max(1, args.batch_size // 4)
    chunks = [[PoolItem(str(i), blobs[i]) for i in range(s, min(s + chunk, len(blobs)))]
              for s in range(0, len(blobs), chunk)]

    async def caller(mine: list) -> list:
        out = []
        for c in mine:
            out.extend(await worker.detect(c))
        return out

    async def everything() -> list:
        parts = await asyncio.gather(*(caller(chunks[k::callers]) for k in range(callers)))
        return [r for part in parts for r in part]

    if args.device.startswith("cuda"):
        asyncio.run(everything())  # one full pass to settle the allocator at these batch sizes
    seconds = float("inf")
    for _ in range(args.repeat):  # best of: other processes on the machine only ever slow a pass
        sync(args.device)
        started = time.perf_counter()
        results = asyncio.run(everything())
        sync(args.device)
        seconds = min(seconds, time.perf_counter() - started)
    bad = [r for r in results if r.detection is None or r.detection.outcome not in ("fake", "real")]
    if bad:
        raise SystemExit(f"deepwatch arm failed on {len(bad)} images: {bad[0]}")
    scores = {int(r.key): r.detection.score for r in results}
    described = worker.classifier.describe()
    return {"images_per_s": len(blobs) / seconds, "seconds": seconds, "scores": [scores[i] for i in range(len(blobs))],
            "decode": described["decode"], "dtype": described["dtype"], "warmup_s": round(worker.stats.warmup_s, 2),
            "batch_sizes": dict(sorted(worker.stats.batch_sizes.items()))}


def run_ceiling(model: str, blobs: list[bytes], args: argparse.Namespace) -> dict:
    """The model alone on pre-decoded, pre-normalised tensors already on the device."""
    import torch

    from detectors.classifier import HFImageClassifier
    from detectors.decode import CpuDecoder

    clf = HFImageClassifier(model, device=args.device, dtype=args.dtype, batch_size=args.batch_size, decode="cpu")
    pixels = CpuDecoder(clf._prep).decode(blobs).pixels
    batches = [pixels[s : s + args.batch_size].to(clf.device, clf.dtype) for s in range(0, len(blobs), args.batch_size)]
    with torch.inference_mode():
        for batch in batches[:2]:
            clf.model(pixel_values=batch)
        seconds = float("inf")
        for _ in range(args.repeat):
            sync(args.device)
            started = time.perf_counter()
            for batch in batches:
                clf.model(pixel_values=batch).logits
            sync(args.device)
            seconds = min(seconds, time.perf_counter() - started)
    return {"images_per_s": len(blobs) / seconds, "seconds": seconds}


def run_pipeline(model: str, blobs: list[bytes], args: argparse.Namespace, batch_size: int,
                 dtype_name: str | None = None) -> dict:
    import torch
    from transformers import AutoImageProcessor, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    dtype_name = dtype_name or args.dtype
    if dtype_name == "auto":  # what the detector picks for "auto"
        dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, dtype_name)
    pipe = pipeline("image-classification", model=model, image_processor=AutoImageProcessor.from_pretrained(model),
                    device=args.device, dtype=dtype)

    def score(batch: list[bytes]) -> list[float]:
        images = [Image.open(io.BytesIO(b)) for b in batch]  # decoding happens inside the pipeline
        out = pipe(images, batch_size=batch_size, top_k=None)
        return [next(r["score"] for r in res if r["label"] == "fake") for res in out]

    score(blobs[: min(len(blobs), 2 * batch_size if args.device.startswith("cuda") else 1)])  # warm-up
    sync(args.device)
    started = time.perf_counter()
    scores = score(blobs)
    sync(args.device)
    seconds = time.perf_counter() - started
    return {"images_per_s": len(blobs) / seconds, "seconds": seconds, "scores": scores, "batch_size": batch_size,
            "processor": type(pipe.image_processor).__name__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--device", default=None, help="cpu or cuda [default: cuda if available]")
    parser.add_argument("--dtype", default="auto", choices=sorted(_DTYPES), help="model precision (auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--decode", default="auto", choices=("auto", "cpu", "gpu"), help="deepwatch decoder")
    parser.add_argument("--model", default=None, help="local checkpoint folder instead of a random ViT-B/16")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer ViT instead of ViT-B/16")
    parser.add_argument("--n", type=int, default=None, help="images for the deepwatch and ceiling arms")
    parser.add_argument("--pipeline-n", type=int, default=None, help="images for the pipeline arms (they are slow)")
    parser.add_argument("--batch-size", type=int, default=None, help="model batch [default: 256 on CUDA, 16 on CPU]")
    parser.add_argument("--no-batched-pipeline", action="store_true", help="skip the pipeline_batched arm")
    parser.add_argument("--repeat", type=int, default=None, help="timed passes of the deepwatch and ceiling arms, best kept [default: 2 quick, 3]")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    import torch
    import transformers

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    args.dtype = _DTYPES[args.dtype]
    cuda = args.device.startswith("cuda")
    # CPU sizes: ViT-B/16 runs at a few images per second on a small CPU, and --quick must
    # stay under a minute there.
    args.batch_size = args.batch_size or (256 if cuda else (8 if args.quick else 16))
    if args.n is None:
        args.n = (1024 if args.quick else 4096) if cuda else (8 if args.quick else 64)
    if args.pipeline_n is None:
        args.pipeline_n = min(args.n, (256 if args.quick else 1024) if cuda else (4 if args.quick else 32))
    args.repeat = args.repeat or ((2 if cuda else 1) if args.quick else 3)
    workers = os.cpu_count() or 1

    t0 = time.perf_counter()
    blobs = distinct_jpegs(args.n, args.seed, workers)
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        model = args.model or build_model(Path(tmp) / "vit", args.tiny)
        ours = run_deepwatch(model, blobs, args)
        # On a GPU, the other decoder too: which of nvJPEG and Pillow threads feeds the model faster.
        other = None
        if cuda and args.decode != "cpu":
            other = run_deepwatch(model, blobs, argparse.Namespace(**{**vars(args), "decode": "cpu"}))
        ceiling = run_ceiling(model, blobs, args)
        pipe = run_pipeline(model, blobs[: args.pipeline_n], args, batch_size=1)
        batched = None if args.no_batched_pipeline else run_pipeline(model, blobs[: args.pipeline_n], args, args.batch_size)
        # The pipeline as called without a dtype (float32) when the arms above ran in half precision.
        plain = run_pipeline(model, blobs[: args.pipeline_n], args, 1, "float32") if ours["dtype"] != "float32" else None
    agreement = np.abs(np.array(ours["scores"][: args.pipeline_n]) - np.array(pipe["scores"]))
    result = {
        "bench": "detect",
        "model": args.model or ("vit-tiny (random init)" if args.tiny else "vit-base-patch16-224 (ViTConfig(), random init)"),
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({workers} cores)",
        "dtype": ours["dtype"],
        "decode": ours["decode"],
        "batch_size": args.batch_size,
        "images": args.n,
        "pipeline_images": args.pipeline_n,
        "image_size": f"{SIZE[0]}x{SIZE[1]} JPEG",
        "deepwatch_images_per_s": round(ours["images_per_s"], 2),
        "ceiling_images_per_s": round(ceiling["images_per_s"], 2),
        "pipeline_images_per_s": round(pipe["images_per_s"], 2),
        "ratio_vs_pipeline": round(ours["images_per_s"] / pipe["images_per_s"], 2),
        "ratio_vs_ceiling": round(ours["images_per_s"] / ceiling["images_per_s"], 3),
        "pipeline_processor": pipe["processor"],
        "score_max_abs_diff_vs_pipeline": round(float(agreement.max()), 5),
        "deepwatch_batch_sizes": ours["batch_sizes"],
        "warmup_s": ours["warmup_s"],
        "repeat": args.repeat,
        "seconds": round(time.perf_counter() - t0, 1),
        "env": {**environment(), "torch": torch.__version__, "transformers": transformers.__version__},
    }
    if other is not None:
        result["deepwatch_cpu_decode_images_per_s"] = round(other["images_per_s"], 2)
    if plain is not None:
        result["pipeline_fp32_images_per_s"] = round(plain["images_per_s"], 2)
        result["ratio_vs_pipeline_fp32"] = round(ours["images_per_s"] / plain["images_per_s"], 2)
    if batched is not None:
        result["pipeline_batched_images_per_s"] = round(batched["images_per_s"], 2)
        result["ratio_vs_pipeline_batched"] = round(ours["images_per_s"] / batched["images_per_s"], 2)
    emit(result)


if __name__ == "__main__":
    sys.exit(main())
