"""Node placement on a Ray cluster, and cluster.yaml as a real Ray cluster launcher config.

The cluster tests start several Ray nodes on this machine (`ray.cluster_utils.Cluster`) laid out
as cluster.yaml lays them out on AWS: a head without custom resources, two CPU nodes offering
"crawler" and one node offering "detector" with a (logical) GPU. Actors are made through
`orchestrator.wiring`, exactly as a campaign makes them, and do real work against a loopback
platform; each actor's node is read from Ray's state API. A temporary folder stands in for the
shared blob store (EFS on AWS): every node on this machine sees it.
"""
from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import pytest
import yaml

from orchestrator import wiring
from orchestrator.stages import FetchPolicySpec, MediaRecord
from orchestrator.wiring import (
    CRAWLER_RESOURCE,
    CRAWLER_SHARE,
    DETECTOR_RESOURCE,
    PLACEMENT_ENV,
    PlacementError,
    crawler_options,
    decide_placement,
    detector_options,
    placement_mode,
)
from tests.fakeplatform import FakePlatform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
LOOPBACK = FetchPolicySpec(allow_networks=("127.0.0.0/8",), timeout_s=10)
NO_MODEL = {"classifier_model": None}  # hashing, C2PA and watermark only: no weights to load
GPUS_PER_INSTANCE = {"g5.xlarge": 1, "g5.12xlarge": 4, "g6.xlarge": 1, "p4d.24xlarge": 8, "p5.48xlarge": 8}
NODE_WAIT_S = 90  # a node joins (or an actor is placed) well within this on a 2-core machine


# -- cluster.yaml ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text("utf-8"))


def all_commands(config: dict) -> list[str]:
    cmds = [c for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                          "head_start_ray_commands", "worker_start_ray_commands") for c in config.get(key, [])]
    for node_type in config["available_node_types"].values():
        cmds += node_type.get("worker_setup_commands", [])
    return cmds


def test_cluster_yaml_is_valid_for_ray_up(cluster_config):
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text("utf-8"))
    jsonschema.validate(cluster_config, schema)
    # The checks `ray up` makes before it talks to the cloud: the provider's defaults filled in,
    # head_node_type among the node types, the groups' minimum within max_workers.
    validate_config(prepare_config(copy.deepcopy(cluster_config)))


def test_cluster_yaml_node_groups_follow_the_placement_rules(cluster_config):
    import ray

    types = cluster_config["available_node_types"]
    head = types[cluster_config["head_node_type"]]
    assert head["resources"]["CPU"] == 0  # no actor runs beside the driver
    assert CRAWLER_RESOURCE not in head["resources"] and DETECTOR_RESOURCE not in head["resources"]

    crawlers = [t for t in types.values() if CRAWLER_RESOURCE in t["resources"]]
    detectors = [t for t in types.values() if DETECTOR_RESOURCE in t["resources"]]
    assert len(crawlers) == 1 and len(detectors) == 1
    (crawler,), (detector,) = crawlers, detectors
    assert "GPU" not in crawler["resources"] and crawler["min_workers"] >= 1
    # Actors ask for a fraction of "crawler"; the node's CPUs are what limit them.
    assert crawler["resources"][CRAWLER_RESOURCE] / CRAWLER_SHARE >= crawler["resources"]["CPU"] / 0.5
    # One detector actor per GPU: "detector" counts the instance type's GPUs.
    gpus = GPUS_PER_INSTANCE[detector["node_config"]["InstanceType"]]
    assert detector["resources"]["GPU"] == detector["resources"][DETECTOR_RESOURCE] == gpus
    assert detector["min_workers"] == 0
    assert cluster_config["max_workers"] == sum(t.get("max_workers", 0) for t in types.values() if t is not head)

    # The head's start flags say what its node type says.
    (start,) = [c for c in cluster_config["head_start_ray_commands"] if "ray start" in c]
    flags = json.loads(re.search(r"--resources='(\{.*?\})'", start).group(1))
    assert flags == {k: v for k, v in head["resources"].items() if k not in ("CPU", "GPU")}
    assert "--num-cpus=0" in start

    commands = all_commands(cluster_config)
    # The detector group scales from zero, so actors must ask for it before any node is up.
    assert any(f"{PLACEMENT_ENV}=cluster" in c for c in commands)
    # Client and cluster run the same Ray.
    pins = {m for c in commands for m in re.findall(r'"ray\[default\]==([\w.]+)"', c)}
    assert pins == {ray.__version__}


# -- the placement rules alone -----------------------------------------------------------------
def test_a_laptop_gets_the_options_it_always_had():
    laptop = decide_placement({"CPU": 4.0, "memory": 8e9}, placement_mode({}))
    assert crawler_options(laptop) == {"num_cpus": 0.5}
    assert detector_options(laptop) == {"num_cpus": 1}
    with_gpu = decide_placement({"CPU": 8.0, "GPU": 1.0}, "auto")
    assert detector_options(with_gpu) == {"num_cpus": 1, "num_gpus": 1}


def test_cluster_mode_asks_for_groups_the_autoscaler_has_not_started():
    only_crawlers_up = {"CPU": 8.0, CRAWLER_RESOURCE: 8.0}
    assert detector_options(decide_placement(only_crawlers_up, "auto")) == {"num_cpus": 1}
    placed = decide_placement(only_crawlers_up, "cluster")
    assert detector_options(placed) == {"num_cpus": 1, "num_gpus": 1, "resources": {DETECTOR_RESOURCE: 1}}
    assert crawler_options(placed) == {"num_cpus": 0.5, "resources": {CRAWLER_RESOURCE: CRAWLER_SHARE}}
    assert crawler_options(decide_placement({"CPU": 8.0, "GPU": 1.0, DETECTOR_RESOURCE: 1.0}, "local")) == {"num_cpus": 0.5}


def test_a_misspelt_placement_setting_is_named():
    with pytest.raises(PlacementError, match=PLACEMENT_ENV):
        placement_mode({PLACEMENT_ENV: "gpus-please"})
    assert placement_mode({PLACEMENT_ENV: " Cluster "}) == "cluster"


# -- several nodes on this machine -------------------------------------------------------------
class FakeCluster:
    """The running Cluster and its nodes by role (tests replace the detector node)."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        # The dashboard serves Ray's state API, which says where each actor lives.
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True, "dashboard_port": 0})
        self.crawlers = [self.cluster.add_node(num_cpus=2, resources={CRAWLER_RESOURCE: 8}) for _ in range(2)]
        self.detector = self.add_detector_node()

    def add_detector_node(self):
        node = self.cluster.add_node(num_cpus=2, num_gpus=1, resources={DETECTOR_RESOURCE: 1})
        self.cluster.wait_for_nodes(timeout=NODE_WAIT_S)
        return node

    def remove_detector_node(self) -> None:
        self.cluster.remove_node(self.detector)
        self.detector = None
        wait_until(lambda: _alive_resource(DETECTOR_RESOURCE) == 0, "the detector node to leave the cluster")

    @property
    def state_api(self) -> str:
        return "http://" + self.cluster.head_node.address_info["webui_url"]


def _alive_resource(name: str) -> float:
    import ray

    return ray.cluster_resources().get(name, 0)


def wait_until(check, what: str, timeout_s: float = NODE_WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def fake_cluster():
    wiring.shutdown_ray()  # a Ray left connected by another module would be the wrong cluster
    fc = FakeCluster()
    try:
        yield fc
    finally:
        wiring.shutdown_ray()
        fc.cluster.shutdown()


@pytest.fixture
def ray_on_cluster(fake_cluster, monkeypatch):
    monkeypatch.delenv(PLACEMENT_ENV, raising=False)  # "auto": follow what the nodes advertise
    info = wiring.init_ray(fake_cluster.cluster.address)
    return fake_cluster, info


def actor_state(fc: FakeCluster, actor):
    from ray.util.state import get_actor

    return get_actor(actor._actor_id.hex(), address=fc.state_api, timeout=30)


def node_of(fc: FakeCluster, actor) -> str:
    """The node an actor lives on, once it is alive there."""
    def alive_on():
        state = actor_state(fc, actor)
        return state.node_id if state is not None and state.state == "ALIVE" else None

    return wait_until(alive_on, f"actor {actor._actor_id.hex()} to be alive")


def test_actors_run_on_their_node_groups(ray_on_cluster, tmp_path):
    import ray

    fc, info = ray_on_cluster
    assert info["nodes"] == 4 and info["gpus"] == 1
    assert info["placement"] == {"mode": "auto", "crawler_nodes": True, "detector_nodes": True, "detector_gpu": True}
    blobs = str(tmp_path / "blobs")  # the shared blob store: every node here sees this folder

    with FakePlatform(page_size=3) as fake:
        crawler = wiring.crawler_actor("demo", "demo_api", {"base_url": fake.base_url, "page_size": 3}, LOOPBACK, blobs)
        fetcher = wiring.fetch_actor(LOOPBACK, blobs)
        detector = wiring.detector_actor(dict(NO_MODEL), blobs)
        capture = wiring.capture_actor(blobs, LOOPBACK, archive=False)

        # One post through every stage: crawled, its media fetched, judged, its page captured.
        result = ray.get(crawler.page.remote("선거", None), timeout=120)
        assert result.error is None, result.error
        post = next(p for p in result.page.posts if p.media)
        records = ray.get(fetcher.run.remote(list(post.media)), timeout=120)
        record = next(r for r in records if isinstance(r, MediaRecord))
        (analysis,) = ray.get(detector.run.remote([(record.sha256, record.kind, record.mime)]), timeout=120)
        assert analysis.sha256 == record.sha256 and analysis.verdict.band
        ((shot, _no_archive),) = ray.get(capture.run.remote([(post.url, [])]), timeout=120)
        assert shot.status == 200
        ray.get(capture.close.remote(), timeout=60)

    # Bytes written on one node were read on another: the blob store is shared.
    assert (Path(blobs) / shot.screenshot_sha256[:2] / shot.screenshot_sha256[2:4] / shot.screenshot_sha256).exists()
    crawler_nodes = {n.node_id for n in fc.crawlers}
    assert node_of(fc, crawler) in crawler_nodes
    assert node_of(fc, fetcher) in crawler_nodes
    assert node_of(fc, capture) in crawler_nodes
    assert node_of(fc, detector) == fc.detector.node_id
    # The head (no custom resources) runs none of them.
    head = fc.cluster.head_node.node_id
    assert head not in {node_of(fc, a) for a in (crawler, fetcher, capture, detector)}
    for actor in (crawler, fetcher, capture, detector):
        ray.kill(actor)


def test_a_detector_comes_back_on_a_new_gpu_node(ray_on_cluster, tmp_path):
    import ray

    fc, _ = ray_on_cluster
    detector = wiring.detector_actor(dict(NO_MODEL), str(tmp_path / "blobs"))
    described = ray.get(detector.describe.remote(), timeout=120)
    assert node_of(fc, detector) == fc.detector.node_id

    fc.remove_detector_node()  # the GPU machine is gone (a spot reclaim, say)
    replacement = fc.add_detector_node()
    fc.detector = replacement
    # Ray restarts the actor (max_restarts) where "detector" is offered again, and answers.
    assert ray.get(detector.describe.remote(), timeout=180) == described
    assert node_of(fc, detector) == replacement.node_id
    assert actor_state(fc, detector).num_restarts >= 1
    ray.kill(detector)


def test_cluster_mode_waits_for_the_gpu_group_to_scale_up(ray_on_cluster, tmp_path, monkeypatch):
    import ray

    fc, _ = ray_on_cluster
    fc.remove_detector_node()  # the GPU group scaled to zero
    monkeypatch.setenv(PLACEMENT_ENV, "cluster")
    detector = wiring.detector_actor(dict(NO_MODEL), str(tmp_path / "blobs"))
    ref = detector.describe.remote()
    ready, _ = ray.wait([ref], timeout=5)
    assert not ready  # not started on a CPU node: it waits for a GPU node (the autoscaler's cue)
    assert actor_state(fc, detector).state in ("DEPENDENCIES_UNREADY", "PENDING_CREATION")

    fc.detector = fc.add_detector_node()  # what the autoscaler does for the pending actor
    assert ray.get(ref, timeout=180)
    assert node_of(fc, detector) == fc.detector.node_id
    ray.kill(detector)
