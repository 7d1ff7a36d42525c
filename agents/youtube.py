"""YouTube channel or playlist agent over the public Atom feed (`/feeds/videos.xml`).

The feed needs no API key and lists a channel's or playlist's latest 15 videos, without paging.
Each video becomes a post whose media are the watch page (resolver "ytdlp": agents/ytdlp.py
picks a progressive file for the fetch stage) and the thumbnail image.
"""
from __future__ import annotations

import re
from typing import Any

from agents._html import FEED_ACCEPT, MediaList, check_keywords, fetch_document
from agents.base import AgentStats, Page, Post
from agents.demo_api import check_base_url
from agents.feeds import BadEntry, entry_time, parse_feed, single_page
from agents.fetch import Fetcher

DEFAULT_BASE_URL = "https://www.youtube.com"
_ID = re.compile(r"^[A-Za-z0-9_-]{2,64}$")  # channel (UC...), playlist (PL..., UU...) and video ids


class YouTubeAgent:
    """`Agent` for one YouTube channel (`channel_id`) or playlist (`playlist_id`)."""

    platform = "youtube"
    searches = False

    def __init__(
        self,
        channel_id: str | None = None,
        playlist_id: str | None = None,
        *,
        fetcher: Fetcher,
        base_url: str = DEFAULT_BASE_URL,
        keywords: list[str] | None = None,
    ):
        if (channel_id is None) == (playlist_id is None):
            raise ValueError("give exactly one of channel_id or playlist_id")
        for name, value in (("channel_id", channel_id), ("playlist_id", playlist_id)):
            if value is not None and (not isinstance(value, str) or not _ID.match(value)):
                raise ValueError(f"{name} must be a YouTube id (letters, digits, - and _), got {value!r}")
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        self.base_url = check_base_url(base_url)
        self.query = {"channel_id": channel_id} if channel_id else {"playlist_id": playlist_id}
        self.keywords = check_keywords(keywords)
        self.fetcher = fetcher
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        if cursor is not None:
            raise ValueError(f"a YouTube feed has a single page; cursor must be None, got {cursor!r}")
        fetched = fetch_document(self.fetcher, f"{self.base_url}/feeds/videos.xml", self.query, accept=FEED_ACCEPT)
        feed = parse_feed(fetched.data, fetched.final_url)
        return single_page(feed.entries, self.stats, self.keywords, to_post=self._to_post, subject=self._subject)

    def _subject(self, index: int, entry: Any) -> str:
        video_id = entry.get("yt_videoid")
        return f"youtube video {video_id}" if video_id else f"youtube {self._source()} entry {index}"

    def close(self) -> None:
        """The fetcher belongs to the runtime; nothing of ours to release."""

    def _source(self) -> str:
        (name, value), = self.query.items()
        return f"{name}={value}"

    def _to_post(self, entry: Any) -> Post:
        video_id = entry.get("yt_videoid")
        if not isinstance(video_id, str) or not _ID.match(video_id):
            raise BadEntry("missing field", f"yt:videoId is {video_id!r}")
        watch_url = entry.get("link") or f"{self.base_url}/watch?v={video_id}"
        title = entry.get("title", "")
        # feedparser files <media:description> (plain text on YouTube) under `summary`.
        description = entry.get("summary", "")
        media = MediaList()
        media.add(watch_url, "video", watch_url, resolver="ytdlp")
        for thumbnail in entry.get("media_thumbnail", []):
            media.add(thumbnail.get("url"), "image", watch_url)
        return Post(
            platform=self.platform,
            post_id=video_id,
            url=watch_url,
            account=entry.get("author") or entry.get("yt_channelid") or self.query.get("channel_id", ""),
            text="\n\n".join(part for part in (title.strip(), description.strip()) if part),
            created_at=entry_time(entry, "published"),
            media=media.refs(),
        )
