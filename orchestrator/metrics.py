"""Per-stage figures of one campaign run, as Prometheus metrics and as the report's "stages".

Every stage (crawl, fetch, dedup, detect, evidence, capture) counts what came in, what went
out, what it dropped and why, and how often it retried; its calls are timed into a latency
histogram; the driver's queues and in-flight calls are gauges. One registry per run, so two runs
in one process (tests, `campaign resume` after `run`) never share or double-count a series.

What each stage counts (the unit is one item unless said otherwise):

  crawl     in: posts the sources returned; out: posts stored (in window, under the limit);
            dropped: posts outside the window or over the limit, and failed pages (one each);
            retries: pages asked again after their crawler died; latency: one page call
  fetch     in: media URLs queued for fetching; out: media fetched and probed;
            dropped: fetch and probe failures, and URLs left queued at a byte or time limit;
            latency: one batch call
  dedup     in: fetched media; out: items passed on to detectors (new, or near-duplicates for
            their provenance checks); dropped: exact duplicates, known fakes judged by the bank
  detect    in: items queued for detectors; out: analyses saved; dropped: items of a batch whose
            detector failed; errors: detector outcomes "error" (the item is still judged);
            latency: one batch call
  evidence  in: new evidence records; out: records sealed; dropped: seals that failed;
            latency: writing and sealing one record
  capture   in: flagged posts sent to the browser; out: posts captured; dropped: capture and
            archive failures; latency: one chunk of posts

So for fetch, dedup and detect, at the end of a run, in == out + dropped (nothing is in flight),
and the evidence stage's in == out + dropped. The database writer's retries are counted under
the pseudo-stage "db".
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter as PromCounter, Gauge, Histogram

STAGES = ("crawl", "fetch", "dedup", "detect", "evidence", "capture")
QUEUES = ("fetch", "detect", "provenance", "parked_pages", "inflight_crawl", "inflight_fetch", "inflight_detect")
# Drops are recorded by the stage that made them; a few stages of the report are parts of one
# pipeline stage here (probing is the second half of fetching, sealing the end of evidence).
_DROP_STAGE = {"probe": "fetch", "seal": "evidence"}
# Latency buckets from a few ms (a dedup decision) to minutes (a cold model's first batch).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf)
DEFAULT_HOST = "127.0.0.1"  # the exporter is not for the open network unless asked for


class CampaignMetrics:
    """The figures of one run; cheap to update from the driver's loop."""

    def __init__(self, campaign: str):
        self.campaign = campaign
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["campaign", "stage"]
        self._in = PromCounter("deepwatch_stage_in", "Items that entered a stage", labels, registry=self.registry)
        self._out = PromCounter("deepwatch_stage_out", "Items a stage passed on or finished", labels, registry=self.registry)
        self._dropped = PromCounter("deepwatch_stage_dropped", "Items a stage dropped, by reason", labels + ["reason"],
                                    registry=self.registry)
        self._retries = PromCounter("deepwatch_stage_retries", "Calls a stage made again after a failure", labels,
                                    registry=self.registry)
        self._errors = PromCounter("deepwatch_stage_errors", "Items handled with an error outcome (still passed on)",
                                   labels + ["reason"], registry=self.registry)
        self._latency = Histogram("deepwatch_stage_latency_seconds", "Time of one stage call", labels,
                                  buckets=_BUCKETS, registry=self.registry)
        self._queue = Gauge("deepwatch_queue_depth", "Items waiting in a driver queue, or calls in flight",
                            ["campaign", "queue"], registry=self.registry)
        self._queue_peak = Gauge("deepwatch_queue_depth_peak", "Highest depth a queue reached in this run",
                                 ["campaign", "queue"], registry=self.registry)
        # The same figures kept plainly for the report (reading them back out of prometheus_client
        # objects means private attributes).
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {s: Counter() for s in (*STAGES, "db")}
        self.drops: dict[str, Counter[str]] = defaultdict(Counter)
        self.errors: dict[str, Counter[str]] = defaultdict(Counter)
        self.latencies: dict[str, list[float]] = defaultdict(list)  # [count, sum, max] per stage
        self.depth: dict[str, int] = {q: 0 for q in QUEUES}
        self.peak: dict[str, int] = {q: 0 for q in QUEUES}
        self._server: Any = None
        self._thread: Any = None
        for stage in (*STAGES, "db"):  # every series exists from the start, at zero
            for c in (self._in, self._out, self._retries):
                c.labels(campaign, stage)
        for q in QUEUES:
            self._queue.labels(campaign, q).set(0)
            self._queue_peak.labels(campaign, q).set(0)

    # -- updates -------------------------------------------------------------------------------
    def came_in(self, stage: str, n: int = 1) -> None:
        if n:
            self._in.labels(self.campaign, stage).inc(n)
            with self._lock:
                self.counts[stage]["in"] += n

    def went_out(self, stage: str, n: int = 1) -> None:
        if n:
            self._out.labels(self.campaign, stage).inc(n)
            with self._lock:
                self.counts[stage]["out"] += n

    def dropped(self, stage: str, reason: str, n: int = 1) -> None:
        stage = _DROP_STAGE.get(stage, stage)
        self._dropped.labels(self.campaign, stage, reason).inc(n)
        with self._lock:
            self.counts[stage]["dropped"] += n
            self.drops[stage][reason] += n

    def errored(self, stage: str, reason: str, n: int = 1) -> None:
        self._errors.labels(self.campaign, stage, reason).inc(n)
        with self._lock:
            self.errors[stage][reason] += n

    def retried(self, stage: str, n: int = 1) -> None:
        self._retries.labels(self.campaign, stage).inc(n)
        with self._lock:
            self.counts[stage]["retries"] += n

    def observe(self, stage: str, seconds: float) -> None:
        self._latency.labels(self.campaign, stage).observe(seconds)
        with self._lock:
            agg = self.latencies[stage]
            if not agg:
                agg.extend([0, 0.0, 0.0])
            agg[0] += 1
            agg[1] += seconds
            agg[2] = max(agg[2], seconds)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - t0)

    def queue_depths(self, **depths: int) -> None:
        for queue, depth in depths.items():
            self._queue.labels(self.campaign, queue).set(depth)
            with self._lock:
                self.depth[queue] = depth
                if depth > self.peak[queue]:
                    self.peak[queue] = depth
                    self._queue_peak.labels(self.campaign, queue).set(depth)

    # -- read-outs -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The report's "stages" section (and the stats file)."""
        with self._lock:
            stages: dict[str, Any] = {}
            for stage in (*STAGES, "db"):
                c = self.counts[stage]
                entry: dict[str, Any] = {
                    "in": c["in"], "out": c["out"], "dropped": c["dropped"], "retries": c["retries"],
                    "dropped_by_reason": dict(sorted(self.drops[stage].items())),
                }
                if self.errors.get(stage):
                    entry["errors_by_reason"] = dict(sorted(self.errors[stage].items()))
                agg = self.latencies.get(stage)
                if agg:
                    entry["latency_s"] = {"calls": agg[0], "mean": round(agg[1] / agg[0], 4), "max": round(agg[2], 4),
                                          "total": round(agg[1], 3), **self._quantiles(stage)}
                stages[stage] = entry
            return {"stages": stages, "queues": {q: {"now": self.depth[q], "peak": self.peak[q]} for q in QUEUES}}

    def _quantiles(self, stage: str) -> dict[str, float | None]:
        """p50 and p95 from the histogram's buckets (an upper bound: the bucket's edge)."""
        hist = self._latency.labels(self.campaign, stage)
        counts = [b.get() for b in hist._buckets]  # noqa: SLF001 - per-bucket (not cumulative) counts
        total = sum(counts)
        out: dict[str, float | None] = {}
        for name, q in (("p50", 0.5), ("p95", 0.95)):
            seen = 0.0
            out[name] = None
            for edge, n in zip(_BUCKETS, counts):
                seen += n
                if total and seen >= q * total:
                    out[name] = edge if edge != math.inf else None
                    break
        return out

    # -- the HTTP exporter ---------------------------------------------------------------------
    def serve(self, port: int, host: str = DEFAULT_HOST) -> int:
        """Export /metrics on host:port (port 0: any free one); returns the port."""
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise RuntimeError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
