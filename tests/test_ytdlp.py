"""agents.ytdlp.resolve_media against real media on loopback, through real yt-dlp extraction."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

from agents.base import Drop, MediaRef
from agents.fetch import Fetcher, FetchPolicy
from agents.ytdlp import choose_format, resolve_media
from tests.replay import ReplayServer

pytestmark = pytest.mark.timeout(60)

WATCH_PAGE = """<!doctype html>
<html><head><title>Candidate speech</title>
<meta property="og:video" content="{BASE}/media/clip.mp4">
<meta property="og:video:type" content="video/mp4">
</head><body><h1>Speech</h1><video controls src="/media/clip.mp4" width="640" height="360"></video></body></html>
"""


def make_mp4(frames: int = 12) -> bytes:
    """A small real H.264 MP4, made with PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            pixels = np.zeros((48, 64, 3), np.uint8)
            pixels[:, : 4 + i * 5] = (200, 40 + i * 10, 90)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clip() -> bytes:
    return make_mp4()


@pytest.fixture
def site(clip):
    with ReplayServer() as srv:
        srv.route("/media/clip.mp4", body=clip, content_type="video/mp4")
        srv.route("/watch", body=WATCH_PAGE, content_type="text/html; charset=utf-8")
        srv.route("/to-private", status=302, body="", headers={"Location": "http://10.255.255.1/internal"})
        yield srv


def loopback_fetcher(**overrides) -> Fetcher:
    settings = dict(allow_networks=("127.0.0.0/8",), timeout_s=2, total_timeout_s=5, backoff_s=0.05)
    settings.update(overrides)
    return Fetcher(FetchPolicy(**settings))


def test_watch_page_resolves_to_the_direct_video_that_downloads_to_the_same_bytes(site, clip):
    with loopback_fetcher() as fetcher:
        page = MediaRef(url=f"{site.base_url}/watch", kind="video", position=2, resolver="ytdlp")
        resolved = resolve_media(page, fetcher)
        assert resolved == MediaRef(url=f"{site.base_url}/media/clip.mp4", kind="video", position=2, resolver=None)
        fetched = fetcher.fetch_media(resolved)
    assert not isinstance(fetched, Drop), fetched
    assert fetched.data == clip
    # yt-dlp spoke with our User-Agent, not its browser default.
    watch_hits = site.hits("/watch")
    assert watch_hits and watch_hits[0].headers["user-agent"] == fetcher.policy.user_agent


def test_a_direct_ref_needs_no_resolving(site):
    with loopback_fetcher() as fetcher:
        ref = MediaRef(url=f"{site.base_url}/media/clip.mp4", kind="video")
        assert resolve_media(ref, fetcher) is ref
        with pytest.raises(ValueError, match="resolver"):
            resolve_media(MediaRef(url=ref.url, kind="video", resolver="magic"), fetcher)
    assert site.requests == []


def test_page_on_a_refused_address_is_dropped_before_ytdlp_sends_anything(site):
    with Fetcher(FetchPolicy(timeout_s=2, total_timeout_s=5)) as strict:  # loopback not allowed
        result = resolve_media(MediaRef(url=f"{site.base_url}/watch", kind="video", resolver="ytdlp"), strict)
    assert isinstance(result, Drop)
    assert (result.stage, result.reason) == ("fetch", "blocked address")
    assert "loopback" in result.detail
    assert site.requests == []


def test_a_redirect_to_a_private_address_is_refused_inside_ytdlp(site):
    with loopback_fetcher() as fetcher:
        result = resolve_media(MediaRef(url=f"{site.base_url}/to-private", kind="video", resolver="ytdlp"), fetcher)
    assert isinstance(result, Drop)
    assert (result.stage, result.reason) == ("fetch", "blocked address")
    assert "10.255.255.1 is private" in result.detail


def test_missing_page_is_a_drop_not_an_exception(site):
    with loopback_fetcher() as fetcher:
        result = resolve_media(MediaRef(url=f"{site.base_url}/gone", kind="video", resolver="ytdlp"), fetcher)
    assert isinstance(result, Drop)
    assert (result.stage, result.reason) == ("fetch", "ytdlp: HTTP 404")
    assert result.subject == f"{site.base_url}/gone"


def test_page_without_video_is_a_drop(site):
    site.route("/text", body="<html><head><title>No video</title></head><body><p>words</p></body></html>",
               content_type="text/html")
    with loopback_fetcher() as fetcher:
        result = resolve_media(MediaRef(url=f"{site.base_url}/text", kind="video", resolver="ytdlp"), fetcher)
    assert isinstance(result, Drop)
    assert result.stage == "fetch" and result.reason.startswith("ytdlp: ")


# Formats as yt-dlp reports them for a YouTube video: progressive 18 (360p mp4, audio+video),
# DASH video-only and audio-only streams, and HLS.
YOUTUBE_LIKE_FORMATS = [
    {"format_id": "140", "url": "https://r1.example/a", "protocol": "https", "ext": "m4a", "vcodec": "none", "acodec": "mp4a.40.2"},
    {"format_id": "160", "url": "https://r1.example/v144", "protocol": "https", "ext": "mp4", "vcodec": "avc1.4d400c", "acodec": "none", "height": 144},
    {"format_id": "18", "url": "https://r1.example/p360", "protocol": "https", "ext": "mp4", "vcodec": "avc1.42001E", "acodec": "mp4a.40.2", "height": 360, "filesize": 9_000_000},
    {"format_id": "22", "url": "https://r1.example/p720", "protocol": "https", "ext": "mp4", "vcodec": "avc1.64001F", "acodec": "mp4a.40.2", "height": 720, "filesize": 40_000_000},
    {"format_id": "43", "url": "https://r1.example/w360", "protocol": "https", "ext": "webm", "vcodec": "vp8", "acodec": "vorbis", "height": 360},
    {"format_id": "hls-1080", "url": "https://r1.example/m.m3u8", "protocol": "m3u8_native", "ext": "mp4", "vcodec": "avc1", "acodec": "mp4a", "height": 1080},
]


def test_choose_format_prefers_the_smallest_progressive_mp4_at_360p_or_more():
    info = {"formats": YOUTUBE_LIKE_FORMATS}
    assert choose_format(info, max_bytes=200_000_000)["format_id"] == "18"
    # 18 and 22 over the cap: sound and picture together (webm) beat a video-only mp4; never HLS or audio-only.
    assert choose_format(info, max_bytes=8_000_000)["format_id"] == "43"
    only_small = {"formats": [f for f in YOUTUBE_LIKE_FORMATS if f["format_id"] in ("140", "160", "hls-1080")]}
    assert choose_format(only_small, max_bytes=200_000_000)["format_id"] == "160"  # video-only beats nothing
    assert choose_format({"formats": [YOUTUBE_LIKE_FORMATS[0]]}, max_bytes=200_000_000) is None


def test_choose_format_takes_the_best_below_360_when_nothing_reaches_it():
    formats = [
        {"format_id": "a", "url": "https://x/a", "ext": "mp4", "vcodec": "avc1", "acodec": "mp4a", "height": 144},
        {"format_id": "b", "url": "https://x/b", "ext": "mp4", "vcodec": "avc1", "acodec": "mp4a", "height": 240},
    ]
    assert choose_format({"formats": formats}, max_bytes=10**9)["format_id"] == "b"
