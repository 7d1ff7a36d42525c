"""The `site` agent and its profiles, offline: saved pages on a loopback server, real lxml parsing.

The Korean profiles are read from pages in tests/site_pages/ written to match each site's public
structure; the JavaScript paths (Daum comments' "more" button, the demo platform's infinite
scroll) run in the real Chromium, with every request answered by the guarded Fetcher.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.base import MediaRef
from agents.demo_api import DemoApiAgent
from agents.errors import AgentConfigError, SourceError
from agents.fetch import Fetcher, FetchPolicy
from agents.registry import build_agent
from agents.site import SiteAgent
from agents.site_extract import parse_time
from agents.site_profile import ProfileError, TimeSelector, load_profile, parse_profile, shipped_profiles
from orchestrator.spec import CampaignSpec
from tests.replay import Answer, ReplayServer

pytestmark = pytest.mark.timeout(120)

PAGES = Path(__file__).parent / "site_pages"
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
EMPTY_LIST = "<html><body><table class='gall_list'><tbody></tbody></table></body></html>"


def saved(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


def crawl(agent, term: str):
    posts, cursor, cursors = [], None, []
    while True:
        page = agent.fetch_page(term, cursor)
        posts.extend(page.posts)
        cursor = page.next_cursor
        if cursor is None:
            return posts, cursors
        cursors.append(cursor)


@pytest.fixture
def dc_server():
    with ReplayServer() as srv:
        def board(request):
            page = request.arg("page", "1")
            body = saved("dcinside_list.html") if page == "1" else EMPTY_LIST
            return Answer(body=body, content_type="text/html; charset=utf-8")
        srv.route("/board/lists/", handler=board)
        yield srv


def test_dcinside_profile_reads_the_saved_gallery_list(dc_server, fetcher):
    agent = build_agent("site", {"profile": "dcinside-gallery", "vars": {"gallery": "politics"},
                                 "base_url": dc_server.base_url}, fetcher=fetcher, blobs=None)
    assert agent.searches and agent.platform == "dcinside"
    posts, cursors = crawl(agent, "딥페이크")
    assert [p.post_id for p in posts] == ["880412", "880398"]  # the notice row is skipped by the container
    first = posts[0]
    assert first.url == f"{dc_server.base_url}/board/view/?id=politics&no=880412&page=1"
    assert first.account == "선거감시"
    assert first.text == "후보 연설 영상 합성 아님? 딥페이크 의심"
    # 13:45:12 in Seoul (UTC+9) is 04:45:12 UTC.
    assert first.created_at == datetime(2026, 5, 25, 4, 45, 12, tzinfo=timezone.utc)
    assert posts[1].hashtags == ("딥페이크", "선거2026")
    # The row whose date is "어제" has no time the profile's format reads: a counted drop.
    assert [(d.stage, d.reason) for d in agent.stats.drops] == [("parse", "bad timestamp")]
    assert "어제" in agent.stats.drops[0].detail
    # Paging by ?page=: page 2 came back empty, which ended the listing.
    assert [json.loads(c)["page"] for c in cursors] == [1]
    asked = dc_server.hits("/board/lists/")
    assert [r.arg("page") for r in asked] == [None, "2"]
    assert asked[0].arg("id") == "politics" and asked[0].arg("s_keyword") == "딥페이크"
    assert asked[0].headers["user-agent"] == fetcher.policy.user_agent


def test_a_resumed_crawl_goes_on_from_the_cursor(dc_server, fetcher):
    agent = SiteAgent("dcinside-gallery", fetcher=fetcher, vars={"gallery": "politics"}, base_url=dc_server.base_url)
    first = agent.fetch_page("딥페이크", None)
    again = SiteAgent("dcinside-gallery", fetcher=fetcher, vars={"gallery": "politics"}, base_url=dc_server.base_url)
    second = again.fetch_page("딥페이크", first.next_cursor)
    assert second.posts == () and second.next_cursor is None
    assert dc_server.hits("/board/lists/")[-1].arg("page") == "2"
    with pytest.raises(ValueError, match="cursor is not a site crawl state"):
        again.fetch_page("딥페이크", "{not json")


def test_naver_profile_reads_results_media_embeds_and_relative_dates(fetcher):
    with ReplayServer() as srv:
        srv.route("/search.naver", body=saved("naver_blog_search.html"), content_type="text/html; charset=utf-8")
        agent = SiteAgent("naver-blog-search", fetcher=fetcher, base_url=srv.base_url, max_pages=1)
        before = datetime.now(timezone.utc)
        page = agent.fetch_page("선거 딥페이크", None)
        assert srv.hits("/search.naver")[0].arg("query") == "선거 딥페이크"
        assert srv.hits("/search.naver")[0].arg("where") == "blog"
    assert page.next_cursor is None  # max_pages 1
    assert [p.post_id for p in page.posts] == [
        "https://blog.naver.com/minwoo_k/223456789012",
        "https://blog.naver.com/jeju_news/223450000001",
        "https://blog.naver.com/anon/223459999999",
    ]
    first = page.posts[0]
    assert first.account == "민우의 정치노트"
    assert first.created_at == datetime(2026, 5, 23, 15, 0, tzinfo=timezone.utc)  # 2026.05.24. 00:00 in Seoul
    assert first.hashtags == ("선거딥페이크", "팩트체크")
    assert first.media == (
        MediaRef(url="https://search.pstatic.net/common/?src=https%3A%2F%2Fblogthumb.pstatic.net%2F20260524_1%2Fthumb.jpg&type=ofullfill",
                 kind="image", position=0),
        MediaRef(url="https://tv.naver.com/v/87654321", kind="video", position=1, resolver="ytdlp"),
    )
    # "3일 전" is read relative to when the page was read.
    age = before - page.posts[2].created_at
    assert 3 * 86400 - 60 < age.total_seconds() < 3 * 86400 + 60
    assert agent.stats.drops == []


def test_next_link_paging_and_the_address_guard():
    profile = {
        "name": "board", "platform": "board", "url": "/list?q={term}",
        "paging": {"mode": "next_link", "next_link": "a.next", "max_pages": 10},
        "post": {"container": "div.item", "url": {"css": "a", "attr": "href"}, "text": "a"},
    }
    pages = {
        "1": '<div class="item"><a href="/p/1">one</a></div><a class="next" href="/list?q=x&n=2">next</a>',
        "2": '<div class="item"><a href="/p/2">two</a></div><a class="next" href="/list?q=x&n=2">again</a>',
    }
    with ReplayServer() as srv:
        srv.route("/list", handler=lambda r: Answer(body=pages[r.arg("n", "1")], content_type="text/html"))
        with Fetcher(FetchPolicy(allow_networks=("127.0.0.0/8",), timeout_s=2, total_timeout_s=5)) as fetcher:
            agent = SiteAgent(profile, fetcher=fetcher, base_url=srv.base_url)
            posts, _ = crawl(agent, "x")
            # The second page links to itself: the crawl stops instead of looping.
            assert [p.post_id for p in posts] == [f"{srv.base_url}/p/1", f"{srv.base_url}/p/2"]
        with Fetcher(FetchPolicy(timeout_s=2, total_timeout_s=5)) as guarded:
            refused = SiteAgent(profile, fetcher=guarded, base_url=srv.base_url)
            with pytest.raises(SourceError, match="blocked address"):
                refused.fetch_page("x", None)


def test_profiles_are_validated_with_errors_naming_the_field(tmp_path):
    good = {"name": "x", "platform": "x", "url": "https://example.org/s?q={term}",
            "post": {"container": "li", "url": {"css": "a", "attr": "href"}, "text": "p"}}
    assert parse_profile(good).searches
    cases = [
        ({**good, "selectors": {}}, "selectors: unknown key"),
        ({**good, "post": {**good["post"], "txt": "p"}}, "post.txt: unknown key"),
        ({**good, "post": {**good["post"], "container": "li[["}}, "post.container"),
        ({**good, "post": {**good["post"], "url": {"xpath": "//a[", "attr": "href"}}}, "xpath"),
        ({**good, "url": "https://example.org/{board}/s?q={term}"}, "{board}"),
        ({**good, "paging": {"mode": "page_param"}}, "needs param"),
        ({**good, "render": {"scrolls": 3}}, "need javascript: true"),
        ({**good, "post": {**good["post"], "time": {"css": "time", "zone": "Asia/Nowhere"}}}, "post.time.zone"),
        ({**good, "post": {**good["post"], "time": {"css": "time", "formats": ["YYYY-MM-DD"]}}}, "post.time.formats"),
        ({**good, "url": "ftp://example.org/{term}"}, "url must be"),
    ]
    for data, message in cases:
        with pytest.raises(ProfileError) as caught:
            parse_profile(data, origin="test.yaml")
        assert message in str(caught.value) and "test.yaml" in str(caught.value), (message, str(caught.value))
    with pytest.raises(ProfileError, match="no shipped profile 'nope'; shipped: daum-news-comments"):
        load_profile("nope")
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_shipped_profiles_load_and_say_they_are_unverified():
    assert {"dcinside-gallery", "naver-blog-search", "daum-news-comments", "demo-social"} <= set(shipped_profiles())
    for name in ("dcinside-gallery", "naver-blog-search", "daum-news-comments"):
        load_profile(name)
        header = (Path(__file__).parent.parent / "agents" / "profiles" / f"{name}.yaml").read_text().splitlines()[0]
        assert header.startswith("# NOT VERIFIED AGAINST THE LIVE SITE"), name


def test_source_params_are_checked_and_listing_profiles_need_no_terms(fetcher):
    with pytest.raises(AgentConfigError, match="vars.gallery is required"):
        build_agent("site", {"profile": "dcinside-gallery"}, fetcher=fetcher, blobs=None)
    with pytest.raises(AgentConfigError, match="no variable"):
        build_agent("site", {"profile": "dcinside-gallery", "vars": {"gallery": "a", "board": "b"}}, fetcher=fetcher, blobs=None)
    with pytest.raises(AgentConfigError, match="no shipped profile"):
        build_agent("site", {"profile": "dc"}, fetcher=fetcher, blobs=None)
    spec = CampaignSpec.model_validate({
        "name": "c", "sources": [{"name": "daum", "type": "site",
                                  "params": {"profile": "daum-news-comments", "vars": {"article": "1"}}}]})
    assert spec.terms_for(spec.sources[0]) == [""]  # a listing, read once per pass
    with pytest.raises(ValueError, match="needs keywords"):
        CampaignSpec.model_validate({"name": "c", "sources": [
            {"name": "dc", "type": "site", "params": {"profile": "dcinside-gallery", "vars": {"gallery": "x"}}}]})


def test_time_formats():
    seoul = TimeSelector(css="t", formats=["%Y.%m.%d. %H:%M", "epoch", "relative"], zone="Asia/Seoul")
    assert parse_time("2026.06.03. 18:00", seoul) == datetime(2026, 6, 3, 9, 0, tzinfo=timezone.utc)
    assert parse_time("1780000000", seoul) == datetime.fromtimestamp(1780000000, tz=timezone.utc)
    now = datetime(2026, 6, 3, 12, 0, tzinfo=timezone.utc)
    assert parse_time("5분 전", seoul, now) == datetime(2026, 6, 3, 11, 55, tzinfo=timezone.utc)
    assert parse_time("2 hours ago", seoul, now) == datetime(2026, 6, 3, 10, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="fits none"):
        parse_time("next tuesday", seoul, now)
    iso = TimeSelector(css="t")
    assert parse_time("2026-06-03T18:00:00+09:00", iso) == datetime(2026, 6, 3, 9, 0, tzinfo=timezone.utc)


def test_profile_test_command_shows_posts_media_and_unmatched_selectors(dc_server):
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["profile", "test", "dcinside-gallery", "--term", "딥페이크", "--var", "gallery=politics",
                                      "--base-url", dc_server.base_url, "--allow-network", "127.0.0.0/8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    page = report["pages"][0]
    assert [p["id"] for p in page["posts"]] == ["880412", "880398"]
    assert page["unmatched"] == ["post.images (css 'td.gall_tit img.thumb' @src)"]
    assert page["next"].endswith("page=2")
    assert [d["reason"] for d in report["drops"]] == ["bad timestamp"]
    listed = CliRunner().invoke(app, ["profile", "list"])
    assert listed.exit_code == 0 and "naver-blog-search" in listed.output
    bad = CliRunner().invoke(app, ["profile", "test", "dcinside-gallery", "--term", "x"])
    assert bad.exit_code == 2 and "vars.gallery is required" in bad.output


@needs_chromium
def test_daum_comments_render_and_click_more_through_the_fetcher(fetcher):
    with ReplayServer() as srv:
        srv.route("/v/20260525120000123", body=saved("daum_comments.html"), content_type="text/html; charset=utf-8")
        agent = SiteAgent("daum-news-comments", fetcher=fetcher, vars={"article": "20260525120000123"},
                          base_url=srv.base_url)
        try:
            page = agent.fetch_page("", None)
        finally:
            agent.close()
        # The browser's document request went through the Fetcher, which asked robots.txt first.
        assert [r.path for r in srv.requests][:2] == ["/robots.txt", "/v/20260525120000123"]
    assert [p.post_id for p in page.posts] == ["c101", "c102", "c103", "c104", "c105"]
    assert page.posts[0].account == "정의로운시민"
    assert page.posts[0].created_at == datetime(2026, 5, 25, 3, 31, tzinfo=timezone.utc)
    assert page.posts[0].url == "https://v.daum.net/v/20260525120000123"
    assert page.posts[3].media == (MediaRef(url=f"{srv.base_url}/sticker/104.png", kind="image"),)
    assert page.posts[1].hashtags == ("딥페이크",)
    assert page.next_cursor is None
    assert agent.stats.drops == []


@needs_chromium
def test_the_demo_platform_profile_finds_what_the_demo_api_agent_finds(fetcher, demo_platform_small):
    base, world = demo_platform_small
    term = world.search_terms[0]
    api_posts, _ = crawl(DemoApiAgent(base, fetcher, page_size=7), term)
    agent = build_agent("site", {"profile": "demo-social", "base_url": base}, fetcher=fetcher, blobs=None)
    try:
        page = agent.fetch_page(term, None)
    finally:
        agent.close()
    assert api_posts, f"the demo world has no posts for {term!r}"
    by_id = {p.post_id: p for p in page.posts}
    assert sorted(by_id) == sorted(p.post_id for p in api_posts)
    for expected in api_posts:
        got = by_id[expected.post_id]
        assert (got.url, got.account, got.created_at, got.text, got.hashtags) == (
            expected.url, expected.account, expected.created_at, expected.text, expected.hashtags)
        assert {(m.url, m.kind) for m in got.media} == {(m.url, m.kind) for m in expected.media}
    assert [d for d in agent.stats.drops if d.stage == "parse"] == []
    # A selector is reported unmatched only when no post has that field; media selectors count
    # by URL (an <img> has no text).
    expected = [] if any(m.kind == "video" for p in api_posts for m in p.media) else ["post.videos (css 'video.media')"]
    assert agent.last.unmatched(agent.profile) == expected


@needs_chromium
def test_the_browser_path_obeys_the_fetch_policy(fetcher):
    page = ('<html><body><ul class="list_comment"></ul><script>'
            'fetch("/private/comments").catch(function () {});'
            'var li = document.createElement("li"); li.setAttribute("data-comment-id", "c1");'
            'document.querySelector("ul").appendChild(li);</script></body></html>')
    with ReplayServer() as srv:
        srv.route("/robots.txt", body="User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        srv.route("/v/1", body=page, content_type="text/html")
        agent = SiteAgent("daum-news-comments", fetcher=fetcher, vars={"article": "1"}, base_url=srv.base_url)
        try:
            agent.fetch_page("", None)
            # The script's request to a path robots.txt disallows never reached the server.
            assert "/private/comments" not in [r.path for r in srv.requests]
            assert any(d.reason == "request refused" and "robots.txt disallows" in d.detail for d in agent.stats.drops)
        finally:
            agent.close()
        with Fetcher(FetchPolicy(timeout_s=2, total_timeout_s=5)) as guarded:  # loopback refused
            refused = SiteAgent("daum-news-comments", fetcher=guarded, vars={"article": "1"}, base_url=srv.base_url)
            try:
                with pytest.raises(SourceError, match="blocked address"):
                    refused.fetch_page("", None)
            finally:
                refused.close()


@needs_chromium
def test_campaign_stages_crawl_a_profile_and_fetch_its_media(demo_platform_small, tmp_path):
    """The campaign's own crawl and fetch stages (no Ray here) run a `site` source end to end."""
    from orchestrator.stages import CrawlStage, FetchPolicySpec, FetchStage, MediaRecord

    base, world = demo_platform_small
    term = world.search_terms[0]
    policy = FetchPolicySpec(allow_networks=("127.0.0.0/8",), timeout_s=5)
    crawl_stage = CrawlStage("demo-profile", "site", {"profile": "demo-social", "base_url": base}, policy, str(tmp_path))
    try:
        result = crawl_stage.page(term, None)
    finally:
        crawl_stage.close()
    assert result.error is None and result.page.posts and result.page.next_cursor is None
    refs = [m for p in result.page.posts for m in p.media][:4]
    assert refs, "the demo posts for this term carry media"
    fetch_stage = FetchStage(policy, str(tmp_path))
    records = fetch_stage.run(refs)
    assert all(isinstance(r, MediaRecord) for r in records), records
    for ref, record in zip(refs, records):
        assert record.kind == ref.kind and record.sha256 == world.media[ref.url[len(base):]].sha256


def test_a_profile_file_named_in_a_campaign_travels_inline_to_the_workers(tmp_path, dc_server, fetcher):
    path = tmp_path / "my-board.yaml"
    path.write_text((Path(__file__).parent.parent / "agents" / "profiles" / "dcinside-gallery.yaml").read_text("utf-8")
                    .replace("name: dcinside-gallery", "name: my-board"), "utf-8")
    spec = CampaignSpec.model_validate({"name": "c", "keywords": ["딥페이크"], "sources": [
        {"name": "board", "type": "site", "params": {"profile": str(path), "vars": {"gallery": "politics"},
                                                     "base_url": dc_server.base_url}}]})
    params = spec.sources[0].params
    assert isinstance(params["profile"], dict) and params["profile"]["name"] == "my-board"
    path.unlink()  # a worker elsewhere has no such file; it needs none
    agent = build_agent("site", params, fetcher=fetcher, blobs=None)
    assert [p.post_id for p in agent.fetch_page("딥페이크", None).posts] == ["880412", "880398"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nplatform: bad\nurl: https://example.org/\npost: {container: li, url: a, text: p, colour: red}\n")
    with pytest.raises(ValueError, match="post.colour: unknown key"):
        CampaignSpec.model_validate({"name": "c", "sources": [{"name": "b", "type": "site", "params": {"profile": str(bad)}}]})


def test_cursor_paging_reads_the_next_cursor_off_the_page(fetcher):
    profile = {
        "name": "feed", "platform": "feed", "url": "/feed",
        "paging": {"mode": "cursor", "param": "after", "cursor": {"css": "div.more", "attr": "data-cursor"}},
        "post": {"container": "article", "id": {"xpath": "@data-id"}, "url": {"css": "a", "attr": "href"},
                 "text": "p", "time": {"css": "time", "attr": "datetime"}},
    }
    pages = {
        None: '<article data-id="1"><a href="/p/1">x</a><p>one</p><time datetime="2026-05-25T01:00:00Z"></time></article>'
              '<div class="more" data-cursor="t1"></div>',
        "t1": '<article data-id="2"><a href="/p/2">x</a><p>two</p><time datetime="2026-05-25T00:00:00Z"></time></article>',
    }
    with ReplayServer() as srv:
        srv.route("/feed", handler=lambda r: Answer(body=pages[r.arg("after")], content_type="text/html"))
        agent = SiteAgent(profile, fetcher=fetcher, base_url=srv.base_url)
        assert not agent.searches
        posts, cursors = crawl(agent, "")
        assert [r.arg("after") for r in srv.hits("/feed")] == [None, "t1"]
    assert [(p.post_id, p.text) for p in posts] == [("1", "one"), ("2", "two")]
    assert json.loads(cursors[0]) == {"url": f"{srv.base_url}/feed?after=t1", "page": 1}
