"""End-to-end campaign throughput and memory: a scaled demo world, crawled, fetched, deduplicated,
judged and written up by the real pipeline on local Ray (or on simulated Ray nodes).

The demo platform serves a scaled world (demo_platform.scaled: N posts, ~1.65 media items each,
of which ~40% fresh images that go through the detectors, ~30% re-served fakes with new bytes
that dedup finds near-duplicates of, ~30% exact duplicates) from its own process, so the
driver's memory is the driver's alone. One campaign reads "#demoscale" (every post once) into a
fresh SQLite database and blob folder: crawl, fetch + probe (pHash, PDQ, vPDQ), dedup, detectors
(C2PA, watermark; the classifier only with --classifier, as a CPU ViT would dominate), evidence
records with seals (no Chromium capture: --capture turns it on).

Reports posts/s and media/s end to end, the per-stage figures of the run report, the peak RSS of
the driver and of all Ray processes (sampled with psutil every 0.5 s; the Ray figure sums RSS,
so the shared object store is counted once per process that maps it), and both at 25/50/75/100%
of the media handled, with the dedup index's own bytes (what is meant to grow), and the driver's
RSS every 2,000 evidence records written, to show memory stays flat. `--nodes 1,2,4` runs the
same campaign (at --node-posts) on ray.cluster_utils.Cluster with that many simulated worker
nodes, each with three logical CPUs and the "crawler" and "detector" resources, and 2 fetchers +
1 detector per node. On a machine with few cores the simulated nodes share those cores, so the
figures show the overhead of more nodes and actors, not a speed-up.

    .venv/bin/python bench/campaign.py [--quick] [--posts 100000] [--nodes 1,2,4] [--node-posts 5000]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from _common import ROOT, emit, environment

MB = 1024 * 1024
EVIDENCE_MARK_EVERY = 2000  # records: the driver's RSS is also sampled this often in the evidence phase


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Platform:
    """The scaled demo world served by `python -m demo_platform.scaled` in a child process."""

    def __init__(self, posts: int, seed: int = 7):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo_platform.scaled", "--posts", str(posts), "--port", str(self.port), "--seed", str(seed)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()  # "serving N posts, M media items at URL"
        if "serving" not in line:
            self.proc.kill()
            raise RuntimeError(f"the demo platform did not start: {line}{self.proc.stdout.read()[-2000:]}")
        self.items = int(line.split(" media items")[0].rsplit(" ", 1)[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        httpx.get(f"{self.base_url}/api/v1/search", params={"q": "#demoscale", "limit": 1}, timeout=120).raise_for_status()

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class MemorySampler:
    """RSS of this process (the driver) and of its child processes except the platform (Ray)."""

    def __init__(self, exclude: set[int], every_s: float = 0.5):
        self.me = psutil.Process()
        self.exclude = exclude
        self.every_s = every_s
        self.peak_driver = self.peak_ray = 0
        self.last: tuple[int, int] = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        driver = self.me.memory_info().rss
        ray_rss = 0
        for child in self.me.children(recursive=True):
            if child.pid in self.exclude:
                continue
            try:
                ray_rss += child.memory_info().rss
            except psutil.Error:
                pass  # a worker that just exited
        self.peak_driver, self.peak_ray = max(self.peak_driver, driver), max(self.peak_ray, ray_rss)
        self.last = (driver, ray_rss)
        return driver, ray_rss

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def campaign_spec(tmp: Path, base_url: str, posts: int, *, fetchers: int, detectors: int, classifier: str | None,
                  capture: bool) -> dict:
    spec: dict[str, Any] = {
        "name": f"bench-{posts}",
        "hashtags": ["demoscale"],
        "sources": [{"name": "demo", "type": "demo_api", "params": {"base_url": base_url, "page_size": 100}}],
        "window": {"start": "2026-01-01T00:00:00+00:00", "end": "2027-01-01T00:00:00+00:00"},
        "detectors": {"c2pa": True, "watermark": True},
        "storage": {"database": f"sqlite:///{tmp / 'bench.db'}", "blobs": str(tmp / "blobs")},
        "network": {"allow_networks": ["127.0.0.0/8"], "per_host_rps": 0, "per_host_concurrency": 16},
        "limits": {"max_posts": posts, "max_seconds": 6 * 3600, "max_bytes": 200_000_000_000},
        "scaling": {"fetch_actors": fetchers, "detector_actors": detectors, "capture_evidence": capture},
    }
    if classifier:
        spec["detectors"]["classifier"] = {"model": classifier}
    return spec


def run_one(platform: Platform, posts: int, *, nodes: int | None, classifier: str | None, capture: bool) -> dict[str, Any]:
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec

    cluster = None
    address = None
    per_node = max(nodes or 1, 1)
    if nodes:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(nodes):
            # Logical CPUs: one crawler, two fetchers (0.5 each) and a detector (1) fit on each node.
            cluster.add_node(num_cpus=3, resources={"crawler": 8, "detector": 1})
        cluster.wait_for_nodes(timeout=120)
        address = cluster.address
    marks: dict[Any, dict[str, float]] = {}
    evidence_marks: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="dw-bench-") as tmp, \
            MemorySampler(exclude={platform.proc.pid}) as mem:
        data = campaign_spec(Path(tmp), platform.base_url, posts, fetchers=2 * per_node, detectors=per_node,
                             classifier=classifier, capture=capture)
        expected_items = platform.items  # the platform serves exactly this campaign's posts
        t0 = time.monotonic()
        phase: dict[str, float] = {}

        def progress(counts: Counter) -> None:
            handled = counts["media_fetched"] + counts["dropped"]
            for pct in (25, 50, 75, 100):  # 100: every item handled, before evidence and Ray's shutdown
                if pct not in marks and handled >= expected_items * pct / 100:
                    driver, ray_rss = mem.sample()
                    index = run.dedup_index
                    marks[pct] = {"seconds": round(time.monotonic() - t0, 1), "driver_rss_mb": round(driver / MB, 1),
                                  "dedup_index_mb": round(index.nbytes() / MB, 1) if index is not None else None,
                                  "ray_rss_mb": round(ray_rss / MB, 1), "platform_rss_mb": round(platform.rss() / MB, 1)}
            if counts["evidence_written"] and "evidence_started" not in phase:
                phase["evidence_started"] = time.monotonic() - t0
            written = counts["evidence_written"]
            if written and written % EVIDENCE_MARK_EVERY == 0 and written not in evidence_marks:
                evidence_marks[written] = round(mem.sample()[0] / MB, 1)  # driver RSS while records are written

        run = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), address=address, progress=progress)
        report = run.run()
        seconds = time.monotonic() - t0
        driver, _ = mem.sample()
        marks["end"] = {"seconds": round(seconds, 1), "driver_rss_mb": round(driver / MB, 1),
                        "platform_rss_mb": round(platform.rss() / MB, 1)}  # Ray is shut down by now
    if cluster is not None:
        cluster.shutdown()
    c = report["counts"]
    return {
        "posts": c["posts_new"],
        "media": c["media_fetched"],
        "seconds": round(seconds, 1),
        "posts_per_s": round(c["posts_new"] / seconds, 1),
        "media_per_s": round(c["media_fetched"] / seconds, 1),
        "analysed_per_s": round((c["analysed"] + c["provenance_checked"]) / seconds, 1),
        "evidence_phase_s": round(seconds - phase["evidence_started"], 1) if "evidence_started" in phase else 0.0,
        "peak_driver_rss_mb": round(mem.peak_driver / MB, 1),
        "peak_ray_rss_mb": round(mem.peak_ray / MB, 1),
        "memory_at_pct": {str(k): v for k, v in marks.items()},
        "driver_rss_mb_by_evidence_records": {str(k): v for k, v in evidence_marks.items()},
        "counts": {k: c[k] for k in ("posts", "posts_new", "media_refs", "media_fetched", "unique", "duplicates_exact",
                                     "duplicates_near", "analysed", "provenance_checked", "bank_matches", "evidence_written",
                                     "sealed", "dropped")},
        "drops": report["drops"],
        "stages": {s: {k: v for k, v in fig.items() if k in ("in", "out", "dropped", "retries", "latency_s")}
                   for s, fig in report["stages"].items()},
        "queue_peaks": {q: v["peak"] for q, v in report["queues"].items()},
        "cluster": report["cluster"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 posts (and 100 per node count)")
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--nodes", default="", help="also run on simulated Ray nodes, e.g. 1,2,4")
    ap.add_argument("--node-posts", type=int, default=5000, help="posts per --nodes run")
    ap.add_argument("--skip-local", action="store_true", help="only the --nodes runs")
    ap.add_argument("--classifier", default=None, help="a classifier model path (default: C2PA and watermark only)")
    ap.add_argument("--capture", action="store_true", help="capture flagged posts in Chromium")
    args = ap.parse_args()
    posts = 200 if args.quick else args.posts
    node_posts = 100 if args.quick else args.node_posts
    if "DEEPWATCH_KEY_DIR" not in os.environ:  # a throwaway signing key, removed at exit
        keys = tempfile.TemporaryDirectory(prefix="dw-bench-keys-")
        os.environ["DEEPWATCH_KEY_DIR"] = keys.name
    result: dict[str, Any] = {"environment": {**environment(), "ray": __import__("ray").__version__},
                              "classifier": args.classifier, "capture": args.capture}
    if not args.skip_local:
        platform = Platform(posts)
        try:
            result["local"] = run_one(platform, posts, nodes=None, classifier=args.classifier, capture=args.capture)
        finally:
            platform.stop()
        print(f"local: {json.dumps(result['local'])}", file=sys.stderr, flush=True)
    if args.nodes:
        counts = [int(n) for n in args.nodes.split(",")]
        platform = Platform(node_posts)
        scaling = {}
        try:
            for n in counts:
                scaling[str(n)] = run_one(platform, node_posts, nodes=n, classifier=args.classifier, capture=args.capture)
                print(f"{n} node(s): {json.dumps(scaling[str(n)])}", file=sys.stderr, flush=True)
        finally:
            platform.stop()
        first = scaling[str(counts[0])]["posts_per_s"]
        result["nodes"] = scaling
        result["nodes_speedup_vs_1"] = {n: round(s["posts_per_s"] / first, 2) if first else None for n, s in scaling.items()}
        result["nodes_note"] = (f"{os.cpu_count()} CPU cores shared by every simulated node: more nodes add actors and "
                                "processes, not compute; these figures show the overhead, not a speed-up")
    emit(result)


if __name__ == "__main__":
    main()
