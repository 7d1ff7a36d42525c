"""Feed agents (YouTube, RSS/Atom, web pages, Telegram) against a loopback replay server."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from agents.base import Agent, MediaRef
from agents.errors import SourceError
from agents.feeds import RssAgent
from agents.registry import AgentType
from agents.telegram import TelegramAgent
from agents.web import WebAgent
from agents.youtube import YouTubeAgent
from tests.conftest import fixtures_dir
from tests.replay import Answer, ReplayServer

pytestmark = pytest.mark.timeout(60)

UTC = timezone.utc


@pytest.fixture
def srv():
    with ReplayServer() as server:
        yield server


def youtube_feed_bytes() -> bytes:
    return (fixtures_dir() / "social" / "youtube" / "atom-feed-youtube_DigitalFoundry.xml").read_bytes()


# -- YouTube ------------------------------------------------------------------------------------

def test_youtube_channel_feed_gives_every_video_with_watch_page_and_thumbnail(srv, fetcher):
    srv.route("/feeds/videos.xml", body=youtube_feed_bytes(), content_type="application/atom+xml; charset=utf-8")
    agent: Agent = YouTubeAgent(channel_id="UC9PBzalIcEQCsiIkq36PyUA", fetcher=fetcher, base_url=srv.base_url)
    assert (agent.platform, agent.searches) == ("youtube", False)

    page = agent.fetch_page("", None)

    assert page.next_cursor is None
    assert srv.hits("/feeds/videos.xml")[0].query == {"channel_id": ["UC9PBzalIcEQCsiIkq36PyUA"]}
    assert len(page.posts) == 15 and agent.stats.drops == []
    first, last = page.posts[0], page.posts[-1]
    assert first.post_id == "W_S7iKZZdHw"
    assert first.url == "https://www.youtube.com/watch?v=W_S7iKZZdHw"
    assert first.account == "Digital Foundry"
    assert first.text.startswith("Digital Foundry Games of 2024: The Oliver Mackenzie Collection!\n\nAs the holiday period")
    assert first.text.endswith("16:27 Looking Ahead to 2025")
    assert first.created_at == datetime(2025, 1, 1, 16, 7, 24, tzinfo=UTC)
    assert first.media == (
        MediaRef("https://www.youtube.com/watch?v=W_S7iKZZdHw", "video", 0, resolver="ytdlp"),
        MediaRef("https://i4.ytimg.com/vi/W_S7iKZZdHw/hqdefault.jpg", "image", 1),
    )
    assert page.posts[1].post_id == "U-AfiD2NgYg"
    assert page.posts[1].text.startswith("Call of Duty: Black Ops 6 PS5 Pro Upgrades Tested + Tech Deep Dive!")
    assert page.posts[1].created_at == datetime(2024, 12, 30, 14, 57, 28, tzinfo=UTC)
    assert (last.post_id, last.created_at) == ("araZUoSOPmM", datetime(2024, 12, 14, 17, 20, 43, tzinfo=UTC))
    assert len({p.post_id for p in page.posts}) == 15


def test_youtube_playlist_and_keyword_filter(srv, fetcher):
    srv.route("/feeds/videos.xml", body=youtube_feed_bytes(), content_type="application/atom+xml")
    agent = YouTubeAgent(playlist_id="PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG", fetcher=fetcher,
                         base_url=srv.base_url, keywords=["ps5 PRO"])
    page = agent.fetch_page("", None)
    assert srv.hits("/feeds/videos.xml")[0].query == {"playlist_id": ["PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG"]}
    assert page.posts and all("ps5 pro" in p.text.lower() for p in page.posts)
    assert "U-AfiD2NgYg" in {p.post_id for p in page.posts}
    assert "W_S7iKZZdHw" not in {p.post_id for p in page.posts}


def test_youtube_bad_entries_are_counted_and_the_rest_survive(srv, fetcher):
    feed = youtube_feed_bytes().decode("utf-8")
    feed = feed.replace("<yt:videoId>U-AfiD2NgYg</yt:videoId>", "", 1)
    feed = feed.replace("<published>2024-12-28T15:45:48+00:00</published>", "<published>not a date</published>", 1)
    srv.route("/feeds/videos.xml", body=feed, content_type="application/atom+xml")
    agent = YouTubeAgent(channel_id="UC9PBzalIcEQCsiIkq36PyUA", fetcher=fetcher, base_url=srv.base_url)
    page = agent.fetch_page("", None)
    assert len(page.posts) == 13
    assert sorted(d.reason for d in agent.stats.drops) == ["bad timestamp", "missing field"]
    assert {d.stage for d in agent.stats.drops} == {"parse"}
    assert "youtube video 7vihrmynaRI" in {d.subject for d in agent.stats.drops}


def test_youtube_params_and_source_errors(srv, fetcher):
    with pytest.raises(ValueError, match="exactly one of channel_id or playlist_id"):
        YouTubeAgent(fetcher=fetcher)
    with pytest.raises(ValueError, match="exactly one of channel_id or playlist_id"):
        YouTubeAgent(channel_id="UCabc", playlist_id="PLabc", fetcher=fetcher)
    with pytest.raises(ValueError, match="channel_id"):
        YouTubeAgent(channel_id="UC abc/../", fetcher=fetcher)
    with pytest.raises(ValueError, match="base_url"):
        YouTubeAgent(channel_id="UCabc", fetcher=fetcher, base_url="ftp://x")
    with pytest.raises(ValueError, match="keywords"):
        YouTubeAgent(channel_id="UCabc", fetcher=fetcher, keywords="election")

    missing = YouTubeAgent(channel_id="UCnope", fetcher=fetcher, base_url=srv.base_url)
    with pytest.raises(SourceError) as err:
        missing.fetch_page("", None)
    assert err.value.reason == "HTTP 404"

    srv.route("/feeds/videos.xml", body="<html><body>consent wall</body></html>", content_type="text/html")
    with pytest.raises(SourceError) as err:
        YouTubeAgent(channel_id="UCabc", fetcher=fetcher, base_url=srv.base_url).fetch_page("", None)
    assert err.value.reason == "bad response" and "not an RSS or Atom feed" in err.value.detail


# -- RSS / Atom ---------------------------------------------------------------------------------

RSS_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>지역 뉴스</title><link>{BASE}/news</link><language>ko</language>
  <item>
    <title>후보 토론회 영상</title>
    <link>{BASE}/news/1</link>
    <guid isPermaLink="false">news-1</guid>
    <author>desk@example.org (편집부)</author>
    <pubDate>Thu, 21 May 2026 10:00:00 +0900</pubDate>
    <description><![CDATA[<p>토론회 <b>하이라이트</b></p><img src="/img/inline.jpg" alt=""><img src="/px.gif" width="1" height="1">]]></description>
    <enclosure url="{BASE}/media/debate.mp4" type="video/mp4" length="123"/>
    <enclosure url="{BASE}/media/poster.jpg" type="image/jpeg" length="45"/>
    <enclosure url="{BASE}/media/audio.mp3" type="audio/mpeg" length="67"/>
  </item>
  <item>
    <title>Weather</title>
    <link>{BASE}/news/2</link>
    <pubDate>Fri, 22 May 2026 08:30:00 GMT</pubDate>
    <description>Sunny all day.</description>
  </item>
  <item>
    <title>No date at all</title>
    <guid>news-3</guid>
    <description>undated</description>
  </item>
  <item>
    <description>Neither a guid nor a link</description>
    <pubDate>Fri, 22 May 2026 08:30:00 GMT</pubDate>
  </item>
</channel>
</rss>
"""

ATOM_FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
  <title>Campaign watch</title>
  <id>urn:uuid:feed</id>
  <updated>2026-05-20T12:00:00Z</updated>
  <author><name>Watch desk</name></author>
  <entry>
    <id>urn:uuid:entry-1</id>
    <title>Rally clip</title>
    <link rel="alternate" href="{BASE}/posts/rally"/>
    <updated>2026-05-20T11:00:00+02:00</updated>
    <summary type="html">&lt;p&gt;Rally in the square&lt;/p&gt;</summary>
    <media:content url="{BASE}/m/rally.mp4" type="video/mp4" medium="video"/>
    <media:content url="{BASE}/m/rally-still.jpg" medium="image"/>
    <media:content url="{BASE}/m/rally.swf" type="application/x-shockwave-flash"/>
    <media:thumbnail url="{BASE}/m/rally-thumb.jpg"/>
  </entry>
</feed>
"""


def test_rss_items_with_enclosures_inline_images_and_utc_dates(srv, fetcher):
    srv.route("/feed.xml", body=RSS_FEED, content_type="application/rss+xml")
    agent: Agent = RssAgent(url=f"{srv.base_url}/feed.xml", fetcher=fetcher)
    assert (agent.platform, agent.searches) == ("rss", False)
    page = agent.fetch_page("", None)
    assert page.next_cursor is None
    posts = {p.post_id: p for p in page.posts}
    assert list(posts) == ["news-1", f"{srv.base_url}/news/2"]  # a link stands in for a missing guid

    debate = posts["news-1"]
    assert debate.url == f"{srv.base_url}/news/1"
    assert debate.text == "후보 토론회 영상\n\n토론회 하이라이트"
    assert debate.created_at == datetime(2026, 5, 21, 1, 0, tzinfo=UTC)  # +0900 converted
    assert debate.lang == "ko"
    assert "편집부" in debate.account
    assert [(m.url, m.kind, m.position) for m in debate.media] == [
        (f"{srv.base_url}/media/debate.mp4", "video", 0),
        (f"{srv.base_url}/media/poster.jpg", "image", 1),
        (f"{srv.base_url}/img/inline.jpg", "image", 2),  # relative <img> resolved; the 1x1 pixel skipped
    ]
    weather = posts[f"{srv.base_url}/news/2"]
    assert weather.account == "지역 뉴스"  # no author: the feed's title
    assert weather.media == ()

    assert sorted((d.stage, d.reason) for d in agent.stats.drops) == [("parse", "missing id"), ("parse", "missing timestamp")]


def test_rss_keyword_filter_matches_korean_text(srv, fetcher):
    srv.route("/feed.xml", body=RSS_FEED, content_type="application/rss+xml")
    agent = RssAgent(url=f"{srv.base_url}/feed.xml", fetcher=fetcher, keywords=["토론회"])
    assert [p.post_id for p in agent.fetch_page("", None).posts] == ["news-1"]


def test_atom_entry_with_media_content_and_thumbnail(srv, fetcher):
    srv.route("/atom", body=ATOM_FEED, content_type="application/atom+xml")
    page = RssAgent(url=f"{srv.base_url}/atom", fetcher=fetcher).fetch_page("", None)
    (post,) = page.posts
    assert post.post_id == "urn:uuid:entry-1"
    assert post.url == f"{srv.base_url}/posts/rally"
    assert post.account == "Watch desk"
    assert post.text == "Rally clip\n\nRally in the square"
    assert post.created_at == datetime(2026, 5, 20, 9, 0, tzinfo=UTC)  # only <updated>, +02:00
    assert [(m.url, m.kind) for m in post.media] == [
        (f"{srv.base_url}/m/rally.mp4", "video"),
        (f"{srv.base_url}/m/rally-still.jpg", "image"),
        (f"{srv.base_url}/m/rally-thumb.jpg", "image"),
    ]


def test_rss_agent_reads_the_real_youtube_feed(srv, fetcher):
    srv.route("/yt.xml", body=youtube_feed_bytes(), content_type="application/atom+xml")
    page = RssAgent(url=f"{srv.base_url}/yt.xml", fetcher=fetcher).fetch_page("", None)
    assert len(page.posts) == 15
    first = page.posts[0]
    assert first.post_id == "yt:video:W_S7iKZZdHw"
    assert first.url == "https://www.youtube.com/watch?v=W_S7iKZZdHw"
    assert first.created_at == datetime(2025, 1, 1, 16, 7, 24, tzinfo=UTC)
    # The flash player is neither image nor video; the thumbnail is.
    assert first.media == (MediaRef("https://i4.ytimg.com/vi/W_S7iKZZdHw/hqdefault.jpg", "image", 0),)


def test_rss_params_and_source_errors(srv, fetcher):
    with pytest.raises(ValueError, match="url"):
        RssAgent(url="not a url", fetcher=fetcher)
    with pytest.raises(ValueError, match=r"keywords\[1\]"):
        RssAgent(url="https://example.org/feed", fetcher=fetcher, keywords=["ok", ""])
    with pytest.raises(SourceError) as err:
        RssAgent(url=f"{srv.base_url}/missing.xml", fetcher=fetcher).fetch_page("", None)
    assert err.value.reason == "HTTP 404"
    srv.route("/page", body="<html><head><title>x</title></head><body>hello</body></html>", content_type="text/html")
    with pytest.raises(SourceError) as err:
        RssAgent(url=f"{srv.base_url}/page", fetcher=fetcher).fetch_page("", None)
    assert err.value.reason == "bad response"


# -- web pages ----------------------------------------------------------------------------------

ARTICLE = """<!doctype html>
<html lang="ko"><head>
  <title>Deepfake of the debate spreads</title>
  <base href="/site/">
  <meta property="og:description" content="A doctored clip of the   debate.">
  <meta property="article:published_time" content="2026-05-21T09:30:00+09:00">
  <meta property="og:image" content="{BASE}/site/og.jpg">
  <meta name="twitter:image" content="tw.jpg">
  <meta property="og:video" content="https://video.example.org/embed/42">
  <meta property="og:video:type" content="text/html">
</head><body>
  <img src="hero-small.jpg" srcset="hero-small.jpg 480w, hero-large.jpg 1600w, hero-mid.jpg 900w">
  <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
  <img src="/pixel.gif" width="1" height="1">
  <img src="og.jpg">
  <video src="clip.mp4"></video>
  <video><source src="/media/alt.webm" type="video/webm"><source src="/media/alt.mp4" type="video/mp4"></video>
  <a href="other.html">more</a>
</body></html>
"""


def test_web_page_becomes_one_post_with_all_its_media(srv, fetcher):
    srv.route("/article", body=ARTICLE, content_type="text/html; charset=utf-8")
    agent: Agent = WebAgent(urls=[f"{srv.base_url}/article"], fetcher=fetcher)
    assert (agent.platform, agent.searches) == ("web", False)
    page = agent.fetch_page("", None)
    assert page.next_cursor is None
    (post,) = page.posts
    base = srv.base_url
    assert post.post_id == post.url == f"{base}/article"
    assert post.account == base.split("//", 1)[1]
    assert post.text == "Deepfake of the debate spreads\n\nA doctored clip of the debate."
    assert post.created_at == datetime(2026, 5, 21, 0, 30, tzinfo=UTC)
    assert post.lang == "ko"
    assert [(m.url, m.kind, m.resolver) for m in post.media] == [
        (f"{base}/site/hero-large.jpg", "image", None),  # srcset's largest, resolved against <base>
        (f"{base}/site/og.jpg", "image", None),  # data: URL and the 1x1 pixel skipped
        (f"{base}/site/clip.mp4", "video", None),
        (f"{base}/media/alt.webm", "video", None),
        (f"{base}/media/alt.mp4", "video", None),
        (f"{base}/site/tw.jpg", "image", None),  # og:image was a duplicate of the <img>
        ("https://video.example.org/embed/42", "video", "ytdlp"),  # a player page, for yt-dlp
    ]
    assert [m.position for m in post.media] == list(range(7))


def test_web_follows_same_host_links_breadth_first_and_resumes_from_the_cursor(srv, fetcher):
    def page(title: str, *links: str) -> str:
        anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
        return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>"

    srv.route("/", body=page("Home", "/a", "/b#top", "https://elsewhere.example/x", "/photo.jpg", "/c", "/"), content_type="text/html")
    srv.route("/a", body=page("A", "/d", "/"), content_type="text/html")
    srv.route("/b", body=page("B", "/a"), content_type="text/html")
    srv.route("/c", body=page("C"), content_type="text/html")
    srv.route("/d", body=page("D"), content_type="text/html")

    start = datetime.now(timezone.utc)
    first = WebAgent(urls=[f"{srv.base_url}/"], fetcher=fetcher, follow_links=True, max_pages=4)
    page1 = first.fetch_page("", None)
    assert [p.text for p in page1.posts] == ["Home"]
    assert start - timedelta(seconds=1) <= page1.posts[0].created_at <= datetime.now(timezone.utc)  # no date: fetch time
    state = json.loads(page1.next_cursor)
    assert state["queue"] == [f"{srv.base_url}/a", f"{srv.base_url}/b", f"{srv.base_url}/c"]

    # A new agent (a resumed campaign) continues from the stored cursor alone.
    resumed = WebAgent(urls=[f"{srv.base_url}/"], fetcher=fetcher, follow_links=True, max_pages=4)
    titles, cursor, calls = [], page1.next_cursor, 0
    while cursor is not None:
        result = resumed.fetch_page("", cursor)
        assert result.next_cursor != cursor
        titles += [p.text for p in result.posts]
        cursor = result.next_cursor
        calls += 1
        assert calls < 10
    assert titles == ["A", "B", "C"]  # max_pages=4 in all: /d was never queued
    assert [r.path for r in srv.requests if r.path != "/robots.txt"] == ["/", "/a", "/b", "/c"]


def test_web_unreachable_page_is_a_drop_and_a_dead_source_an_error(srv, fetcher):
    srv.route("/ok", body="<html><head><title>Fine</title></head></html>", content_type="text/html")
    srv.route("/image", body=b"\x89PNG\r\n", content_type="image/png")
    agent = WebAgent(urls=[f"{srv.base_url}/gone", f"{srv.base_url}/image", f"{srv.base_url}/ok"], fetcher=fetcher)
    page = agent.fetch_page("", None)
    assert page.posts == () and page.next_cursor is not None
    page = agent.fetch_page("", page.next_cursor)
    assert page.posts == ()
    page = agent.fetch_page("", page.next_cursor)
    assert [p.text for p in page.posts] == ["Fine"] and page.next_cursor is None
    assert [(d.stage, d.reason, d.subject) for d in agent.stats.drops] == [
        ("crawl", "HTTP 404", f"{srv.base_url}/gone"),
        ("parse", "not html", f"{srv.base_url}/image"),
    ]

    dead = WebAgent(urls=[f"{srv.base_url}/gone"], fetcher=fetcher)
    with pytest.raises(SourceError) as err:
        dead.fetch_page("", None)
    assert err.value.reason == "unreachable" and "HTTP 404" in err.value.detail


def test_web_keywords_and_params(srv, fetcher):
    srv.route("/article", body=ARTICLE, content_type="text/html")
    assert WebAgent(urls=[f"{srv.base_url}/article"], fetcher=fetcher, keywords=["DEEPFAKE"]).fetch_page("", None).posts
    assert WebAgent(urls=[f"{srv.base_url}/article"], fetcher=fetcher, keywords=["선거"]).fetch_page("", None).posts == ()
    with pytest.raises(ValueError, match="urls must be a non-empty list"):
        WebAgent(urls=f"{srv.base_url}/article", fetcher=fetcher)
    with pytest.raises(ValueError, match=r"urls\[1\]"):
        WebAgent(urls=["https://example.org/", "javascript:alert(1)"], fetcher=fetcher)
    with pytest.raises(ValueError, match="max_pages"):
        WebAgent(urls=["https://example.org/"], fetcher=fetcher, follow_links=True, max_pages=0)
    with pytest.raises(ValueError, match="follow_links"):
        WebAgent(urls=["https://example.org/"], fetcher=fetcher, follow_links="yes")
    with pytest.raises(ValueError, match="cursor"):
        WebAgent(urls=["https://example.org/"], fetcher=fetcher).fetch_page("", "{not json")


# -- Telegram -----------------------------------------------------------------------------------

def tg_message(post_id: int, when: str, body: str, channel: str = "elecwatch") -> str:
    """One message as t.me/s renders it (structure of the real widget markup, trimmed)."""
    return f"""
<div class="tgme_widget_message_wrap js-widget_message_wrap">
  <div class="tgme_widget_message text_not_supported_wrap js-widget_message" data-post="{channel}/{post_id}" data-view="x">
    <div class="tgme_widget_message_user"><a href="https://t.me/{channel}"><i class="tgme_widget_message_user_photo bgcolor1" data-content="E"></i></a></div>
    <div class="tgme_widget_message_bubble">
      <div class="tgme_widget_message_author accent_color"><a class="tgme_widget_message_owner_name" href="https://t.me/{channel}"><span dir="auto">Election Watch</span></a></div>
      {body}
      <div class="tgme_widget_message_footer compact js-message_footer">
        <div class="tgme_widget_message_info short js-message_info">
          <span class="tgme_widget_message_views">1.2K</span>
          <span class="tgme_widget_message_meta"><a class="tgme_widget_message_date" href="https://t.me/{channel}/{post_id}"><time datetime="{when}" class="time">10:30</time></a></span>
        </div>
      </div>
    </div>
  </div>
</div>"""


def tg_page(*messages: str, channel: str = "elecwatch") -> str:
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Election Watch – Telegram</title></head>
<body class="widget_frame_base tgme_webpage">
<header class="tgme_header"><div class="tgme_channel_info">
  <div class="tgme_channel_info_header_title"><span dir="auto">Election Watch</span></div>
  <div class="tgme_channel_info_header_username"><a href="https://t.me/{channel}">@{channel}</a></div>
</div></header>
<main class="tgme_main"><section class="tgme_channel_history js-message_history">
{''.join(messages)}
</section></main></body></html>"""


ALBUM = """
<div class="tgme_widget_message_grouped_wrap js-message_grouped_wrap" data-margin-w="2" data-margin-h="2" style="width:453px;">
  <div class="tgme_widget_message_grouped js-message_grouped" style="padding-top:66%">
    <div class="tgme_widget_message_grouped_layer js-message_grouped_layer" style="width:453px;height:300px">
      <a class="tgme_widget_message_photo_wrap grouped_media_wrap blured js-message_photo" style="left:0px;top:0px;width:226px;height:300px;margin-right:2px;background-image:url('{BASE}/cdn/photo-a.jpg')" data-ratio="0.75" href="https://t.me/elecwatch/101?single"></a>
      <a class="tgme_widget_message_photo_wrap grouped_media_wrap blured js-message_photo" style="left:228px;top:0px;width:225px;height:300px;background-image:url(&quot;{BASE}/cdn/photo-b.jpg&quot;)" data-ratio="0.75" href="https://t.me/elecwatch/102?single"></a>
    </div>
  </div>
</div>
<div class="tgme_widget_message_text js-message_text" dir="auto">후보 연설 사진<br/>원본 확인 중 <a href="?q=%23%EC%84%A0%EA%B1%B02026">#선거2026</a> <a href="?q=%23factcheck">#factcheck</a></div>
"""

VIDEO = """
<a class="tgme_widget_message_video_player js-message_video_player" href="https://t.me/elecwatch/103">
  <i class="tgme_widget_message_video_thumb" style="background-image:url('{BASE}/cdn/video-thumb.jpg')"></i>
  <div class="tgme_widget_message_video_wrap"><video src="{BASE}/cdn/video.mp4?token=abc" class="tgme_widget_message_video js-message_video" width="100%" height="100%"></video></div>
  <div class="message_video_play"></div>
  <time class="message_video_duration js-message_video_duration">0:15</time>
</a>
<div class="tgme_widget_message_text js-message_text" dir="auto">Is this clip real?</div>
"""

TEXT_ONLY = """<div class="tgme_widget_message_text js-message_text" dir="auto">Polls open at <b>6am</b> tomorrow.</div>"""


@pytest.fixture
def channel(srv):
    newest = tg_page(
        tg_message(101, "2026-05-21T01:00:00+00:00", ALBUM),
        tg_message(103, "2026-05-21T02:15:00+00:00", VIDEO),
        tg_message(104, "2026-05-21T12:00:00+09:00", TEXT_ONLY),
    )
    older = tg_page(
        tg_message(99, "2026-05-20T08:00:00+00:00", TEXT_ONLY.replace("6am", "7am")),
        tg_message(100, "2026-05-20T09:00:00+00:00", "<div class='tgme_widget_message_text'>broken</div>").replace(
            '<time datetime="2026-05-20T09:00:00+00:00" class="time">10:30</time>', ""),
    )

    def answer(request):
        before = request.arg("before")
        body = {None: newest, "101": older, "99": tg_page()}.get(before)
        return Answer(body=body, content_type="text/html; charset=utf-8") if body else Answer(status=400, body="bad before")

    srv.route("/s/elecwatch", handler=answer)
    return srv


def test_telegram_channel_pages_back_with_before_and_reads_media(channel, fetcher):
    agent: Agent = TelegramAgent(channel="elecwatch", fetcher=fetcher, base_url=channel.base_url)
    assert (agent.platform, agent.searches) == ("telegram", False)
    page = agent.fetch_page("", None)
    assert page.next_cursor == "101"
    album, video, text = page.posts
    base = channel.base_url

    assert album.post_id == "elecwatch/101"
    assert album.url == f"{base}/elecwatch/101"
    assert album.account == "elecwatch"
    assert album.text == "후보 연설 사진\n원본 확인 중 #선거2026 #factcheck"
    assert album.hashtags == ("선거2026", "factcheck")
    assert album.created_at == datetime(2026, 5, 21, 1, 0, tzinfo=UTC)
    assert album.media == (
        MediaRef(f"{base}/cdn/photo-a.jpg", "image", 0),
        MediaRef(f"{base}/cdn/photo-b.jpg", "image", 1),
    )
    assert video.post_id == "elecwatch/103" and video.text == "Is this clip real?"
    assert video.media == (
        MediaRef(f"{base}/cdn/video-thumb.jpg", "image", 0),
        MediaRef(f"{base}/cdn/video.mp4?token=abc", "video", 1),
    )
    assert text.text == "Polls open at 6am tomorrow." and text.media == () and text.hashtags == ()
    assert text.created_at == datetime(2026, 5, 21, 3, 0, tzinfo=UTC)  # +09:00 converted

    older = agent.fetch_page("", page.next_cursor)
    assert [p.post_id for p in older.posts] == ["elecwatch/99"]
    assert older.next_cursor == "99"
    assert [(d.stage, d.reason, d.subject) for d in agent.stats.drops] == [("parse", "missing timestamp", "telegram elecwatch/100")]

    oldest = agent.fetch_page("", older.next_cursor)
    assert oldest.posts == () and oldest.next_cursor is None
    assert [r.query.get("before") for r in channel.hits("/s/elecwatch")] == [None, ["101"], ["99"]]


def test_telegram_keywords_params_and_source_errors(channel, fetcher):
    agent = TelegramAgent(channel="@elecwatch", fetcher=fetcher, base_url=channel.base_url, keywords=["CLIP"])
    assert [p.post_id for p in agent.fetch_page("", None).posts] == ["elecwatch/103"]
    with pytest.raises(ValueError, match="channel"):
        TelegramAgent(channel="no/slashes", fetcher=fetcher)
    with pytest.raises(ValueError, match="cursor"):
        agent.fetch_page("", "abc")
    with pytest.raises(SourceError) as err:
        TelegramAgent(channel="nochannel", fetcher=fetcher, base_url=channel.base_url).fetch_page("", None)
    assert err.value.reason == "HTTP 404"
    channel.route("/s/privatechan", body="<html><body><div class='tgme_page'>Join</div></body></html>", content_type="text/html")
    with pytest.raises(SourceError) as err:
        TelegramAgent(channel="privatechan", fetcher=fetcher, base_url=channel.base_url).fetch_page("", None)
    assert err.value.reason == "bad response"


# -- registry lines the lead adds ---------------------------------------------------------------

def test_campaign_params_exclude_the_injected_fetcher():
    expected = {
        YouTubeAgent: {"channel_id", "playlist_id", "base_url", "keywords"},
        RssAgent: {"url", "keywords"},
        WebAgent: {"urls", "follow_links", "max_pages", "keywords"},
        TelegramAgent: {"channel", "base_url", "keywords"},
    }
    for factory, params in expected.items():
        assert set(AgentType(factory.platform, factory, ("fetcher",), "").params()) == params
