"""Per-stage metrics: the Prometheus exporter, the report's "stages" and the saved stats file.

The end-to-end test runs the small demo campaign on local Ray with an exporter, scrapes /metrics
with httpx while the run is going (at moments when the driver's counts are known exactly), and
checks that the final figures reconcile with the report and with the database.
"""
from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select

from orchestrator.metrics import STAGES, CampaignMetrics
from storage import models as m
from storage.db import Store
from tests.test_resume import assert_complete, served_posts, spec_data


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """Exposition text -> {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(port: int) -> dict:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    resp.raise_for_status()
    return parse(resp.text)


# -- the metrics object alone (fast) -----------------------------------------------------------
def test_stage_figures_are_exported_and_summarised():
    metrics = CampaignMetrics("unit")
    metrics.came_in("fetch", 5)
    metrics.went_out("fetch", 3)
    metrics.dropped("fetch", "http 404")
    metrics.dropped("probe", "not an image")  # probing is part of the fetch stage
    metrics.retried("crawl", 2)
    for seconds in (0.02, 0.03, 4.0):
        metrics.observe("detect", seconds)
    metrics.queue_depths(fetch=7, detect=2)
    metrics.queue_depths(fetch=1)
    port = metrics.serve(0)
    try:
        samples = scrape(port)
    finally:
        metrics.stop()
    assert value(samples, "deepwatch_stage_in_total", campaign="unit", stage="fetch") == 5
    assert value(samples, "deepwatch_stage_out_total", campaign="unit", stage="fetch") == 3
    assert value(samples, "deepwatch_stage_dropped_total", campaign="unit", stage="fetch", reason="not an image") == 1
    assert value(samples, "deepwatch_stage_retries_total", campaign="unit", stage="crawl") == 2
    assert value(samples, "deepwatch_stage_latency_seconds_count", campaign="unit", stage="detect") == 3
    assert value(samples, "deepwatch_queue_depth", campaign="unit", queue="fetch") == 1
    assert value(samples, "deepwatch_queue_depth_peak", campaign="unit", queue="fetch") == 7
    # Every stage's series exists from the start, so a dashboard shows zeros, not gaps.
    assert all(("deepwatch_stage_in_total", (("campaign", "unit"), ("stage", s))) in samples for s in STAGES)

    snap = metrics.snapshot()
    fetch = snap["stages"]["fetch"]
    assert (fetch["in"], fetch["out"], fetch["dropped"]) == (5, 3, 2)
    assert fetch["dropped_by_reason"] == {"http 404": 1, "not an image": 1}
    lat = snap["stages"]["detect"]["latency_s"]
    assert lat["calls"] == 3 and lat["max"] == 4.0 and lat["p50"] == 0.05 and lat["p95"] == 5.0
    assert snap["queues"]["fetch"] == {"now": 1, "peak": 7}


def test_a_taken_metrics_port_is_named():
    first = CampaignMetrics("a")
    port = first.serve(0)
    try:
        with pytest.raises(RuntimeError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            CampaignMetrics("b").serve(port)
    finally:
        first.stop()


# -- a real campaign ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform():
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world

    demo = DemoPlatform(build_world(seed=7, n_posts=40))
    demo.start()
    yield demo
    demo.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_campaign_metrics_reconcile_with_report_and_database(platform, tmp_path, monkeypatch):
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec

    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    data = spec_data(tmp_path, platform.base_url, name="metrics-test")
    stats_path = tmp_path / "metrics-test.stats.json"
    live: list[tuple[int, dict]] = []
    holder: dict = {}

    def scrape_now(counts: Counter) -> None:
        # The driver is inside this callback, so its counters cannot move while we scrape.
        run = holder.get("run")
        if run is None or run.metrics_port is None or len(live) >= 3:
            return
        if counts["media_fetched"] in (1, 5, 9) and counts["media_fetched"] not in [n for n, _ in live]:
            live.append((counts["media_fetched"], scrape(run.metrics_port)))

    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), progress=scrape_now,
                           metrics_port=0, stats_path=str(stats_path))
    holder["run"] = campaign
    report = campaign.run()

    # Scraped during the run: the exporter answered and agreed with the driver's own counts.
    assert [n for n, _ in live] == [1, 5, 9]
    for fetched, samples in live:
        assert value(samples, "deepwatch_stage_out_total", campaign="metrics-test", stage="fetch") == fetched
        assert value(samples, "deepwatch_stage_in_total", campaign="metrics-test", stage="dedup") == fetched
    with pytest.raises(httpx.HTTPError):  # the exporter lives as long as the run
        scrape(campaign.metrics_port)

    final = parse(generate_latest(campaign.metrics.registry).decode())
    c, stages = report["counts"], report["stages"]

    def exported(name: str, stage: str) -> float:
        if name == "dropped":  # one series per reason
            return sum(v for (n, labels), v in final.items()
                       if n == "deepwatch_stage_dropped_total" and ("stage", stage) in labels)
        return value(final, f"deepwatch_stage_{name}_total", campaign="metrics-test", stage=stage)

    for stage in STAGES:  # the report shows what /metrics exported
        for key in ("in", "out", "dropped", "retries"):
            assert stages[stage][key] == exported(key, stage), (stage, key)
        for reason, n in stages[stage]["dropped_by_reason"].items():
            assert value(final, "deepwatch_stage_dropped_total", campaign="metrics-test", stage=stage, reason=reason) == n
    # Nothing is in flight at the end: every item that entered these stages left or was dropped.
    for stage in ("fetch", "dedup", "detect", "evidence"):
        s = stages[stage]
        assert s["in"] == s["out"] + s["dropped"], (stage, s)
    window_drops = stages["crawl"]["dropped_by_reason"].get("outside campaign window", 0)
    assert stages["crawl"]["in"] >= stages["crawl"]["out"] == c["posts"] - window_drops
    assert stages["fetch"]["out"] == stages["dedup"]["in"] == c["media_fetched"]
    assert stages["dedup"]["dropped_by_reason"].get("exact duplicate", 0) == c["duplicates_exact"]
    assert stages["dedup"]["dropped_by_reason"].get("known fake (bank)", 0) == c["bank_matches"]
    assert stages["dedup"]["out"] == c["unique"] + c["provenance_checked"]  # a fresh run: nothing resumed
    assert stages["detect"]["out"] == c["analysed"] + c["provenance_checked"]
    assert stages["evidence"]["in"] == c["evidence_written"] and stages["evidence"]["out"] == c["sealed"]
    assert stages["fetch"]["latency_s"]["calls"] >= 1 and stages["detect"]["latency_s"]["calls"] >= 1
    assert report["queues"]["fetch"]["now"] == 0 and report["queues"]["fetch"]["peak"] >= 1

    # ... and with the database.
    store = Store(data["storage"]["database"])
    try:
        with store.session() as s:
            posts = s.exec(select(m.Post)).all()
            media = s.exec(select(m.Media)).all()
            evidence = s.exec(select(m.Evidence)).all()
            seals = s.exec(select(m.Seal)).all()
            tasks = s.exec(select(m.MediaTask)).all()
        assert len(posts) == c["posts_new"] <= stages["crawl"]["out"]  # a post found by two terms is stored once
        assert stages["dedup"]["in"] - stages["dedup"]["dropped_by_reason"].get("exact duplicate", 0) == len(media)
        assert stages["detect"]["out"] + c["bank_matches"] == len(media)
        assert stages["evidence"]["out"] == len(evidence) == len(seals)
        assert stages["fetch"]["in"] == len({t.url for t in tasks})
        row = store.get_campaign("metrics-test")
        assert row.last_report["stages"] == json.loads(json.dumps(stages))
    finally:
        store.close()
    saved = json.loads(stats_path.read_text())
    assert saved["stages"] == json.loads(json.dumps(stages)) and saved["counts"] == c
    assert_complete(data["storage"]["database"], platform.world, served_posts(platform.world))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_queues_stay_bounded_under_backpressure(platform, tmp_path, monkeypatch):
    """With tiny queue bounds the crawl waits for the fetchers and the fetchers for the
    detectors (parked pages), the queues never grow past their bound plus one page, and the
    campaign still stores everything exactly once."""
    from orchestrator import campaign as campaign_module
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec

    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setattr(campaign_module, "FETCH_QUEUE_MAX", 3)
    monkeypatch.setattr(campaign_module, "DETECT_QUEUE_MAX", 4)
    data = spec_data(tmp_path, platform.base_url, name="bounded")
    page_size = data["sources"][0]["params"]["page_size"]
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True))
    report = campaign.run()
    queues = report["queues"]
    assert queues["parked_pages"]["peak"] >= 1, "the crawl was held back at least once"
    # A page is asked for only below the bound, and brings at most 3 media refs per post.
    assert queues["fetch"]["peak"] <= 3 + 3 * page_size
    # Fetches go out only below the detector bound; one batch (8 refs) can land on top.
    assert queues["detect"]["peak"] + queues["provenance"]["peak"] <= 2 * (4 + 8 * len(campaign.fetchers) * 2)
    assert_complete(data["storage"]["database"], platform.world, served_posts(platform.world))


# -- the scaled demo world the memory and throughput figures run on (fast) ------------------------
def test_scaled_world_serves_many_unique_posts_lazily():
    import io

    import imagehash
    from PIL import Image

    from demo_platform.scaled import SCALE_TAG, ScaledWorld, _mode
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world

    base = build_world(seed=7, n_posts=30)
    world = ScaledWorld(base, 500)
    assert len(world.posts) == 500 and len({p.id for p in world.posts}) == 500
    assert [p.id for p in world.search(f"#{SCALE_TAG}")] == [p.id for p in world.newest_first()]
    paths = list(world.paths())
    assert len(paths) == len(set(paths)) == world.n_items == len(world.media)

    def base_of(path: str) -> str:
        return "/media/" + path.rsplit("-", 1)[1]

    by_mode: dict[str, list[str]] = {}
    for path in paths:
        by_mode.setdefault(_mode(base, base_of(path)), []).append(path)
    assert set(by_mode) == {"fresh", "comment", "same"}
    fresh = [world.media[p].data for p in by_mode["fresh"][:20]]
    hashes = [imagehash.phash(Image.open(io.BytesIO(d))) for d in fresh]
    assert min(a - b for i, a in enumerate(hashes) for b in hashes[i + 1:]) > 10  # distinct, not near-duplicates
    assert world.truth[by_mode["fresh"][0]].label == "real"
    copy = by_mode["comment"][0]
    original = base.media[base_of(copy)]
    assert world.media[copy].sha256 != original.sha256  # new bytes...
    with Image.open(io.BytesIO(world.media[copy].data)) as a, Image.open(io.BytesIO(original.data)) as b:
        assert a.tobytes() == b.tobytes()  # ...the same pixels
    assert world.truth[copy] == base.truth[base_of(copy)]
    assert "/media/s9999999-nothing.jpg" not in world.media and world.media.get("/media/x.jpg") is None

    with DemoPlatform(world) as platform:
        page = httpx.get(f"{platform.base_url}/api/v1/search", params={"q": f"#{SCALE_TAG}", "limit": 100}).json()
        assert len(page["posts"]) == 100 and page["next_cursor"]
        media = page["posts"][0]["media"][0]
        served = httpx.get(media["url"])
        assert served.status_code == 200 and served.headers["content-type"] == media["mime"]
        assert served.content == world.media[media["url"].split(platform.base_url, 1)[1]].data
