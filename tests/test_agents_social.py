"""Mastodon, Bluesky and Reddit agents against recorded real API answers, replayed on loopback.

The recordings live in ../shared/fixtures/social/ (see its README); the expected values below
were read off those files by hand.
"""
from __future__ import annotations

import copy
import io
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
from PIL import Image

from agents._social import html_to_text
from agents.base import MediaRef, Post
from agents.bluesky import BlueskyAgent
from agents.errors import SourceError
from agents.fetch import Fetched
from agents.mastodon import MastodonAgent
from agents.reddit import RedditAgent
from tests.conftest import fixtures_dir
from tests.replay import Answer, ReplayServer

pytestmark = pytest.mark.timeout(60)

UTC = timezone.utc


def social(platform: str, name: str) -> Any:
    return json.loads((fixtures_dir() / "social" / platform / name).read_text(encoding="utf-8"))


def crawl(agent, term: str) -> list[Post]:
    posts, cursor = [], None
    for _ in range(20):
        page = agent.fetch_page(term, cursor)
        posts.extend(page.posts)
        if page.next_cursor is None:
            return posts
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


def reasons(agent) -> list[str]:
    assert all(d.stage == "parse" for d in agent.stats.drops)
    return sorted(d.reason for d in agent.stats.drops)


def jpeg_bytes(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(out, "JPEG")
    return out.getvalue()


def png_bytes(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(out, "PNG")
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Mastodon

STATUS_TWO_IMAGES = "localhost_POST_api_v1_statuses_with_2_media.json"
STATUS_ONE_IMAGE = "mastodon.social_api_v1_statuses_110447003454258227.json"
STATUS_AUDIO = "mastodon.social_api_v1_statuses_110447012773105565.json"


def test_mastodon_hashtag_timeline(fetcher):
    timeline = social("mastodon", "localhost_api_v1_timelines_tag_hoot.json")
    with ReplayServer() as srv:
        srv.route(
            "/api/v1/timelines/tag/hoot",
            handler=lambda req: Answer(json_body=[] if req.arg("max_id") else timeline),
        )
        agent = MastodonAgent(srv.base_url, fetcher, page_size=20)
        assert agent.platform == "mastodon" and agent.searches is True
        page = agent.fetch_page("#hoot", None)
        assert page.posts == (
            Post(
                platform="mastodon",
                post_id="http://localhost:3000/ap/users/117020566092212359/statuses/117020593741189701",
                url="http://localhost:3000/@mastodonpy_test_2/117020593741189701",
                account="mastodonpy_test_2",
                text="#hoot (hashtag toot)",
                created_at=datetime(2026, 8, 1, 13, 55, 55, 867000, tzinfo=UTC),
                hashtags=("hoot",),
                media=(),
                lang="ja",
            ),
        )
        assert page.next_cursor == "117020593741189701"  # the smallest id seen, as max_id
        last = agent.fetch_page("#hoot", page.next_cursor)
        assert last.posts == () and last.next_cursor is None
        assert [r.query for r in srv.hits("/api/v1/timelines/tag/hoot")] == [
            {"limit": ["20"]},
            {"limit": ["20"], "max_id": ["117020593741189701"]},
        ]
        assert "authorization" not in srv.hits("/api/v1/timelines/tag/hoot")[0].headers
    assert agent.stats.pages == 2 and agent.stats.posts == 1 and agent.stats.drops == []


def test_mastodon_status_search_with_images_and_audio(fetcher):
    statuses = [social("mastodon", n) for n in (STATUS_TWO_IMAGES, STATUS_ONE_IMAGE, STATUS_AUDIO)]
    with ReplayServer() as srv:
        srv.route("/api/v2/search", json_body={"accounts": [], "statuses": statuses, "hashtags": []})
        agent = MastodonAgent(srv.base_url + "/", fetcher)
        page = agent.fetch_page("funny walk", None)
        (request,) = srv.hits("/api/v2/search")
        assert request.query == {"q": ["funny walk"], "type": ["statuses"], "limit": ["40"]}
        assert "authorization" not in request.headers

    two, one, audio = page.posts
    assert two.post_id == "http://localhost:3000/ap/users/117020565966271181/statuses/117020576664345360"
    assert two.url == "http://localhost:3000/@mastodonpy_test/117020576664345360"
    assert (two.account, two.text, two.lang) == ("mastodonpy_test", "LOL check this out", "en")
    assert two.created_at == datetime(2026, 8, 1, 13, 51, 35, 294000, tzinfo=UTC)
    assert two.media == (
        MediaRef("http://localhost:3000/system/media_attachments/files/117/020/576/646/493/592/original/963111bc1b0bd6b6.jpg", "image", 0),
        MediaRef("http://localhost:3000/system/media_attachments/files/117/020/576/661/238/952/original/c71a1b53ce29a852.jpg", "image", 1),
    )
    assert (one.account, one.text, one.lang, one.hashtags) == ("halcy", "image post", "de", ())
    assert one.created_at == datetime(2023, 5, 28, 15, 25, 28, 292000, tzinfo=UTC)
    assert one.media == (
        MediaRef("https://files.mastodon.social/media_attachments/files/110/447/002/079/181/641/original/97232afa341c291e.jpg", "image", 0),
    )
    # A remote status: its ActivityPub uri is the id, the account is qualified, the audio is dropped.
    assert audio.post_id == "https://icosahedron.website/users/halcy/statuses/110447012380248325"
    assert audio.url == "https://icosahedron.website/@halcy/110447012380248325"
    assert audio.account == "halcy@icosahedron.website"
    assert audio.text == "@halcy@mastodon.social audio post, but remote"
    assert audio.media == ()
    (dropped,) = agent.stats.drops
    assert (dropped.stage, dropped.reason) == ("parse", "unsupported media type")
    assert "110447012773105565" in dropped.subject and "'audio'" in dropped.detail
    assert page.next_cursor == "110447003454258227"


def _status(template: dict, status_id: str, uri: str) -> dict:
    status = copy.deepcopy(template)
    status["id"], status["uri"] = status_id, uri
    return status


def test_mastodon_pages_by_max_id_and_records_reblogs_as_the_original(fetcher):
    base = social("mastodon", STATUS_ONE_IMAGE)
    original = social("mastodon", STATUS_TWO_IMAGES)
    booster = copy.deepcopy(base)
    booster["account"]["acct"] = "booster@other.example"
    reblog = _status(booster, "250", "https://other.example/users/booster/statuses/250/activity")
    reblog.update(content="", media_attachments=[], reblog=original)
    pages = {
        None: [_status(base, "300", "https://m.example/s/300"), reblog],
        "250": [_status(base, "100", "https://m.example/s/100")],
        "100": [],
    }
    with ReplayServer() as srv:
        srv.route("/api/v2/search", handler=lambda req: Answer(json_body={"statuses": pages[req.arg("max_id")]}))
        agent = MastodonAgent(srv.base_url, fetcher, page_size=2)
        posts = crawl(agent, "walk")
        assert [r.arg("max_id") for r in srv.hits("/api/v2/search")] == [None, "250", "100"]
    assert [p.post_id for p in posts] == [
        "https://m.example/s/300",
        "http://localhost:3000/ap/users/117020565966271181/statuses/117020576664345360",
        "https://m.example/s/100",
    ]
    boosted = posts[1]
    assert boosted.account == "mastodonpy_test" and boosted.text == "LOL check this out"
    assert len(boosted.media) == 2


def test_mastodon_bad_records_are_counted_and_the_page_survives(fetcher):
    good = social("mastodon", STATUS_ONE_IMAGE)
    no_account = _status(good, "5", "https://m.example/s/5")
    del no_account["account"]
    bad_time = _status(good, "4", "https://m.example/s/4")
    bad_time["created_at"] = "last tuesday"
    mixed = _status(good, "3", "https://m.example/s/3")
    mixed["media_attachments"] = [
        {"type": "gifv", "url": None, "remote_url": "https://remote.example/loop.mp4"},
        {"type": "unknown", "url": None, "remote_url": "https://remote.example/what"},
        {"type": "video", "url": "https://cdn.example/clip.mp4", "remote_url": None},
        {"type": "image", "url": "/relative.jpg"},
        "not an attachment",
    ]
    with ReplayServer() as srv:
        srv.route("/api/v1/timelines/tag/wahl2026", json_body=[42, no_account, bad_time, mixed])
        agent = MastodonAgent(srv.base_url, fetcher)
        page = agent.fetch_page("#wahl2026", None)
    (post,) = page.posts
    assert post.post_id == "https://m.example/s/3"
    assert post.media == (
        MediaRef("https://remote.example/loop.mp4", "video", 0),
        MediaRef("https://cdn.example/clip.mp4", "video", 2),
    )
    assert reasons(agent) == [
        "bad media", "bad media", "bad timestamp", "missing field", "not an object", "unsupported media type",
    ]
    assert page.next_cursor == "3"


def test_mastodon_source_errors(fetcher):
    status = social("mastodon", STATUS_ONE_IMAGE)
    with ReplayServer() as srv:
        srv.route("/api/v1/timelines/tag/down", status=500, body="oops", content_type="text/plain")
        srv.route("/api/v1/timelines/tag/shape", json_body={"error": "This method requires an authenticated user"})
        srv.route("/api/v1/timelines/tag/stuck", json_body=[status])  # ignores max_id
        agent = MastodonAgent(srv.base_url, fetcher)
        for term, reason in [("#down", "HTTP 500"), ("#missing", "HTTP 404"), ("#shape", "bad response")]:
            with pytest.raises(SourceError) as err:
                agent.fetch_page(term, None)
            assert err.value.reason == reason, term
        first = agent.fetch_page("#stuck", None)
        with pytest.raises(SourceError) as err:
            agent.fetch_page("#stuck", first.next_cursor)
        assert err.value.reason == "cursor did not advance"
        assert len(srv.hits("/api/v1/timelines/tag/down")) == 3  # the fetcher retried the 500


def test_mastodon_validates_params_and_terms(fetcher):
    for kwargs, name in [
        ({"base_url": "mastodon.social"}, "base_url"),
        ({"base_url": "https://m.example", "page_size": 41}, "page_size"),
        ({"base_url": "https://m.example", "page_size": True}, "page_size"),
        ({"base_url": "https://m.example", "access_token": ""}, "access_token"),
        ({"base_url": "https://m.example", "access_token": "two words"}, "access_token"),
    ]:
        with pytest.raises(ValueError, match=name):
            MastodonAgent(fetcher=fetcher, **kwargs)
    agent = MastodonAgent("https://m.example", fetcher)
    for term in ["", "   ", "#", "#two words", "#a/b"]:
        with pytest.raises(ValueError, match="search term|hashtag"):
            agent.fetch_page(term, None)


def test_html_to_text_keeps_line_breaks_and_full_links():
    note = social("mastodon", STATUS_ONE_IMAGE)["account"]["note"]
    assert html_to_text(note) == (
        "https://halcy.de/ ~ Local account.\n\n"
        "Now also and possibly primarily @halcy . You should really follow me there. "
        "This account only exists for testing now."
    )
    assert html_to_text("<p>a<br>b &amp; c<!-- hidden --></p><p>d</p>") == "a\nb & c\n\nd"
    assert html_to_text("") == ""


# ---------------------------------------------------------------------------------------------
# Bluesky

DID = "did:plc:kvwvcn5iqfooopmyzvb4qzba"


def bluesky_views() -> tuple[dict, dict, dict]:
    """The fixture's post view, a text post built from the fixture record, and a video post."""
    view = social("bluesky", "getPostThread_thread_view_post_with_embed_media.json")["thread"]["post"]
    record = social("bluesky", "post_record.json")
    text_view = {
        "uri": record["uri"], "cid": record["cid"],
        "author": {"did": DID, "handle": "test.marshal.dev"},
        "record": {
            **record["value"],
            "facets": [{
                "index": {"byteStart": 0, "byteEnd": 4},
                "features": [
                    {"$type": "app.bsky.richtext.facet#tag", "tag": "Election"},
                    {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com"},
                ],
            }],
            "tags": ["deepfake", "Election"],
        },
        "indexedAt": "2024-02-22T19:58:14.000Z",
    }
    video_view = copy.deepcopy(view)
    video_view["uri"] = f"at://{DID}/app.bsky.feed.post/3kvideo0000a"
    video_view["author"]["handle"] = "handle.invalid"
    video_view["record"].update(text="a video", langs=["de", "en"])
    video_view["embed"] = {
        "$type": "app.bsky.embed.video#view",
        "cid": "bafkreivideocid",
        "playlist": f"https://video.bsky.app/watch/{DID}/bafkreivideocid/playlist.m3u8",
        "thumbnail": f"https://video.bsky.app/watch/{DID}/bafkreivideocid/thumbnail.jpg",
    }
    return view, text_view, video_view


def test_bluesky_search_pages_and_parses_post_views(fetcher):
    view, text_view, video_view = bluesky_views()
    pages = {None: {"posts": [view, text_view], "cursor": "2"}, "2": {"posts": [video_view]}}
    with ReplayServer() as srv:
        srv.route("/xrpc/app.bsky.feed.searchPosts", handler=lambda req: Answer(json_body=pages[req.arg("cursor")]))
        agent = BlueskyAgent(fetcher, base_url=srv.base_url, pds="https://pds.example", page_size=2)
        assert agent.platform == "bluesky" and agent.searches is True
        posts = crawl(agent, "#election")
        hits = srv.hits("/xrpc/app.bsky.feed.searchPosts")
        assert [r.query for r in hits] == [
            {"q": ["#election"], "sort": ["latest"], "limit": ["2"]},
            {"q": ["#election"], "sort": ["latest"], "limit": ["2"], "cursor": ["2"]},
        ]

    images, text, video = posts
    assert images == Post(
        platform="bluesky",
        post_id=f"at://{DID}/app.bsky.feed.post/3kaheyt6vpc22",
        url="https://bsky.app/profile/test.marshal.dev/post/3kaheyt6vpc22",
        account="test.marshal.dev",
        text="",
        created_at=datetime(2023, 9, 28, 12, 49, 36, 735000, tzinfo=UTC),
        hashtags=(),
        # recordWithMedia: the attached image is this post's; the quoted post (text "test") is not.
        media=(MediaRef(
            f"https://cdn.bsky.app/img/feed_fullsize/plain/{DID}/bafkreic3cp5ky525vsukjvrzxsc2h3jka2gud74l2hgeatw2rhj2qycnmq@jpeg",
            "image", 0,
        ),),
        lang="en",
    )
    assert text.post_id == f"at://{DID}/app.bsky.feed.post/3k2yihcrp6f2c"
    assert text.url == "https://bsky.app/profile/test.marshal.dev/post/3k2yihcrp6f2c"
    assert (text.text, text.media, text.lang) == ("new text114", (), None)
    assert text.created_at == datetime(2024, 2, 22, 19, 58, 13, 903293, tzinfo=UTC)
    assert text.hashtags == ("Election", "deepfake")
    # The HLS playlist is not fetched: the original upload comes from the PDS as a blob.
    assert video.media == (MediaRef(
        "https://pds.example/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3Akvwvcn5iqfooopmyzvb4qzba&cid=bafkreivideocid",
        "video", 0,
    ),)
    assert video.url == f"https://bsky.app/profile/{DID}/post/3kvideo0000a"  # handle.invalid -> DID
    assert (video.text, video.lang) == ("a video", "de")
    assert agent.stats.drops == [] and agent.stats.pages == 2 and agent.stats.posts == 3


def test_bluesky_bad_records_are_counted_and_the_page_survives(fetcher):
    view, _, _ = bluesky_views()
    record = social("bluesky", "post_record.json")  # a repo record, not a post view: no author

    def variant(rkey: str, **changes: Any) -> dict:
        v = copy.deepcopy(view)
        v["uri"] = f"at://{DID}/app.bsky.feed.post/{rkey}"
        v.update(changes)
        return v

    bad_time = variant("3kbadtime", record={**view["record"], "createdAt": "yesterday"})
    bad_uri = variant("x", uri="https://bsky.app/profile/x/post/y")
    future_embed = variant("3kfuture", embed={"$type": "app.bsky.embed.hologram#view"})
    link_card = variant("3klink", embed={"$type": "app.bsky.embed.external#view", "external": {"uri": "https://e.example"}})
    half_images = variant("3khalf", embed={"$type": "app.bsky.embed.images#view", "images": [
        {"thumb": "https://cdn.example/t.jpg"}, {"fullsize": "https://cdn.example/full.jpg"},
    ]})
    with ReplayServer() as srv:
        srv.route("/xrpc/app.bsky.feed.searchPosts", json_body={
            "posts": [record, "x", bad_time, bad_uri, future_embed, link_card, half_images], "cursor": "25",
        })
        agent = BlueskyAgent(fetcher, base_url=srv.base_url)
        page = agent.fetch_page("deepfake", None)
    assert [p.post_id.rsplit("/", 1)[1] for p in page.posts] == ["3kfuture", "3klink", "3khalf"]
    assert [p.media for p in page.posts] == [(), (), (MediaRef("https://cdn.example/full.jpg", "image", 1),)]
    assert reasons(agent) == [
        "bad field", "bad media", "bad timestamp", "missing field", "not an object", "unsupported media type",
    ]
    assert page.next_cursor == "25"


def test_bluesky_source_errors_and_validation(fetcher):
    view = bluesky_views()[0]
    with ReplayServer() as srv:
        path = "/xrpc/app.bsky.feed.searchPosts"
        srv.route(path, handler=lambda req: {
            "down": Answer(status=502, body="bad gateway"),
            "auth": Answer(status=403, json_body={"error": "AuthMissing", "message": "Authentication Required"}),
            "shape": Answer(json_body=[]),
            "stuck": Answer(json_body={"posts": [view], "cursor": "7"}),
        }[req.arg("q")])
        agent = BlueskyAgent(fetcher, base_url=srv.base_url)
        details = {}
        for term, reason in [("down", "HTTP 502"), ("auth", "HTTP 403"), ("shape", "bad response")]:
            with pytest.raises(SourceError) as err:
                agent.fetch_page(term, None)
            assert err.value.reason == reason, term
            details[term] = err.value.detail
        assert "AuthMissing" in details["auth"]  # the server's own words reach the report
        with pytest.raises(SourceError) as err:
            agent.fetch_page("stuck", "7")
        assert err.value.reason == "cursor did not advance"
        with pytest.raises(SourceError) as err:
            BlueskyAgent(fetcher, base_url=srv.base_url + "/nowhere").fetch_page("x", None)
        assert err.value.reason == "HTTP 404"

    for kwargs, name in [
        ({"page_size": 101}, "page_size"), ({"sort": "oldest"}, "sort"),
        ({"pds": "bsky.social"}, "pds"), ({"base_url": ""}, "base_url"), ({"access_token": 5}, "access_token"),
    ]:
        with pytest.raises(ValueError, match=name):
            BlueskyAgent(fetcher, **kwargs)
    for term in ["", "#", "# "]:
        with pytest.raises(ValueError, match="search term|hashtag"):
            BlueskyAgent(fetcher).fetch_page(term, None)


# ---------------------------------------------------------------------------------------------
# Reddit

LISTING_2016 = "oauth.reddit.com_hot_limit100_raw_json1_2016-03-01.json"
LISTING_2026 = "oauth.reddit.com_r_popular_hot_limit100_raw_json1_2026-04-13.json"
GALLERY = "oauth.reddit.com_comments_huw6vs_gallery_submission_2020-07-20.json"


def media_census(posts: list[Post]) -> Counter:
    return Counter((m.kind, m.resolver) for p in posts for m in p.media)


def test_reddit_2016_listing(fetcher):
    listing = social("reddit", LISTING_2016)
    with ReplayServer() as srv:
        srv.route("/search.json", json_body=listing)
        agent = RedditAgent(fetcher, base_url=srv.base_url)
        assert agent.platform == "reddit" and agent.searches is True
        page = agent.fetch_page("election", None)
        (request,) = srv.hits("/search.json")
        assert request.query == {
            "q": ["election"], "sort": ["new"], "limit": ["100"], "raw_json": ["1"],
            "type": ["link"], "include_over_18": ["on"],
        }
        assert "authorization" not in request.headers
    assert [p.post_id for p in page.posts] == [c["data"]["name"] for c in listing["data"]["children"]]
    assert len(page.posts) == 100 and agent.stats.drops == []
    assert page.next_cursor == "t3_48a6f9"
    posts = {p.post_id: p for p in page.posts}
    assert posts["t3_48dxvx"] == Post(
        platform="reddit",
        post_id="t3_48dxvx",
        url="https://www.reddit.com/r/pics/comments/48dxvx/my_game_cam_finally_caught_something_cool/",
        account="elfmachine100",
        text="My game cam finally caught something cool.",
        created_at=datetime(2016, 3, 1, 2, 8, 45, tzinfo=UTC),
        media=(MediaRef("http://i.imgur.com/NFOb0VK.jpg", "image", 0),),
    )
    # NSFW and without a post_hint, but the link is a .jpg: kept, as an image.
    assert posts["t3_489urr"].media == (MediaRef("http://i.imgur.com/iX23qfn.jpg", "image", 0),)
    # An embedded third-party video (Imgur gifv) goes to yt-dlp.
    assert posts["t3_48d25k"].media == (MediaRef("http://i.imgur.com/ucEt7ka.gifv", "video", 0, resolver="ytdlp"),)
    ama = posts["t3_48c8s1"]
    assert ama.text.startswith("[AMA Request] John Oliver\n\nAfter John Oliver took on Donald Trump")
    # The self text (2712 characters) loses only its four trailing newlines.
    assert ama.text.endswith('anything other than "Gotcha Journalism"?')
    assert len(ama.text) == len("[AMA Request] John Oliver\n\n") + 2708 and ama.media == ()
    assert ama.lang is None and ama.hashtags == ()
    # 19 image posts + 1 by extension; 15 rich:video embeds; links and self posts carry none.
    assert media_census(page.posts) == Counter({("image", None): 20, ("video", "ytdlp"): 15})
    assert sum(1 for p in page.posts if p.media) == 35


def test_reddit_2026_listing_in_a_subreddit_search(fetcher):
    listing = social("reddit", LISTING_2026)
    with ReplayServer() as srv:
        srv.route("/r/popular/search.json", json_body=listing)
        agent = RedditAgent(fetcher, base_url=srv.base_url, subreddit="r/popular", sort="relevance", page_size=50)
        page = agent.fetch_page("#steak", None)
        (request,) = srv.hits("/r/popular/search.json")
        assert request.query["q"] == ["steak"] and request.query["restrict_sr"] == ["1"]
        assert request.query["sort"] == ["relevance"] and request.query["limit"] == ["50"]
    assert len(page.posts) == 100 and agent.stats.drops == [] and page.next_cursor == "t3_1skbyfv"
    posts = {p.post_id: p for p in page.posts}
    gallery = posts["t3_1skh6dk"]
    assert gallery.account == "doubleoeck1234"
    assert gallery.url == "https://www.reddit.com/r/Overwatch/comments/1skh6dk/ramattra_x_diablo_4_collab_skin/"
    assert gallery.text == "Ramattra x Diablo 4 collab skin\n\nI don't know who this is tbh I don't play Diablo but it looks cool"
    assert gallery.created_at == datetime(2026, 4, 13, 17, 9, 35, tzinfo=UTC)
    assert gallery.media == (
        MediaRef("https://preview.redd.it/l4qy0l5ppzug1.jpg?width=2160&format=pjpg&auto=webp&s=8df739b461e1b9a8453a801ad1ea97a47d1e8dbf", "image", 0),
        MediaRef("https://preview.redd.it/ygxbkh7ppzug1.jpg?width=1234&format=pjpg&auto=webp&s=e4cd8cfc043a6dd8767d82ff0360bbd50eccbe36", "image", 1),
    )
    assert posts["t3_1skl1i1"].media == (MediaRef("https://v.redd.it/dqm10oy4d0vg1/CMAF_1080.mp4?source=fallback", "video", 0),)
    assert posts["t3_1skii2f"].media == (MediaRef("https://i.redd.it/rrinwcmrxzug1.jpeg", "image", 0),)
    assert posts["t3_1skjxta"].media == (MediaRef("https://streamable.com/ql7tuy", "video", 0, resolver="ytdlp"),)
    # 50 image posts + 59 images in 14 galleries; 24 Reddit-hosted videos; 1 Streamable embed.
    assert media_census(page.posts) == Counter({("image", None): 109, ("video", None): 24, ("video", "ytdlp"): 1})


def test_reddit_gallery_submission_escaped_or_raw(fetcher):
    submission = social("reddit", GALLERY)
    # The same answer as a client that forgot raw_json=1 gets it: '&' written as '&amp;'.
    escaped = json.loads(json.dumps(submission).replace("&", "&amp;"))
    expected = (
        MediaRef("https://preview.redd.it/pb7qsvi6i3c51.png?width=128&format=png&auto=webp&s=7c2e610589cb5c8d60384b1d2a8eadc5c874d1d9", "image", 0),
        MediaRef("https://preview.redd.it/14wmudl6i3c51.jpg?width=128&format=pjpg&auto=webp&s=978f65bc49a7bc65ed5b0cb7493e7da85ba87909", "image", 1),
        MediaRef("https://i.redd.it/vkm62gm6i3c51.gif", "image", 2),  # AnimatedImage: the original GIF
        MediaRef("https://preview.redd.it/wka18en6i3c51.png?width=128&format=png&auto=webp&s=da421b79862a56e00187a720bf90693de71efbbe", "image", 3),
    )
    for answer in (submission, escaped):
        with ReplayServer() as srv:
            srv.route("/r/TEST_SUB/new.json", json_body=answer)
            agent = RedditAgent(fetcher, base_url=srv.base_url, subreddit="TEST_SUB")
            page = agent.fetch_page("*", None)
            assert srv.hits("/r/TEST_SUB/new.json")[0].query == {"limit": ["100"], "raw_json": ["1"]}
        (post,) = page.posts
        assert (post.post_id, post.account, post.text) == ("t3_huw6vs", "<USERNAME>", "Test Title")
        assert post.url == "https://www.reddit.com/r/<TEST_SUBREDDIT>/comments/huw6vs/test_title/"
        assert post.created_at == datetime(2020, 7, 20, 23, 18, 55, tzinfo=UTC)
        assert post.media == expected
        assert page.next_cursor is None and agent.stats.drops == []


def test_reddit_pages_by_after_and_takes_crosspost_media(fetcher):
    children = social("reddit", LISTING_2026)["data"]["children"]
    video = next(c["data"] for c in children if c["data"]["name"] == "t3_1skl1i1")
    crosspost = {"kind": "t3", "data": {
        "name": "t3_xpost1", "permalink": "/r/Other/comments/xpost1/steak_again/", "author": "reposter",
        "title": "steak again", "selftext": "", "created_utc": 1776110000.0, "is_video": False,
        "url": "/r/StupidFood/comments/1skl1i1/a_medium_rare_steak/", "crosspost_parent": "t3_1skl1i1",
        "crosspost_parent_list": [video],
    }}
    pages = {
        None: {"kind": "Listing", "data": {"after": "t3_xpost1", "children": [children[3], crosspost]}},
        "t3_xpost1": {"kind": "Listing", "data": {"after": None, "children": [children[4]]}},
    }
    with ReplayServer() as srv:
        srv.route("/search.json", handler=lambda req: Answer(json_body=pages[req.arg("after")]))
        agent = RedditAgent(fetcher, base_url=srv.base_url, page_size=2)
        posts = crawl(agent, "steak")
        assert [(r.arg("after"), r.arg("limit")) for r in srv.hits("/search.json")] == [(None, "2"), ("t3_xpost1", "2")]
    assert [p.post_id for p in posts] == ["t3_1skii2f", "t3_xpost1", "t3_1skke8o"]
    assert posts[1].account == "reposter"
    assert posts[1].media == (MediaRef("https://v.redd.it/dqm10oy4d0vg1/CMAF_1080.mp4?source=fallback", "video", 0),)


def test_reddit_bad_records_are_counted_and_the_page_survives(fetcher):
    children = social("reddit", LISTING_2026)["data"]["children"]
    gallery = copy.deepcopy(next(c for c in children if c["data"]["name"] == "t3_1skfndc"))  # 3 images
    meta = gallery["data"]["media_metadata"]
    first, second, third = (i["media_id"] for i in gallery["data"]["gallery_data"]["items"])
    meta[first]["status"] = "unprocessed"
    meta[second] = {"status": "valid", "e": "RedditVideo", "id": second, "hlsUrl": "https://v.redd.it/x/HLS.m3u8"}
    gallery["data"]["gallery_data"]["items"].append({"media_id": "not-in-metadata", "id": 1})
    no_name = copy.deepcopy(children[3])
    del no_name["data"]["name"]
    bad_time = copy.deepcopy(children[4])
    bad_time["data"]["created_utc"] = "yesterday"
    broken_video = copy.deepcopy(next(c for c in children if c["data"]["name"] == "t3_1skl1i1"))
    broken_video["data"]["secure_media"] = broken_video["data"]["media"] = None
    comment = {"kind": "t1", "data": {"name": "t1_abc", "body": "a comment"}}
    listing = {"kind": "Listing", "data": {"after": None, "children": [5, comment, no_name, bad_time, gallery, broken_video]}}
    with ReplayServer() as srv:
        srv.route("/search.json", json_body=listing)
        agent = RedditAgent(fetcher, base_url=srv.base_url)
        page = agent.fetch_page("anything", None)
    assert [p.post_id for p in page.posts] == ["t3_1skfndc", "t3_1skl1i1"]
    assert [m.position for m in page.posts[0].media] == [2]
    assert meta[third]["s"]["u"] == page.posts[0].media[0].url
    assert page.posts[1].media == ()
    assert reasons(agent) == [
        "bad media", "bad media", "bad timestamp", "media not ready", "missing field", "not a post",
        "not an object", "unsupported media type",
    ]


def test_reddit_source_errors_and_validation(fetcher):
    submission = social("reddit", GALLERY)[0]["data"]["children"][0]
    with ReplayServer() as srv:
        srv.route("/search.json", handler=lambda req: {
            "down": Answer(status=503, body="busy"),
            "blocked": Answer(status=403, json_body={"message": "Forbidden", "error": 403}),
            "shape": Answer(json_body={"kind": "t3", "data": {}}),
            "stuck": Answer(json_body={"kind": "Listing", "data": {"after": "t3_same", "children": [submission]}}),
        }[req.arg("q")])
        agent = RedditAgent(fetcher, base_url=srv.base_url)
        for term, reason in [("down", "HTTP 503"), ("blocked", "HTTP 403"), ("shape", "bad response")]:
            with pytest.raises(SourceError) as err:
                agent.fetch_page(term, None)
            assert err.value.reason == reason, term
        with pytest.raises(SourceError) as err:
            agent.fetch_page("stuck", "t3_same")
        assert err.value.reason == "cursor did not advance"
        with pytest.raises(SourceError) as err:
            RedditAgent(fetcher, base_url=srv.base_url, subreddit="nothere").fetch_page("x", None)
        assert err.value.reason == "HTTP 404"

    for kwargs, name in [
        ({"subreddit": "two words"}, "subreddit"), ({"sort": "best"}, "sort"), ({"page_size": 101}, "page_size"),
        ({"base_url": "www.reddit.com"}, "base_url"), ({"access_token": ""}, "access_token"),
    ]:
        with pytest.raises(ValueError, match=name):
            RedditAgent(fetcher, **kwargs)
    with pytest.raises(ValueError, match="needs the subreddit parameter"):
        RedditAgent(fetcher).fetch_page("", None)
    with pytest.raises(ValueError, match="applies to searches only"):
        RedditAgent(fetcher, subreddit="politics", sort="relevance").fetch_page("*", None)
    with pytest.raises(ValueError, match="nothing left after the '#'"):
        RedditAgent(fetcher).fetch_page("#", None)


# ---------------------------------------------------------------------------------------------
# Tokens


def test_bearer_token_is_sent_when_configured(fetcher):
    """Needs Fetcher.get_json(..., headers=) (see the agents' _social.get_json)."""
    with ReplayServer() as srv:
        srv.route("/api/v2/search", json_body={"statuses": []})
        srv.route("/xrpc/app.bsky.feed.searchPosts", json_body={"posts": []})
        srv.route("/search.json", json_body={"kind": "Listing", "data": {"after": None, "children": []}})
        agents = {
            "/api/v2/search": MastodonAgent(srv.base_url, fetcher, access_token="tok-123"),
            "/xrpc/app.bsky.feed.searchPosts": BlueskyAgent(fetcher, base_url=srv.base_url, access_token="jwt.abc"),
            "/search.json": RedditAgent(fetcher, base_url=srv.base_url, access_token="oauth-tok"),
        }
        for path, agent in agents.items():
            page = agent.fetch_page("wahl", None)
            assert page.posts == () and page.next_cursor is None
        assert [srv.hits(path)[0].headers.get("authorization") for path in agents] == [
            "Bearer tok-123", "Bearer jwt.abc", "Bearer oauth-tok",
        ]
        # Without a token, nothing is sent.
        MastodonAgent(srv.base_url, fetcher).fetch_page("wahl", None)
        assert "authorization" not in srv.hits("/api/v2/search")[-1].headers


# ---------------------------------------------------------------------------------------------
# Media URLs from parsed posts really download through the Fetcher


def test_parsed_media_urls_download_through_the_fetcher(fetcher):
    status_text = json.dumps(social("mastodon", STATUS_TWO_IMAGES)).replace("http://localhost:3000", "{BASE}")
    _, _, video_view = bluesky_views()
    files = {
        "/system/media_attachments/files/117/020/576/646/493/592/original/963111bc1b0bd6b6.jpg": (jpeg_bytes("red"), "image/jpeg"),
        "/system/media_attachments/files/117/020/576/661/238/952/original/c71a1b53ce29a852.jpg": (png_bytes("blue"), "image/png"),
    }
    video_bytes = b"\x00\x00\x00\x18ftypmp42" + bytes(64)

    def blob(req):
        if (req.arg("did"), req.arg("cid")) != (DID, "bafkreivideocid"):
            return Answer(status=400, json_body={"error": "InvalidRequest"})
        return Answer(body=video_bytes, content_type="video/mp4")

    with ReplayServer() as srv:
        srv.route("/api/v2/search", body='{"statuses": [' + status_text + "]}", content_type="application/json")
        srv.route("/xrpc/app.bsky.feed.searchPosts", json_body={"posts": [video_view]})
        srv.route("/xrpc/com.atproto.sync.getBlob", handler=blob)
        for path, (data, mime) in files.items():
            srv.route(path, body=data, content_type=mime)

        (post,) = MastodonAgent(srv.base_url, fetcher).fetch_page("walk", None).posts
        assert [m.url for m in post.media] == [srv.base_url + path for path in files]
        for ref, (data, mime) in zip(post.media, files.values()):
            got = fetcher.fetch_media(ref)
            assert isinstance(got, Fetched) and got.data == data and got.declared_mime == mime
            assert Image.open(io.BytesIO(got.data)).size in ((32, 24), (16, 16))

        (bsky,) = BlueskyAgent(fetcher, base_url=srv.base_url, pds=srv.base_url).fetch_page("video", None).posts
        got = fetcher.fetch_media(bsky.media[0])
        assert isinstance(got, Fetched) and got.data == video_bytes and got.declared_mime == "video/mp4"
