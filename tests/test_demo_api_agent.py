"""DemoApiAgent against the fake platform (always) and the real demo platform (once it exists)."""
from __future__ import annotations

import socket
from datetime import datetime, timezone

import pytest

from agents.base import Agent, Post
from agents.demo_api import DemoApiAgent
from agents.errors import AgentConfigError, SourceError
from agents.fetch import Fetcher, FetchPolicy
from agents.registry import AGENT_TYPES, build_agent
from storage.blobs import BlobStore
from tests.fakeplatform import FakePlatform

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def platform():
    with FakePlatform() as fp:
        yield fp


@pytest.fixture
def fetcher():
    with Fetcher(FetchPolicy(allow_networks=("127.0.0.0/8",), timeout_s=3, total_timeout_s=10, backoff_s=0.05)) as f:
        yield f


def crawl(agent: DemoApiAgent, term: str) -> list[Post]:
    posts, cursor, pages = [], None, 0
    while True:
        page = agent.fetch_page(term, cursor)
        posts.extend(page.posts)
        pages += 1
        assert pages < 50, "paging did not terminate"
        if page.next_cursor is None:
            return posts
        cursor = page.next_cursor


def test_pages_through_all_results_of_a_korean_term(platform, fetcher):
    agent: Agent = DemoApiAgent(platform.base_url, fetcher, page_size=2)
    assert agent.platform == "demo"
    posts = crawl(agent, "선거")
    expected = [row[0] for row in platform.search("선거")]
    assert [p.post_id for p in posts] == expected  # all of them, once each, newest first
    assert len(expected) == 6
    assert agent.stats.pages == 3 and agent.stats.posts == 6 and agent.stats.drops == []


def test_parses_posts_with_utc_datetimes(platform, fetcher):
    agent = DemoApiAgent(platform.base_url, fetcher)
    posts = {p.post_id: p for p in crawl(agent, "#선거2026")}
    p2 = posts["p0002"]
    assert p2.platform == "demo"
    assert p2.url == f"{platform.base_url}/p/p0002"
    assert p2.account == "seoyeon_lee"
    assert p2.text == "이번 선거는 정말 중요합니다"
    assert p2.created_at == datetime(2026, 5, 21, 1, 0, tzinfo=timezone.utc)
    assert p2.hashtags == ("선거2026", "debate")
    assert p2.lang == "ko"
    assert [(m.url, m.kind, m.position) for m in p2.media] == [
        (f"{platform.base_url}/media/debate.jpg", "image", 0),
        (f"{platform.base_url}/media/crowd.jpg", "image", 1),
    ]
    # +09:00 (KST) converted to UTC, and the video kind kept.
    p4 = posts["p0004"]
    assert p4.created_at == datetime(2026, 5, 23, 9, 45, tzinfo=timezone.utc)
    assert p4.created_at.utcoffset().total_seconds() == 0
    assert p4.media[0].kind == "video"
    assert all(p.created_at.tzinfo is not None for p in posts.values())


def test_bad_records_are_skipped_and_counted(platform, fetcher):
    agent = DemoApiAgent(platform.base_url, fetcher)
    page = agent.fetch_page("garbage", None)
    ids = [p.post_id for p in page.posts]
    assert ids == ["p9003", "p0001"]  # the good one, and the one whose only fault is a media item
    reasons = sorted(d.reason for d in agent.stats.drops)
    assert reasons == ["bad media", "bad timestamp", "missing field", "not an object"]
    assert all(d.stage == "parse" for d in agent.stats.drops)
    assert page.posts[0].media[0].url.endswith("/media/crowd.jpg")
    assert page.posts[0].hashtags == ("garbage",)  # a stray '#' is stripped


def test_unreachable_source_raises_source_error(fetcher):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = DemoApiAgent(f"http://127.0.0.1:{port}", fetcher)
    with pytest.raises(SourceError) as err:
        agent.fetch_page("선거", None)
    assert err.value.reason == "connection failed"


def test_garbage_answers_raise_source_error(platform, fetcher):
    with pytest.raises(SourceError) as err:
        DemoApiAgent(platform.base_url + "/_test/garbage-api", fetcher).fetch_page("x", None)
    assert err.value.reason == "invalid JSON"
    with pytest.raises(SourceError) as err:
        DemoApiAgent(platform.base_url + "/_test/wrong-shape", fetcher).fetch_page("x", None)
    assert err.value.reason == "bad response"
    with pytest.raises(SourceError) as err:
        DemoApiAgent(platform.base_url, fetcher).fetch_page("선거", "not-a-cursor")
    assert err.value.reason == "HTTP 400"


def test_constructor_and_term_validation(platform, fetcher):
    with pytest.raises(ValueError, match="absolute http"):
        DemoApiAgent("embedded", fetcher)
    with pytest.raises(ValueError, match="page_size"):
        DemoApiAgent(platform.base_url, fetcher, page_size=0)
    with pytest.raises(ValueError, match="search term"):
        DemoApiAgent(platform.base_url, fetcher).fetch_page("  ", None)


def test_registry_builds_agents_and_explains_mistakes(platform, fetcher, tmp_path):
    blobs = BlobStore(tmp_path)
    assert set(AGENT_TYPES) == {"demo_api", "browser", "mastodon", "bluesky", "reddit", "youtube", "rss", "web", "telegram", "site", "ytdlp"}
    agent = build_agent("demo_api", {"base_url": platform.base_url, "page_size": 4}, fetcher=fetcher, blobs=blobs)
    assert isinstance(agent, DemoApiAgent) and agent.page_size == 4 and agent.fetcher is fetcher
    browser = build_agent("browser", {"base_url": platform.base_url, "max_scrolls": 3}, fetcher=fetcher, blobs=blobs)
    assert browser.blobs is blobs and browser.max_scrolls == 3  # no Chromium started: lazy
    browser.close()

    with pytest.raises(AgentConfigError, match="unknown agent type 'twitter'; known types: bluesky, browser, demo_api, mastodon, reddit, rss, site, telegram, web, youtube, ytdlp"):
        build_agent("twitter", {}, fetcher=fetcher, blobs=blobs)
    with pytest.raises(AgentConfigError, match=r"demo_api: unknown parameter\(s\) pagesize; accepted: base_url, page_size"):
        build_agent("demo_api", {"base_url": platform.base_url, "pagesize": 3}, fetcher=fetcher, blobs=blobs)
    with pytest.raises(AgentConfigError, match=r"missing required parameter\(s\) base_url"):
        build_agent("browser", {}, fetcher=fetcher, blobs=blobs)
    with pytest.raises(AgentConfigError, match="fetcher is supplied by the runtime"):
        build_agent("demo_api", {"base_url": platform.base_url, "fetcher": None}, fetcher=fetcher, blobs=blobs)
    with pytest.raises(AgentConfigError, match="demo_api: page_size must be an integer"):
        build_agent("demo_api", {"base_url": platform.base_url, "page_size": "ten"}, fetcher=fetcher, blobs=blobs)
    with pytest.raises(AgentConfigError, match="browser: unknown selector names: postt"):
        build_agent("browser", {"base_url": platform.base_url, "selectors": {"postt": "x"}}, fetcher=fetcher, blobs=blobs)


def test_against_the_real_demo_platform(fetcher, demo_platform_small):
    base, world = demo_platform_small
    agent = DemoApiAgent(base, fetcher, page_size=7)
    term = world.search_terms[0]
    posts = crawl(agent, term)
    assert posts, f"the demo world has no posts for {term!r}"
    assert len({p.post_id for p in posts}) == len(posts)
    assert all(p.created_at.tzinfo is not None and p.url.startswith(base) for p in posts)
    assert agent.stats.drops == []
    media = next(m for p in posts for m in p.media)
    fetched = fetcher.fetch_media(media)
    assert fetched.data and fetched.final_url == media.url
