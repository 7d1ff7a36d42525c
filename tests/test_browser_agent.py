"""BrowserAgent driving the real Chromium through Playwright against the fake platform."""
from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
from datetime import datetime, timezone

import pytest
from PIL import Image

from agents.browser import BrowserAgent
from agents.errors import SourceError
from storage.blobs import BlobStore
from tests.fakeplatform import FakePlatform

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = (1024, 700)
LOOPBACK = ("127.0.0.0/8",)  # the browser guard refuses loopback unless allowed (issue 16)

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must have Chromium at {CHROMIUM} (Debian package 'chromium')")
    pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's 'chromium' package", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def platform():
    with FakePlatform(page_size=2) as fp:  # 2 posts per API page: the feed needs several scrolls
        yield fp


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return BlobStore(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
def agent(platform, blobs):
    with BrowserAgent(platform.base_url, blobs, viewport=VIEWPORT, render_timeout_s=5, allow_networks=LOOPBACK) as a:
        yield a


def png_size(blobs: BlobStore, sha: str) -> tuple[int, int]:
    data = blobs.get(sha)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data)).size


def test_scrolls_the_whole_feed_and_reads_every_post(platform, blobs, agent):
    page = agent.fetch_page("선거", None)
    expected = [row[0] for row in platform.search("선거")]
    assert [p.post_id for p in page.posts] == expected and len(expected) == 6
    assert page.next_cursor is None
    # Posts only arrive through the API as the page scrolls: three API pages, two with a cursor.
    assert sum(1 for k in platform.hits if k.startswith("/api/v1/search") and "cursor=" in k) >= 2

    by_id = {p.post_id: p for p in page.posts}
    p2 = by_id["p0002"]
    assert p2.url == f"{platform.base_url}/p/p0002"
    assert (p2.account, p2.text, p2.lang) == ("seoyeon_lee", "이번 선거는 정말 중요합니다", "ko")
    assert p2.hashtags == ("선거2026", "debate")
    assert p2.created_at == datetime(2026, 5, 21, 1, 0, tzinfo=timezone.utc)
    # The DOM has relative src attributes; the agent resolves them.
    assert [m.url for m in p2.media] == [f"{platform.base_url}/media/debate.jpg", f"{platform.base_url}/media/crowd.jpg"]
    assert by_id["p0004"].media[0].kind == "video"
    assert by_id["p0004"].created_at == datetime(2026, 5, 23, 9, 45, tzinfo=timezone.utc)
    assert all(m.url.startswith("http://") for p in page.posts for m in p.media)

    # One full-page screenshot, in the blob store, taller than the window, on the page and every post.
    width, height = png_size(blobs, page.screenshot_sha256)
    assert width == VIEWPORT[0] and height > VIEWPORT[1] * 2
    assert blobs.verify(page.screenshot_sha256)
    assert {p.screenshot_sha256 for p in page.posts} == {page.screenshot_sha256}
    assert agent.stats.drops == []


def test_tag_page_with_template(platform, blobs):
    with BrowserAgent(platform.base_url, blobs, path_template="/tag/{bare}", render_timeout_s=5, allow_networks=LOOPBACK) as a:
        assert a.url_for("#선거2026").endswith("/tag/%EC%84%A0%EA%B1%B02026")
        page = a.fetch_page("#선거2026", None)
    assert {p.post_id for p in page.posts} == {r[0] for r in platform.search("#선거2026")}


def test_post_limit_stops_early_and_says_so(platform, blobs):
    with BrowserAgent(platform.base_url, blobs, max_posts=3, render_timeout_s=5, allow_networks=LOOPBACK) as a:
        page = a.fetch_page("선거", None)
        assert len(page.posts) == 3
        assert [d.reason for d in a.stats.drops] == ["post limit"]


def test_capture_of_a_permalink(platform, blobs, agent):
    url = f"{platform.base_url}/p/p0002"
    cap = agent.capture(url)
    assert (cap.url, cap.final_url, cap.status) == (url, url, 200)
    assert cap.captured_at.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - cap.captured_at).total_seconds()) < 60
    assert "Fake platform" in cap.title
    html = blobs.get(cap.html_sha256).decode()
    assert 'data-post-id="p0002"' in html  # the rendered DOM, not the empty HTML shell
    assert "이번 선거는 정말 중요합니다" in html
    width, height = png_size(blobs, cap.screenshot_sha256)
    assert width == VIEWPORT[0] and height > 0


def test_called_from_plain_and_asyncio_threads(platform, agent):
    results: dict[str, object] = {}

    def plain() -> None:
        results["plain"] = agent.fetch_page("election", None)

    def with_loop() -> None:
        async def main() -> None:  # Playwright's sync API would refuse to run here directly
            results["asyncio"] = agent.capture(f"{platform.base_url}/p/p0003")
        asyncio.run(main())

    threads = [threading.Thread(target=plain), threading.Thread(target=with_loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert [p.post_id for p in results["plain"].posts] == [r[0] for r in platform.search("election")]
    assert results["asyncio"].status == 200


def test_navigation_failure_raises_source_error(blobs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with BrowserAgent(f"http://127.0.0.1:{port}", blobs, nav_timeout_s=10, allow_networks=LOOPBACK) as a:
        with pytest.raises(SourceError) as err:
            a.fetch_page("선거", None)
    assert err.value.reason == "navigation failed"
    assert "Connection refused" in err.value.detail  # told by the guard proxy, which made the connection


def test_http_error_page_raises_source_error(platform, blobs):
    broken = BrowserAgent(platform.base_url, blobs, path_template="/nowhere/{term}", allow_networks=LOOPBACK)
    with broken:
        with pytest.raises(SourceError) as err:
            broken.fetch_page("x", None)
    assert err.value.reason == "HTTP 404"


def test_bad_settings_are_refused(platform, blobs):
    with pytest.raises(ValueError, match="placeholders: query"):
        BrowserAgent(platform.base_url, blobs, path_template="/search?q={query}", allow_networks=LOOPBACK)
    with pytest.raises(ValueError, match="max_posts"):
        BrowserAgent(platform.base_url, blobs, max_posts=0, allow_networks=LOOPBACK)
    with pytest.raises(ValueError, match="takes no cursor"):
        BrowserAgent(platform.base_url, blobs, allow_networks=LOOPBACK).fetch_page("x", "c1")


def test_against_the_real_demo_platform(blobs, demo_platform_small):
    base, world = demo_platform_small
    term = world.search_terms[0]
    with BrowserAgent(base, blobs, render_timeout_s=5, allow_networks=LOOPBACK) as a:
        page = a.fetch_page(term, None)
        assert page.posts, f"nothing rendered for {term!r}"
        assert len({p.post_id for p in page.posts}) == len(page.posts)
        assert a.stats.drops == []  # reached #end-of-feed, every post parsed
        assert all(m.url.startswith(base + "/") for p in page.posts for m in p.media)
        cap = a.capture(page.posts[0].url)
    assert cap.status == 200
    assert page.posts[0].post_id in blobs.get(cap.html_sha256).decode()
