"""Crawl throughput: media bytes from a loopback image server, side by side in one run.

A small asyncio HTTP/1.1 keep-alive server (in its own process, so it does not share the
client's GIL) serves N distinct ~30 KB JPEGs. Then, on the same URL list and the same
concurrency C:

  deepwatch     agents.fetch.Fetcher.fetch_media from a thread pool of C threads, politeness
                off (no robots.txt, no per-host limits; loopback allowed). Still on: the address
                guard on every connection, redirect handling, size caps, the bounded decoder,
                the per-fetch deadline and the counters. Bytes are kept in memory.
  httpx         a bare httpx.AsyncClient, C worker tasks, C pooled connections: the floor.
  img2dataset   img2dataset.download(resize_mode="no", output_format="files", processes_count=1,
                thread_count=C) run by a *separate* interpreter (--img2dataset-python; it must not
                go in the project venv). It also decodes every image with OpenCV, re-encodes it
                (unless disable_all_reencoding), hashes it and writes image + JSON + caption
                files to disk, over a fresh urllib connection per image; it refuses nothing.
                A second run with disable_all_reencoding=True is reported alongside.

Reports images/s and MB/s for each, `ratio_vs_httpx` (deepwatch over httpx) and
`ratio_vs_img2dataset` (deepwatch over img2dataset as configured above). The deepwatch and
httpx passes alternate for --rounds rounds and the best pass of each counts.

    .venv/bin/python bench/crawl.py [--quick] [--images 2000] [--concurrency 8] \
        [--img2dataset-python bench/.venv-img2dataset/bin/python]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import ROOT, emit, environment, photo_jpegs

from agents.base import MediaRef
from agents.fetch import Fetched, Fetcher, FetchPolicy

SCENE_SIZE = (512, 384)  # ~30 KB at quality 80
DISTINCT_SCENES = 40  # rendering is slow; each served image is a scene plus its own JPEG comment


# -- the image server (child process) ------------------------------------------------------


def make_images(n: int, seed: int) -> list[bytes]:
    """`n` distinct JPEGs: rendered scenes, each made unique by a COM segment after SOI."""
    w, h = SCENE_SIZE
    scenes = photo_jpegs(seed, min(n, DISTINCT_SCENES), w, h, quality=80)
    images = []
    for i in range(n):
        scene = scenes[i % len(scenes)]
        comment = f"deepwatch crawl bench image {i}".encode()
        images.append(scene[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + scene[2:])
    return images


class _ImageProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1: GET /img/<i>.jpg, keep-alive unless the client asks to close."""

    def __init__(self, images: list[bytes]):
        self.images = images
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            request_line, _, headers = head.partition(b"\r\n")
            parts = request_line.split(b" ")
            path = parts[1] if len(parts) > 1 else b"/"
            close = b"connection: close" in headers.lower() or parts[-1] == b"HTTP/1.0"
            body, status, ctype = b"not found", b"404 Not Found", b"text/plain"
            if path.startswith(b"/img/") and path.endswith(b".jpg"):
                index = path[5:-4]
                if index.isdigit() and int(index) < len(self.images):
                    body, status, ctype = self.images[int(index)], b"200 OK", b"image/jpeg"
            self.transport.write(
                b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                % (status, ctype, len(body), b"Connection: close\r\n" if close else b"")
            )
            self.transport.write(body)
            if close:
                self.transport.close()
                return


def serve(n: int, seed: int, ready: multiprocessing.connection.Connection) -> None:
    images = make_images(n, seed)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ImageProtocol(images), "127.0.0.1", 0, backlog=1024)
        ready.send((server.sockets[0].getsockname()[1], sum(map(len, images))))
        await asyncio.Event().wait()  # until the parent terminates us

    asyncio.run(main())


# -- contenders ----------------------------------------------------------------------------


def run_deepwatch(urls: list[str], concurrency: int) -> tuple[float, int, int]:
    policy = FetchPolicy(
        allow_networks=("127.0.0.0/8",), respect_robots=False, per_host_rps=None, per_host_concurrency=None,
        max_connections=max(20, concurrency), timeout_s=30,
    )
    with Fetcher(policy) as fetcher, ThreadPoolExecutor(concurrency) as pool:
        refs = [MediaRef(url=u, kind="image") for u in urls]
        start = time.perf_counter()
        results = list(pool.map(fetcher.fetch_media, refs))
        elapsed = time.perf_counter() - start
    got = [r for r in results if isinstance(r, Fetched)]
    return elapsed, len(got), sum(len(r.data) for r in got)


def run_httpx(urls: list[str], concurrency: int) -> tuple[float, int, int]:
    import httpx

    async def main() -> tuple[float, int, int]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        pending = iter(urls)
        ok, size = 0, 0

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal ok, size
            for url in pending:
                response = await client.get(url)
                if response.status_code == 200:
                    ok += 1
                    size += len(response.content)

        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            start = time.perf_counter()
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
            return time.perf_counter() - start, ok, size

    return asyncio.run(main())


_IMG2DATASET_RUNNER = r"""
import glob, json, os, sys, time
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
from img2dataset import download
a = json.loads(sys.argv[1])
start = time.perf_counter()
download(url_list=a["url_list"], output_folder=a["out"], processes_count=1, thread_count=a["threads"],
         resize_mode="no", output_format="files", input_format="txt", timeout=30, retries=0,
         enable_wandb=False, disable_all_reencoding=a["no_reencode"], number_sample_per_shard=100000)
elapsed = time.perf_counter() - start
ok = sum(json.load(open(p))["successes"] for p in glob.glob(os.path.join(a["out"], "*_stats.json")))
print(json.dumps({"elapsed": elapsed, "ok": ok}))
"""


def run_img2dataset(python: str, urls: list[str], concurrency: int, no_reencode: bool) -> tuple[float, int] | str:
    """(seconds inside download(), images saved), or why it could not run."""
    with tempfile.TemporaryDirectory(prefix="crawl-bench-") as tmp:
        url_list = Path(tmp) / "urls.txt"
        url_list.write_text("\n".join(urls) + "\n")
        args = json.dumps({"url_list": str(url_list), "out": str(Path(tmp) / "out"), "threads": concurrency,
                           "no_reencode": no_reencode})
        try:
            proc = subprocess.run([python, "-c", _IMG2DATASET_RUNNER, args], capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"could not run {python}: {exc}"
        if proc.returncode != 0:
            return f"img2dataset failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        return answer["elapsed"], answer["ok"]


# -- driver --------------------------------------------------------------------------------


def _figures(elapsed: float, ok: int, size: int, n: int) -> dict[str, float | int]:
    return {"images_per_s": round(ok / elapsed, 1), "mb_per_s": round(size / elapsed / 1e6, 2),
            "seconds": round(elapsed, 3), "ok": ok, "failed": n - ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 images, one round")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8, help="threads / tasks / img2dataset threads")
    parser.add_argument("--rounds", type=int, default=3, help="alternating deepwatch/httpx passes")
    parser.add_argument("--seed", type=int, default=7)
    default_i2d = ROOT / "bench" / ".venv-img2dataset" / "bin" / "python"
    parser.add_argument("--img2dataset-python", default=str(default_i2d) if default_i2d.exists() else "",
                        help="python of a separate venv with img2dataset installed ('' skips it)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 300, 1

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(args.images, args.seed, theirs), daemon=True)
    server.start()
    try:
        port, payload = ours.recv()
        urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(args.images)]
        run_deepwatch(urls[:50], args.concurrency)  # warm-up: imports, first connections
        run_httpx(urls[:50], args.concurrency)
        best: dict[str, tuple[float, int, int]] = {}
        for _ in range(args.rounds):
            for name, fn in (("deepwatch", run_deepwatch), ("httpx", run_httpx)):
                outcome = fn(urls, args.concurrency)
                if name not in best or outcome[0] < best[name][0]:
                    best[name] = outcome
        result: dict = {
            "bench": "crawl",
            "quick": args.quick,
            "images": args.images,
            "avg_image_bytes": round(payload / args.images),
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "deepwatch": _figures(*best["deepwatch"], args.images),
            "httpx": _figures(*best["httpx"], args.images),
        }
        result["ratio_vs_httpx"] = round(best["httpx"][0] / best["deepwatch"][0], 2)
        if args.img2dataset_python:
            for key, no_reencode in (("img2dataset", False), ("img2dataset_no_reencode", True)):
                outcome = run_img2dataset(args.img2dataset_python, urls, args.concurrency, no_reencode)
                if isinstance(outcome, str):
                    result[key] = {"error": outcome}
                    continue
                elapsed, ok = outcome
                result[key] = _figures(elapsed, ok, round(payload * ok / args.images), args.images)
            if "seconds" in result["img2dataset"]:
                dw_rate = result["deepwatch"]["images_per_s"]
                result["ratio_vs_img2dataset"] = round(dw_rate / result["img2dataset"]["images_per_s"], 2)
            if "seconds" in result["img2dataset_no_reencode"]:
                result["ratio_vs_img2dataset_no_reencode"] = round(
                    result["deepwatch"]["images_per_s"] / result["img2dataset_no_reencode"]["images_per_s"], 2)
        else:
            result["img2dataset"] = {"error": "skipped: no --img2dataset-python given"}
        result["env"] = environment()
        result["env"]["httpx"] = __import__("httpx").__version__
    finally:
        server.terminate()
        server.join(5)
    emit(result)


if __name__ == "__main__":
    main()
