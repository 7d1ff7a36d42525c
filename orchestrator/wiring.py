"""Ray wiring: where stages become actors and resources are declared.

Stages know nothing of Ray; this module is the only place that says how many of each run,
which need a GPU, and how failures are retried. Ray is imported lazily so that the detector
stages run on machines without it (a GPU box for benchmarks, say).
"""
from __future__ import annotations

import os
from typing import Any

from orchestrator.stages import CaptureStage, CrawlStage, DetectStage, FetchStage


def init_ray(address: str | None) -> dict[str, Any]:
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # A laptop or a CI box: a private local cluster. Extra logical CPUs let the crawler,
            # fetcher, detector and browser actors coexist on a 2-core machine; the OS shares the
            # real cores between them.
            ray.init(
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
    return _actor(CrawlStage, num_cpus=0.5, max_restarts=2, max_task_retries=2).remote(*args)


def fetch_actor(*args: Any) -> Any:
    return _actor(FetchStage, num_cpus=0.5, max_restarts=2, max_task_retries=2).remote(*args)


def detector_actor(*args: Any) -> Any:
    import ray

    # Ask for a GPU when the cluster has one; otherwise the same code runs on CPU.
    has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1} if has_gpu else {"num_cpus": 1}
    return _actor(DetectStage, max_restarts=2, max_task_retries=2, **options).remote(*args)


def capture_actor(*args: Any, **kwargs: Any) -> Any:
    return _actor(CaptureStage, num_cpus=0.5, max_restarts=1, max_task_retries=1).remote(*args, **kwargs)
