"""Ray wiring: where stages become actors and resources are declared.

Stages know nothing of Ray; this module is the only place that says how many of each run,
which need a GPU, where they are placed, and how failures are retried. Ray is imported lazily
so that the detector stages run on machines without it (a GPU box for benchmarks, say).

Placement. On a cluster made from `cluster.yaml`, CPU worker nodes advertise the custom resource
"crawler" and GPU worker nodes "detector" (one per GPU). Crawler, fetch and capture actors then
ask for a small share of "crawler", so they land on the CPU nodes (and leave the GPUs alone);
detector actors ask for one "detector" (and one GPU), so they land where the GPUs are. On a
laptop nothing advertises those resources and actors ask for CPUs (and a GPU if there is one)
only, exactly as before.

Which resources to ask for is read from `ray.cluster_resources()`: what the live nodes offer.
A cluster whose GPU group scales from zero offers no "detector" until the autoscaler has started
a GPU node, and the autoscaler starts one only for an actor that asks for it; so such a cluster
sets DEEPWATCH_PLACEMENT=cluster (cluster.yaml does, on the head) to ask for the node groups
whether or not their nodes are up yet.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from orchestrator.stages import CaptureStage, CrawlStage, DetectStage, FetchStage

CRAWLER_RESOURCE = "crawler"  # advertised by the CPU worker nodes (cluster.yaml: cpu_crawler)
DETECTOR_RESOURCE = "detector"  # advertised by the GPU worker nodes, one per GPU (gpu_detector)
# A crawl, fetch or capture actor asks for this much "crawler": a fraction, so that one node
# holds many of them and their num_cpus decides how many fit, while the resource still keeps
# them off nodes that do not advertise it (the head, the GPU nodes).
CRAWLER_SHARE = 0.1
PLACEMENT_ENV = "DEEPWATCH_PLACEMENT"
PLACEMENT_MODES = ("auto", "cluster", "local")


class PlacementError(RuntimeError):
    """The placement setting is not one this module knows (a RuntimeError, so the CLI prints it)."""


@dataclass(frozen=True)
class Placement:
    """Which node groups actors are pinned to, and whether detectors get a GPU."""

    crawler_nodes: bool  # crawl / fetch / capture actors ask for CRAWLER_SHARE of "crawler"
    detector_nodes: bool  # detector actors ask for one "detector"
    detector_gpu: bool  # detector actors ask for one GPU

    def describe(self) -> dict[str, Any]:
        return {"crawler_nodes": self.crawler_nodes, "detector_nodes": self.detector_nodes, "detector_gpu": self.detector_gpu}


def placement_mode(environ: Mapping[str, str] | None = None) -> str:
    """DEEPWATCH_PLACEMENT: auto (default: follow what the live nodes advertise), cluster (always
    ask for the crawler and detector node groups: an autoscaling cluster), local (never)."""
    value = (os.environ if environ is None else environ).get(PLACEMENT_ENV, "").strip().lower() or "auto"
    if value not in PLACEMENT_MODES:
        raise PlacementError(f"{PLACEMENT_ENV} must be one of {', '.join(PLACEMENT_MODES)}; got {value!r}")
    return value


def decide_placement(resources: Mapping[str, float], mode: str = "auto") -> Placement:
    """Placement from the cluster's resources (as `ray.cluster_resources()` reports them)."""
    has_gpu = resources.get("GPU", 0) >= 1
    if mode == "cluster":
        # The GPU group may have no node yet; detector nodes always carry GPUs (cluster.yaml).
        return Placement(crawler_nodes=True, detector_nodes=True, detector_gpu=True)
    if mode == "local":
        return Placement(crawler_nodes=False, detector_nodes=False, detector_gpu=has_gpu)
    if mode != "auto":
        raise PlacementError(f"unknown placement mode {mode!r}; expected one of {', '.join(PLACEMENT_MODES)}")
    return Placement(
        crawler_nodes=resources.get(CRAWLER_RESOURCE, 0) > 0,
        detector_nodes=resources.get(DETECTOR_RESOURCE, 0) > 0,
        detector_gpu=has_gpu,
    )


def crawler_options(placement: Placement, num_cpus: float = 0.5) -> dict[str, Any]:
    """Ray resource options for a crawl, fetch or capture actor."""
    options: dict[str, Any] = {"num_cpus": num_cpus}
    if placement.crawler_nodes:
        options["resources"] = {CRAWLER_RESOURCE: CRAWLER_SHARE}
    return options


def detector_options(placement: Placement) -> dict[str, Any]:
    """Ray resource options for a detector actor: a GPU when there is one, else the same code on CPU."""
    options: dict[str, Any] = {"num_cpus": 1}
    if placement.detector_gpu:
        options["num_gpus"] = 1
    if placement.detector_nodes:
        options["resources"] = {DETECTOR_RESOURCE: 1}
    return options


def current_placement() -> Placement:
    import ray

    return decide_placement(ray.cluster_resources(), placement_mode())


def init_ray(address: str | None) -> dict[str, Any]:
    import ray

    mode = placement_mode()  # a misspelt setting fails here, before any actor starts
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # A laptop or a CI box: a private local cluster. Extra logical CPUs let the crawler,
            # fetcher, detector and browser actors coexist on a 2-core machine; the OS shares the
            # real cores between them. address="local" always starts a new one: without it Ray
            # joins any local cluster it finds, e.g. the orphaned one of a killed run.
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, 4),
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    resources = ray.cluster_resources()
    return {
        "address": address or "local",
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
        "cpus": resources.get("CPU", 0),
        "gpus": resources.get("GPU", 0),
        "placement": {"mode": mode, **decide_placement(resources, mode).describe()},
    }


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _actor(cls: type, **options: Any) -> Any:
    import ray

    return ray.remote(cls).options(**options)


def crawler_actor(*args: Any) -> Any:
    # A crawler holds a client (and maybe a browser); restart it if it dies, and rerun the page
    # it was asked for: pages are keyed by cursor and writes are idempotent, so a rerun is safe.
    options = crawler_options(current_placement())
    return _actor(CrawlStage, max_restarts=2, max_task_retries=2, **options).remote(*args)


def fetch_actor(*args: Any) -> Any:
    options = crawler_options(current_placement())
    return _actor(FetchStage, max_restarts=2, max_task_retries=2, **options).remote(*args)


def detector_actor(*args: Any) -> Any:
    options = detector_options(current_placement())
    return _actor(DetectStage, max_restarts=2, max_task_retries=2, **options).remote(*args)


def capture_actor(*args: Any, **kwargs: Any) -> Any:
    options = crawler_options(current_placement())
    return _actor(CaptureStage, max_restarts=1, max_task_retries=1, **options).remote(*args, **kwargs)


def index_actor(**kwargs: Any) -> Any:
    """The near-duplicate index (orchestrator.dedup.PerceptualIndex) served from one actor, so many
    workers add to and query the same index: each call is answered in the order the actor receives
    it, so an add that has returned is seen by every later query from any worker. Not restarted:
    an index rebuilt empty would silently answer "no match"; whoever holds the handle rebuilds it
    from the database (Store.perceptual_hashes) instead. Region verification (rule 3) needs the
    blob store, so a served index answers by rules 1 and 2."""
    from orchestrator.dedup import PerceptualIndex

    return _actor(PerceptualIndex, max_restarts=0, num_cpus=0.5).remote(**kwargs)
