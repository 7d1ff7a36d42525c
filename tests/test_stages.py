"""The orchestrator's stages alone, without Ray, on one in-memory batch each."""
from __future__ import annotations

from agents.base import Drop, MediaRef
from orchestrator.stages import CrawlStage, FetchPolicySpec, FetchStage, MediaRecord
from tests.fakeplatform import FakePlatform

LOOPBACK = FetchPolicySpec(allow_networks=("127.0.0.0/8",), timeout_s=5)


def test_crawl_stage_pages_through_a_source(tmp_path):
    with FakePlatform(page_size=3) as fake:
        stage = CrawlStage("api", "demo_api", {"base_url": fake.base_url, "page_size": 3}, LOOPBACK, str(tmp_path))
        seen, cursor = [], None
        while True:
            result = stage.page("선거", cursor)
            assert result.error is None
            seen += [p.post_id for p in result.page.posts]
            cursor = result.page.next_cursor
            if cursor is None:
                break
        stage.close()
    assert len(seen) == len(set(seen)) >= 5
    assert all(p.startswith("p") for p in seen)


def test_crawl_stage_reports_an_unreachable_source(tmp_path):
    stage = CrawlStage("gone", "demo_api", {"base_url": "http://127.0.0.1:9"}, LOOPBACK, str(tmp_path))
    result = stage.page("선거", None)
    assert result.page is None and "connection" in result.error
    stage.close()


def test_fetch_stage_stores_probes_and_drops_with_reasons(tmp_path):
    with FakePlatform() as fake:
        stage = FetchStage(LOOPBACK, str(tmp_path / "blobs"))
        refs = [
            MediaRef(f"{fake.base_url}/media/rally.png", "image"),
            MediaRef(f"{fake.base_url}/media/clip.mp4", "video"),
            MediaRef(f"{fake.base_url}/media/broken.jpg", "image"),
            MediaRef(f"{fake.base_url}/media/missing.jpg", "image"),
        ]
        out = stage.run(refs)
        stage.close()
    png, mp4, broken, missing = out
    assert isinstance(png, MediaRecord) and png.kind == "image" and png.mime == "image/png" and len(png.phash) == 16
    assert (tmp_path / "blobs" / png.sha256[:2] / png.sha256[2:4] / png.sha256).exists()
    assert isinstance(mp4, MediaRecord) and mp4.kind == "video" and mp4.frame_hashes
    assert mp4.vpdq and all(len(h) == 64 for _, _, h in mp4.vpdq)
    assert isinstance(broken, Drop) and broken.stage == "probe" and "text/html" in broken.reason
    assert isinstance(missing, Drop) and missing.stage == "fetch" and missing.reason == "HTTP 404"


def test_fetch_stage_refuses_loopback_unless_allowed(tmp_path):
    with FakePlatform() as fake:
        stage = FetchStage(FetchPolicySpec(timeout_s=5), str(tmp_path))
        (result,) = stage.run([MediaRef(f"{fake.base_url}/media/rally.png", "image")])
        stage.close()
    assert isinstance(result, Drop) and result.reason == "blocked address"
