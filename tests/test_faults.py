"""Faults mid-campaign: a detector actor killed, the evidence writer (the driver) killed while it
writes evidence, a whole simulated node removed from a Ray cluster.

(A crawler and a fetcher killed, and the driver killed mid-crawl, are in test_resume.py; a
database that goes away for a while is in test_writer_retry.py.)

After each fault the same things must hold: every post and media item the demo platform served
is in the database exactly once, every fetch owed is done or a counted drop, every analysed item
has its detections exactly once, every flagged item in every post it appeared in has exactly one
evidence record with one seal that verifies, and the run report's stage counts reconcile
(nothing entered a stage without leaving it or being counted as dropped).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from orchestrator.campaign import FLAGGED, CampaignRun
from orchestrator.spec import parse_spec
from storage import models as m
from storage.blobs import BlobStore
from storage.db import Store
from tests.test_resume import assert_complete, served_posts, spec_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def platform():
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world

    demo = DemoPlatform(build_world(seed=7, n_posts=40))
    demo.start()
    yield demo
    demo.stop()


@pytest.fixture(autouse=True)
def key_dir(tmp_path, monkeypatch):
    path = tmp_path / "keys"
    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(path))
    return path


def assert_evidence_once(db_url: str, blobs: str, campaign: str, captured: bool) -> int:
    """One evidence record per flagged item per post, each with its custody events once, one
    seal, and a clean `verify`. Returns the number of records."""
    from evidence.custody import verify_chain
    from evidence.verify import verify_all
    from storage.queries import flagged_sightings

    store = Store(db_url)
    try:
        campaign_id = store.get_campaign(campaign).id
        expected = Counter((r["media_sha256"], r["post_pk"]) for r in flagged_sightings(store, campaign_id, FLAGGED))
        assert expected, "the demo world has flagged items"
        with store.session() as s:
            evidence = s.exec(select(m.Evidence).where(m.Evidence.campaign_id == campaign_id)).all()
            events = Counter((e.evidence_id, e.action) for e in s.exec(select(m.CustodyEvent)).all())
            seals = Counter(seal.evidence_id for seal in s.exec(select(m.Seal)).all())
        assert Counter((e.media_sha256, e.post_pk) for e in evidence) == expected
        for e in evidence:
            assert seals[e.id] == 1, f"evidence {e.id} sealed {seals[e.id]} times"
            assert events[(e.id, "analysed")] == 1 and events[(e.id, "sealed")] == 1, e.id
            if captured:
                assert events[(e.id, "captured")] == 1 and e.screenshot_sha256, e.id
        assert verify_chain(store) == []
        reports = verify_all(store, BlobStore(blobs))
        assert [r.status for r in reports] == ["ok"] * len(evidence), [(r.evidence_id, r.problems, r.warnings) for r in reports]
        return len(evidence)
    finally:
        store.close()


def assert_report_reconciles(report: dict) -> None:
    stages = report["stages"]
    for stage in ("fetch", "dedup", "detect", "evidence"):
        s = stages[stage]
        assert s["in"] == s["out"] + s["dropped"], (stage, s)
    c = report["counts"]
    assert stages["fetch"]["out"] == stages["dedup"]["in"] == c["media_fetched"]
    assert stages["detect"]["out"] == c["analysed"] + c["provenance_checked"]
    assert stages["evidence"]["out"] == c["sealed"]
    assert all(q["now"] == 0 for q in report["queues"].values()), report["queues"]


def run_campaign(data: dict, **kwargs) -> tuple[CampaignRun, dict]:
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), **kwargs)
    return campaign, campaign.run()


# -- a detector actor --------------------------------------------------------------------------
def test_killed_detector_is_restarted_and_its_batch_redone(platform, tmp_path):
    import ray

    killed: list[int] = []
    holder: dict = {}

    def chaos(counts: Counter) -> None:
        campaign = holder.get("run")
        # Killed once it has judged something, while media is still arriving: its in-flight
        # batch is lost with it, and Ray (max_restarts, max_task_retries) redoes the batch.
        if campaign is not None and counts["analysed"] >= 1 and not killed:
            killed.append(counts["analysed"])
            ray.kill(campaign.detector_pool[0], no_restart=False)

    data = spec_data(tmp_path, platform.base_url, name="detector-kill", scaling={"capture_evidence": False,
                                                                                  "detector_actors": 1})
    data["sources"][0]["params"]["page_size"] = 3
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), progress=chaos)
    holder["run"] = campaign
    report = campaign.run()
    assert killed, "the detector was killed mid-run"
    assert report["counts"]["analysed"] > killed[0]  # the restarted actor went on judging
    assert report["stages"]["detect"]["dropped"] == 0  # the lost batch was redone, not dropped
    expect = served_posts(platform.world)
    assert report["counts"]["posts_new"] == len(expect)
    assert_complete(data["storage"]["database"], platform.world, expect)
    assert_evidence_once(data["storage"]["database"], data["storage"]["blobs"], "detector-kill", captured=False)
    assert_report_reconciles(report)


def test_detector_gone_for_good_its_items_are_judged_on_resume(platform, tmp_path):
    """No restart left: the items of the failed batches are counted drops, stay unanalysed in
    the database, and the next run of the campaign judges them, once."""
    import ray

    killed: list[bool] = []
    holder: dict = {}

    def chaos(counts: Counter) -> None:
        campaign = holder.get("run")
        if campaign is not None and counts["media_fetched"] >= 2 and not killed:
            killed.append(True)
            ray.kill(campaign.detector_pool[0], no_restart=True)

    data = spec_data(tmp_path, platform.base_url, name="detector-gone")
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), progress=chaos)
    holder["run"] = campaign
    first = campaign.run()
    failed = first["stages"]["detect"]["dropped_by_reason"].get("detector failed", 0)
    assert failed >= 1 and first["counts"]["analysed"] + first["counts"]["provenance_checked"] + failed == \
        first["stages"]["detect"]["in"]
    assert_report_reconciles(first)

    _, second = run_campaign(data)  # the same campaign again: `campaign resume` does exactly this
    assert second["stages"]["detect"]["in"] == failed  # only what the dead detector owed
    assert second["counts"]["analysed"] + second["counts"]["provenance_checked"] == failed
    assert second["counts"]["posts_new"] == 0 and second["counts"]["media_fetched"] == 0
    assert_complete(data["storage"]["database"], platform.world, served_posts(platform.world))
    assert_evidence_once(data["storage"]["database"], data["storage"]["blobs"], "detector-gone", captured=False)
    assert_report_reconciles(second)


# -- the evidence writer (the driver) ----------------------------------------------------------
def _evidence_counts(db: Path) -> tuple[int, int]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("select count(*) from evidence").fetchone()[0], con.execute("select count(*) from seal").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return 0, 0


def test_driver_killed_while_writing_evidence_resumes_each_record_once(tmp_path, key_dir):
    """Evidence is written by the driver itself: SIGKILL it after it has written evidence records
    but before it has sealed them (it is capturing their pages in Chromium), then
    `deepwatch campaign resume`: each record is captured, sealed and logged exactly once."""
    from demo_platform.cache import load_world

    with socket.socket() as sock:  # the embedded platform must come back on the same port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = spec_data(tmp_path, "embedded", name="evidence-kill", demo_platform={"seed": 7, "posts": 40, "port": port},
                     scaling={"capture_evidence": True})
    spec_file = tmp_path / "campaign.yaml"
    spec_file.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    db = tmp_path / "dw.db"
    exe = [sys.executable, "-m", "orchestrator.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DEEPWATCH_KEY_DIR": str(key_dir)}

    proc = subprocess.Popen([*exe, "campaign", "run", str(spec_file), "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 200
        first_evidence = None
        while time.monotonic() < deadline and proc.poll() is None:
            evidence, seals = _evidence_counts(db)
            if evidence >= 1 and first_evidence is None:
                first_evidence = time.monotonic()
            # A second into the evidence phase: the records are written and Chromium is capturing
            # their pages (seconds per post); none is sealed yet.
            if first_evidence is not None and time.monotonic() - first_evidence >= 1.0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and its browser, at once
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    evidence_at_kill, seals_at_kill = _evidence_counts(db)
    assert evidence_at_kill >= 1 and seals_at_kill < evidence_at_kill, "killed in the evidence phase"

    report_path = tmp_path / "report.json"
    resumed = subprocess.run([*exe, "campaign", "resume", "evidence-kill", "--db", f"sqlite:///{db}", "--no-progress",
                              "--report", str(report_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["counts"]["evidence_resumed"] >= evidence_at_kill - seals_at_kill  # left unsealed, finished now
    world = load_world(7, 40, tmp_path / "demo-world")
    assert_complete(f"sqlite:///{db}", world, served_posts(world))
    records = assert_evidence_once(f"sqlite:///{db}", data["storage"]["blobs"], "evidence-kill", captured=True)
    assert report["counts"]["sealed"] == records - seals_at_kill
    assert_report_reconciles(report)
    stats = json.loads((tmp_path / "report.stats.json").read_text())  # saved beside the report
    assert stats["stages"] == report["stages"]


# -- a whole node ------------------------------------------------------------------------------
CRAWLER, DETECTOR = "crawler", "detector"


@pytest.fixture
def cluster(monkeypatch):
    """Head (no actors), two crawler nodes and two detector nodes, as cluster.yaml lays them out."""
    from ray.cluster_utils import Cluster

    from orchestrator import wiring

    monkeypatch.delenv(wiring.PLACEMENT_ENV, raising=False)
    wiring.shutdown_ray()
    # Quick health checks: a removed node is declared dead in ~2 s, not ~30 s.
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4}})
    nodes = {CRAWLER: [c.add_node(num_cpus=2, resources={CRAWLER: 8}) for _ in range(2)],
             DETECTOR: [c.add_node(num_cpus=1, resources={DETECTOR: 1}) for _ in range(2)]}
    c.wait_for_nodes(timeout=90)
    try:
        yield c, nodes
    finally:
        wiring.shutdown_ray()
        c.shutdown()


def node_of(actor) -> str:
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()), timeout=60)


def test_losing_a_crawler_node_and_a_detector_node_mid_run(cluster, platform, tmp_path):
    c, nodes = cluster
    removed: list[str] = []
    holder: dict = {}

    def remove(group: str, actor) -> None:
        node_id = node_of(actor)
        (node,) = [n for n in nodes[group] if n.node_id == node_id]
        c.remove_node(node)  # the machine is gone: raylet, workers and all
        removed.append(group)

    def chaos(counts: Counter) -> None:
        campaign = holder.get("run")
        if campaign is None or holder.get("started"):
            return
        if counts["pages"] >= 2 and counts["media_fetched"] >= 1:
            holder["started"] = True
            # Off the driver's thread: the run goes on while the nodes die under it.
            def both() -> None:
                remove(CRAWLER, campaign.crawlers["api"])
                remove(DETECTOR, campaign.detector_pool[0])
            holder["thread"] = threading.Thread(target=both, daemon=True)
            holder["thread"].start()

    data = spec_data(tmp_path, platform.base_url, name="node-loss", scaling={"capture_evidence": False})
    data["sources"][0]["params"]["page_size"] = 3
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), address=c.address, progress=chaos)
    holder["run"] = campaign
    report = campaign.run()
    holder["thread"].join(timeout=60)
    assert removed == [CRAWLER, DETECTOR], removed
    assert report["cluster"]["nodes"] == 5 and report["cluster"]["placement"]["crawler_nodes"]
    expect = served_posts(platform.world)
    # A fetch batch lost with its node is a counted drop owed to the next run; run it again
    # (what `campaign resume` does) until nothing is owed.
    reports = [report]
    while reports[-1]["stages"]["fetch"]["dropped_by_reason"].get("fetch worker failed") and len(reports) < 3:
        reports.append(run_campaign(data, address=c.address)[1])
    assert sum(r["counts"]["posts_new"] for r in reports) == len(expect)
    assert_complete(data["storage"]["database"], platform.world, expect)
    assert_evidence_once(data["storage"]["database"], data["storage"]["blobs"], "node-loss", captured=False)
    for r in reports:
        assert_report_reconciles(r)
