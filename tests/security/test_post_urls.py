"""Issue 16, finding 1 (second half): post URLs come from the platforms (a Mastodon instance wrote
them) and the capture stage opens them in Chromium; every agent's post URLs are checked."""
from __future__ import annotations

import pytest

from agents._social import BadRecord
from agents.fetch import Fetcher
from agents.mastodon import MastodonAgent
from agents.post_urls import post_url, post_url_refusal
from orchestrator.stages import CaptureStage, FetchPolicySpec


def _status(url: str) -> dict:
    return {"id": "1", "uri": "https://social.example/users/a/statuses/1", "url": url, "content": "<p>x</p>",
            "account": {"acct": "a"}, "created_at": "2026-05-01T00:00:00Z", "media_attachments": [], "tags": []}


def test_mastodon_drops_posts_whose_url_is_not_web():
    with Fetcher() as fetcher:
        agent = MastodonAgent("https://social.example", fetcher)
        for hostile in ("file:///etc/passwd", "javascript:alert(1)", "http://user:pw@internal/", "chrome://settings"):
            assert agent._parse(_status(hostile), "#x", 0) is None, hostile
        assert [d.reason for d in agent.stats.drops] == ["bad post url"] * 4
        assert agent._parse(_status("https://social.example/@a/1"), "#x", 0).url == "https://social.example/@a/1"
    with pytest.raises(BadRecord):
        post_url("x" * 5000)


def test_capture_stage_refuses_internal_post_urls_before_any_browser(tmp_path):
    stage = CaptureStage(str(tmp_path / "blobs"), FetchPolicySpec(allow_networks=("127.0.0.1/32",)), archive=False)
    try:
        out = stage.run([("http://169.254.169.254/latest/meta-data/", []), ("http://127.0.0.2:9/x", []),
                         ("file:///etc/passwd", []), ("http://[::1]:9/", [])])
    finally:
        stage.close()
    assert [d.reason for d in out] == ["blocked post url"] * 4
    assert "cloud metadata" in out[0].detail and "loopback" in out[1].detail
    assert stage.browser._browser is None  # Chromium was never started for them
    assert post_url_refusal("http://127.0.0.1:9/ok", ("127.0.0.1/32",)) is None


def test_capture_stage_keeps_nothing_when_the_archive_step_refuses_the_page(tmp_path):
    import os

    from agents.base import Drop
    from agents.fetch import FetchPolicy
    from tests.fakeplatform import FakePlatform

    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("no Chromium")
    with FakePlatform(page_size=2) as fp:
        url = f"{fp.base_url}/p/p0003"
        stage = CaptureStage(str(tmp_path / "blobs"), FetchPolicySpec(allow_networks=("127.0.0.0/8",)),
                             key_dir=str(tmp_path / "keys"))
        try:
            [(shot, record)] = stage.run([(url, [])])  # allowed: screenshot, DOM and signed WACZ
            assert shot.status == 200 and record.page_final_url == url
            stage.fetcher.close()
            stage.fetcher = Fetcher(FetchPolicy())  # the archive step now refuses loopback
            [refused] = stage.run([(url, [])])
        finally:
            stage.close()
    assert isinstance(refused, Drop) and "blocked address" in refused.reason
