"""Incremental, scheduled and resumed campaigns on local Ray against the real demo platform.

After every scenario the database must hold each post and media item the platform served
exactly once, every stored media reference must be fetched (or a counted drop), and every
analysed item must have its detections exactly once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from orchestrator.campaign import CampaignRun
from orchestrator.spec import parse_spec
from storage import models as m
from storage.db import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]
TERMS = {"keywords": ["선거", "election"], "hashtags": ["선거2026", "election2026"]}


@pytest.fixture(scope="module")
def platform():
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world

    world = build_world(seed=7, n_posts=40)
    demo = DemoPlatform(world)
    demo.start()
    yield demo
    demo.stop()


def spec_data(tmp: Path, base_url: str, **extra) -> dict:
    data = {
        "name": extra.pop("name", "resume-test"),
        **TERMS,
        "sources": [{"name": "api", "type": "demo_api", "params": {"base_url": base_url, "page_size": 5}}],
        "window": {"start": "2026-01-01T00:00:00+00:00", "end": "2027-01-01T00:00:00+00:00"},
        "detectors": {"c2pa": True, "watermark": False},
        "storage": {"database": f"sqlite:///{tmp / 'dw.db'}", "blobs": str(tmp / "blobs")},
        "network": {"allow_networks": ["127.0.0.0/8"], "per_host_rps": 0},
        "scaling": {"capture_evidence": False},
    }
    data.update(extra)
    return data


def run(data: dict, **kwargs) -> tuple[CampaignRun, dict]:
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), **kwargs)
    return campaign, campaign.run()


def served_posts(world, clock: datetime | None = None) -> set[str]:
    """Post ids the platform serves for the campaign's terms (as of `clock`)."""
    ids = set()
    for term in TERMS["keywords"] + ["#" + h for h in TERMS["hashtags"]]:
        ids |= {p.id for p in world.search(term) if clock is None or p.created_at <= clock}
    return ids


def assert_complete(db_url: str, world, expect_posts: set[str]) -> None:
    store = Store(db_url)
    try:
        with store.session() as s:
            posts = s.exec(select(m.Post.post_id)).all()
            assert Counter(posts) == Counter(expect_posts), "each served post is stored exactly once"
            tasks = s.exec(select(m.MediaTask)).all()
            assert not [t for t in tasks if t.state == "pending"], "no media fetch is left owed"
            sighted = {sg.media_url for sg in s.exec(select(m.Sighting)).all()}
            dropped = {t.url for t in tasks if t.state == "dropped"}
            broken = {p for p, truth in world.truth.items() if truth.label == "broken"}
            for t in tasks:
                path = "/" + t.url.split("/", 3)[3]
                assert t.url in sighted or (t.url in dropped and path in broken), f"{t.url} neither fetched nor a counted drop"
            expected_refs = sum(len(world.post(pid).media) for pid in expect_posts)
            assert len(tasks) == expected_refs
            media = s.exec(select(m.Media)).all()
            assert all(md.verdict is not None for md in media), "every stored item is analysed"
            per_item = Counter((d.media_sha256, d.detector) for d in s.exec(select(m.Detection)).all())
            assert per_item and max(per_item.values()) == 1, "detections are written exactly once"
    finally:
        store.close()


def test_rerun_reads_only_new_posts(platform, tmp_path):
    world = platform.world
    newest = sorted(world.posts, key=lambda p: p.created_at)
    clock = newest[-8].created_at  # the 7 newest posts are not published yet
    platform.api.clock = clock
    data = spec_data(tmp_path, platform.base_url)
    try:
        _, first = run(data)
    finally:
        platform.api.clock = None
    before = served_posts(world, clock)
    assert first["counts"]["posts_new"] == len(before)

    _, second = run(data)
    after = served_posts(world)
    new_posts = after - before
    assert new_posts, "the test needs posts that appeared between the runs"
    assert second["counts"]["posts_new"] == len(new_posts)
    # Only the top of each feed is read again: far fewer pages than the first run needed.
    assert second["counts"]["pages"] < first["counts"]["pages"]
    new_refs = sum(len(world.post(pid).media) for pid in new_posts)
    assert second["counts"]["media_fetched"] <= new_refs
    assert_complete(data["storage"]["database"], world, after)


def test_killed_actors_lose_nothing(platform, tmp_path):
    """A crawler and a fetcher are killed mid-run; Ray restarts them and the pages and fetches
    they held are done again, each once."""
    import ray

    killed: list[str] = []
    holder: dict = {}

    def chaos(counts: Counter) -> None:
        campaign = holder.get("run")
        if campaign is None:
            return
        if counts["pages"] >= 2 and "crawler" not in killed:
            killed.append("crawler")
            ray.kill(campaign.crawlers["api"], no_restart=False)
        if counts["media_fetched"] >= 3 and "fetcher" not in killed:
            killed.append("fetcher")
            ray.kill(campaign.fetchers[0], no_restart=False)

    data = spec_data(tmp_path, platform.base_url, name="actor-kill")
    campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), progress=chaos)
    holder["run"] = campaign
    report = campaign.run()
    assert killed == ["crawler", "fetcher"]
    assert report["counts"]["posts_new"] == len(served_posts(platform.world))
    assert_complete(data["storage"]["database"], platform.world, served_posts(platform.world))


def test_scheduled_campaign_polls_until_its_window_ends(platform, tmp_path):
    world = platform.world
    newest = sorted(world.posts, key=lambda p: p.created_at)
    platform.api.clock = newest[-6].created_at
    terms = len(TERMS["keywords"]) + len(TERMS["hashtags"])

    def reveal_after_first_pass(counts: Counter) -> None:
        # Publish the hidden posts once every term's first pass has read a page: only a later
        # poll can find them. (A timer would race Ray's start-up on a busy machine.)
        if counts["polls"] >= terms and counts["pages"] >= terms:
            platform.api.clock = None

    end = datetime.now(timezone.utc) + timedelta(seconds=30)
    data = spec_data(tmp_path, platform.base_url, name="scheduled", interval="3s",
                     window={"start": "2026-01-01T00:00:00+00:00", "end": end.isoformat()},
                     limits={"max_seconds": 120})
    try:
        t0 = time.monotonic()
        _, report = run(data, progress=reveal_after_first_pass)
        took = time.monotonic() - t0
    finally:
        platform.api.clock = None
    assert report["counts"]["polls"] >= 2 * terms, report["counts"]
    assert took < 100, "the campaign stops polling when its window ends"
    # Posts published after the first pass were found by a later poll.
    assert_complete(data["storage"]["database"], world, served_posts(world))


def _db_counts(db: Path) -> tuple[int, int]:
    import sqlite3

    if not db.exists():
        return 0, 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            posts = con.execute("select count(*) from post").fetchone()[0]
            media = con.execute("select count(*) from media").fetchone()[0]
            return posts, media
        finally:
            con.close()
    except sqlite3.Error:
        return 0, 0


def test_killed_driver_resumes_with_campaign_resume(tmp_path):
    """`deepwatch campaign run` is SIGKILLed mid-run; `deepwatch campaign resume NAME` finishes it."""
    from demo_platform.cache import load_world

    import socket

    with socket.socket() as sock:  # the embedded platform's port must be the same after resume
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = spec_data(tmp_path, "embedded", name="driver-kill", demo_platform={"seed": 7, "posts": 40, "port": port})
    data["sources"][0]["params"]["page_size"] = 3
    spec_file = tmp_path / "campaign.yaml"
    spec_file.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    db = tmp_path / "dw.db"
    exe = [sys.executable, "-m", "orchestrator.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    proc = subprocess.Popen([*exe, "campaign", "run", str(spec_file), "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            posts, media = _db_counts(db)
            if posts >= 8 and media >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, at once
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    posts_at_kill, _ = _db_counts(db)
    store = Store(f"sqlite:///{db}")
    assert store.get_campaign("driver-kill").status == "running"  # it really died mid-run
    store.close()

    resumed = subprocess.run([*exe, "campaign", "resume", "driver-kill", "--db", f"sqlite:///{db}", "--no-progress",
                              "--report", str(tmp_path / "report.json")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    world = load_world(7, 40, tmp_path / "demo-world")
    expect = served_posts(world)
    assert posts_at_kill + report["counts"]["posts_new"] == len(expect)
    assert_complete(f"sqlite:///{db}", world, expect)
    store = Store(f"sqlite:///{db}")
    assert store.get_campaign("driver-kill").status == "finished"
    store.close()


def test_resume_of_unknown_campaign_names_it(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    from storage.db import Store

    Store(f"sqlite:///{tmp_path / 'x.db'}").close()  # a deepwatch database, without that campaign
    result = CliRunner().invoke(app, ["campaign", "resume", "nope", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code != 0
    assert "no campaign named 'nope'" in result.output
