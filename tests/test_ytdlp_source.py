"""The `ytdlp` source agent through real yt-dlp extractors (PeerTube, Rumble) against loopback HTTPS.

The extractors' host names resolve to a loopback address for the test only (the `resolve`
fixture stands in for DNS); everything else is real: yt-dlp's PeerTube channel and Rumble
channel extractors, their per-video extractors, the guarded request handler and TLS.
"""
from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import pytest

from agents.base import MediaRef
from agents.errors import AgentConfigError
from agents.fetch import Fetcher, FetchPolicy
from agents.registry import build_agent
from agents.ytdlp_source import YtdlpSourceAgent
from orchestrator.spec import CampaignSpec
from tests.replay import ReplayServer
from tests.ytdlp_sites import HOSTS, PEERTUBE_IDS, SitesServer, make_certificates

pytestmark = pytest.mark.timeout(120)

ADDRESS = "127.20.20.1"  # a loopback address of its own: port 443 there is not shared with other tests
PEERTUBE = "https://framatube.org/c/debates"
RUMBLE = "https://rumble.com/c/ElectionNews"


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    ca, cert, key = make_certificates(tmp_path_factory.mktemp("tls"))
    try:
        server = SitesServer(ADDRESS, cert, key)
    except OSError as exc:  # port 443 needs root (or CAP_NET_BIND_SERVICE)
        pytest.skip(f"cannot listen on {ADDRESS}:443: {exc}")
    with server:
        yield server, str(ca)


@pytest.fixture
def resolve(monkeypatch):
    """The sites' names resolve to ADDRESS; any other name resolves as usual."""
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if isinstance(host, str) and host.lower() in HOSTS:
            return real(ADDRESS, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def loopback_fetcher(**overrides) -> Fetcher:
    # robots.txt is off here: the Fetcher (httpx) does not trust the test CA, so it could not read
    # the sites' robots.txt; test_robots_txt_is_asked_before_ytdlp covers robots on plain HTTP.
    settings = {"allow_networks": ("127.0.0.0/8",), "timeout_s": 3, "total_timeout_s": 10, "respect_robots": False}
    return Fetcher(FetchPolicy(**{**settings, **overrides}))


def crawl(agent):
    posts, cursor, cursors = [], None, []
    while True:
        page = agent.fetch_page("", cursor)
        posts.extend(page.posts)
        cursor = page.next_cursor
        if cursor is None:
            return posts, cursors
        cursors.append(json.loads(cursor))


def test_peertube_and_rumble_channels_are_listed_paged_and_described(sites, resolve):
    server, ca = sites
    with loopback_fetcher() as fetcher:
        agent = build_agent("ytdlp", {"urls": [PEERTUBE, RUMBLE], "page_size": 2, "ca_file": ca},
                            fetcher=fetcher, blobs=None)
        posts, cursors = crawl(agent)
    # Two entries a page: PeerTube's three videos take two pages, then Rumble's listing.
    assert cursors == [{"url": 0, "offset": 2}, {"url": 1, "offset": 0}, {"url": 1, "offset": 2}]
    by_id = {p.post_id: p for p in posts}
    assert sorted(by_id) == sorted([PEERTUBE_IDS[0], PEERTUBE_IDS[2], "v6xyz9"])
    clip = by_id[PEERTUBE_IDS[0]]
    assert clip.platform == "peertube"
    assert clip.url == f"https://framatube.org/videos/watch/{PEERTUBE_IDS[0]}"
    assert clip.text == "후보 토론 클립 1\n\n선거 토론 영상 1 #선거2026"
    assert clip.created_at == datetime(2026, 5, 21, 3, 0, tzinfo=timezone.utc)
    assert clip.account == "3"
    assert set(clip.hashtags) == {"선거", "토론", "선거2026"}
    assert clip.media == (
        MediaRef(url=clip.url, kind="video", position=0, resolver="ytdlp"),
        MediaRef(url=f"https://framatube.org/lazy-static/thumbnails/{PEERTUBE_IDS[0]}.jpg", kind="image", position=1),
    )
    speech = by_id["v6xyz9"]
    assert speech.platform == "rumble"
    assert speech.text == "Candidate speech\n\n지지 연설 전문 #지방선거"
    assert speech.created_at == datetime(2026, 5, 24, 10, 0, tzinfo=timezone.utc)
    assert speech.account == "ElectionNews"
    assert speech.media[0] == MediaRef(url="https://rumble.com/v6abc12-candidate-speech.html", kind="video", resolver="ytdlp")
    # The removed PeerTube video and the region-locked Rumble one are counted with the extractor's reason.
    reasons = sorted((d.stage, d.reason, d.subject) for d in agent.stats.drops)
    assert reasons == [
        ("crawl", "ytdlp: HTTP 404", f"https://framatube.org/w/{PEERTUBE_IDS[1]}"),
        ("crawl", "ytdlp: HTTP 451", "https://rumble.com/v6def34-region-locked.html"),
    ]
    # PeerTube was paged through its API's start/count; Rumble's listing ended at its 404 page 2.
    assert ("framatube.org", "/api/v1/video-channels/debates/videos") in {(h, p) for h, p, _ in server.requests}


def test_the_date_window_keeps_only_entries_inside_it(sites, resolve):
    _, ca = sites
    with loopback_fetcher() as fetcher:
        agent = YtdlpSourceAgent([PEERTUBE], fetcher=fetcher, ca_file=ca, since="2026-05-22", until="2026-05-24T00:00:00+00:00")
        posts, _ = crawl(agent)
    assert [p.post_id for p in posts] == [PEERTUBE_IDS[2]]  # published 2026-05-23; the other on 05-21


def test_flat_listing_without_details_and_resume_from_a_cursor(sites, resolve):
    server, ca = sites
    with loopback_fetcher() as fetcher:
        agent = YtdlpSourceAgent([PEERTUBE], fetcher=fetcher, ca_file=ca, page_size=2, details=False)
        second = agent.fetch_page("", json.dumps({"url": 0, "offset": 2}))
    assert [p.post_id for p in second.posts] == [PEERTUBE_IDS[2]] and second.next_cursor is None
    assert second.posts[0].url == f"https://framatube.org/w/{PEERTUBE_IDS[2]}"
    assert agent.stats.drops == []


def test_the_address_guard_and_bad_params(sites, resolve):
    _, ca = sites
    with Fetcher(FetchPolicy(timeout_s=3, total_timeout_s=10, respect_robots=False)) as guarded:  # loopback not allowed
        agent = YtdlpSourceAgent([PEERTUBE], fetcher=guarded, ca_file=ca)
        page = agent.fetch_page("", None)
    assert page.posts == () and page.next_cursor is None
    assert [(d.stage, d.reason) for d in agent.stats.drops] == [("crawl", "blocked address")]
    with loopback_fetcher() as fetcher:
        with pytest.raises(AgentConfigError, match=r"urls\[0\] must be an absolute http\(s\) URL"):
            build_agent("ytdlp", {"urls": ["file:///etc/passwd"]}, fetcher=fetcher, blobs=None)
        with pytest.raises(AgentConfigError, match="since must be an ISO date"):
            build_agent("ytdlp", {"urls": [PEERTUBE], "since": "last week"}, fetcher=fetcher, blobs=None)
        with pytest.raises(AgentConfigError, match="ca_file must be the path of a PEM CA bundle"):
            build_agent("ytdlp", {"urls": [PEERTUBE], "ca_file": "/nonexistent/ca.pem"}, fetcher=fetcher, blobs=None)
        with pytest.raises(AgentConfigError, match="page_size must be an integer"):
            build_agent("ytdlp", {"urls": [PEERTUBE], "page_size": 0}, fetcher=fetcher, blobs=None)
        with pytest.raises(ValueError, match="cursor is not a ytdlp listing state"):
            YtdlpSourceAgent([PEERTUBE], fetcher=fetcher).fetch_page("", json.dumps({"url": 5, "offset": 0}))


def test_a_url_with_the_bare_term_is_filled_per_term(sites, resolve):
    _, ca = sites
    with loopback_fetcher() as fetcher:
        agent = YtdlpSourceAgent(["https://framatube.org/c/{bare}"], fetcher=fetcher, ca_file=ca, details=False)
        assert agent.searches
        page = agent.fetch_page("#debates", None)
        with pytest.raises(ValueError, match="takes a search term"):
            agent.fetch_page("", None)
    assert len(page.posts) == len(PEERTUBE_IDS)


def test_a_search_url_with_a_term_is_searched_per_term():
    spec = CampaignSpec.model_validate({"name": "c", "keywords": ["딥페이크"], "sources": [
        {"name": "search", "type": "ytdlp", "params": {"urls": ["https://www.tiktok.com/search/video?q={term}"]}},
        {"name": "channel", "type": "ytdlp", "params": {"urls": [RUMBLE]}}]})
    assert spec.terms_for(spec.sources[0]) == ["딥페이크"]
    assert spec.terms_for(spec.sources[1]) == [""]


def test_robots_txt_is_asked_before_ytdlp_sends_anything():
    with ReplayServer() as srv:
        srv.route("/robots.txt", body="User-agent: *\nDisallow: /videos/\n", content_type="text/plain")
        srv.route("/videos/list", body="<html><video src='/a.mp4'></video></html>", content_type="text/html")
        with Fetcher(FetchPolicy(allow_networks=("127.0.0.0/8",), timeout_s=3, total_timeout_s=10)) as fetcher:
            agent = YtdlpSourceAgent([f"{srv.base_url}/videos/list"], fetcher=fetcher)
            page = agent.fetch_page("", None)
        assert [r.path for r in srv.requests] == ["/robots.txt"]
    assert page.posts == ()
    assert [(d.stage, d.reason) for d in agent.stats.drops] == [("crawl", "robots.txt disallows")]


def test_login_walls_and_geo_blocks_get_their_own_reasons():
    from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

    from agents.ytdlp import _short_reason

    def as_ytdlp_raises(error):  # YoutubeDL wraps an extractor's error like this
        return DownloadError(f"ERROR: {error}", exc_info=(type(error), error, None))

    login = ExtractorError("This video is only available for registered users. Use --cookies-from-browser or "
                           "--cookies for the authentication", expected=True)
    geo = GeoRestrictedError("This video is not available from your location due to geo restriction", countries=["KR"])
    assert _short_reason(as_ytdlp_raises(login)) == "ytdlp: login required"
    assert _short_reason(as_ytdlp_raises(geo)) == "ytdlp: geo restricted"
