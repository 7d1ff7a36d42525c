"""RSS 2.0 / Atom feed agent, and the feedparser helpers the YouTube agent shares.

One feed is one page: feeds carry their latest entries and no paging, so `next_cursor` is always
None. The feed is fetched through the guarded Fetcher and handed to feedparser as bytes (feedparser
never opens URLs itself here), so the address guard and size caps apply.
"""
from __future__ import annotations

import calendar
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import feedparser

from agents._html import (
    FEED_ACCEPT,
    MediaList,
    check_http_url,
    check_keywords,
    fetch_document,
    fragment_images,
    html_to_text,
    matches_keywords,
)
from agents.base import AgentStats, Drop, Page, Post
from agents.errors import SourceError
from agents.fetch import Fetcher


class BadEntry(Exception):
    """One feed entry that breaks the format; counted as a parse drop, the rest of the feed goes on."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def parse_feed(data: bytes, url: str) -> feedparser.FeedParserDict:
    """feedparser's view of `data`; SourceError when it is not an RSS or Atom feed at all.

    feedparser is lenient (a "bozo" feed with a small XML error still has entries), so only a
    document it cannot recognise as any feed version is refused.
    """
    parsed = feedparser.parse(data, response_headers={"content-location": url})
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        detail = f"feedparser: {problem}" if problem else "no RSS or Atom structure found"
        raise SourceError("bad response", f"not an RSS or Atom feed ({detail}); starts {data[:60]!r}", url=url)
    return parsed


def entry_time(entry: Any, *fields: str) -> datetime:
    """The first of `fields` (e.g. "published", "updated") feedparser could read, as aware UTC."""
    for name in fields:
        parsed = entry.get(f"{name}_parsed")
        if isinstance(parsed, time.struct_time):
            # feedparser normalises every date to UTC in *_parsed; timegm reads it as such.
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
    raw = next((entry.get(name) for name in fields if entry.get(name)), None)
    if raw:
        raise BadEntry("bad timestamp", f"cannot read date {raw!r}")
    raise BadEntry("missing timestamp", f"no {' or '.join(fields)} date")


def media_kind(mime: str | None, medium: str | None = None) -> str | None:
    """"image" / "video" from a MIME type (or an MRSS medium attribute); None for anything else."""
    if medium in ("image", "video"):
        return medium
    major = (mime or "").split("/", 1)[0].strip().lower()
    return major if major in ("image", "video") else None


class RssAgent:
    """`Agent` for one RSS 2.0 or Atom feed (type name "rss")."""

    platform = "rss"
    searches = False

    def __init__(self, url: str, *, fetcher: Fetcher, keywords: list[str] | None = None):
        self.url = check_http_url(url, "url")
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        self.keywords = check_keywords(keywords)
        self.fetcher = fetcher
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        if cursor is not None:
            raise ValueError(f"an RSS feed has a single page; cursor must be None, got {cursor!r}")
        fetched = fetch_document(self.fetcher, self.url, accept=FEED_ACCEPT)
        feed = parse_feed(fetched.data, fetched.final_url)
        language = feed.get("feed", {}).get("language")
        return single_page(
            feed.entries, self.stats, self.keywords,
            to_post=lambda entry: self._to_post(entry, feed.feed, fetched.final_url, language),
            subject=lambda index, entry: f"rss {self.url} entry {index}",
        )

    def close(self) -> None:
        """The fetcher belongs to the runtime; nothing of ours to release."""

    def _to_post(self, entry: Any, feed_info: Any, feed_url: str, language: str | None) -> Post:
        link = entry.get("link") or ""
        post_id = entry.get("id") or link
        if not post_id:
            raise BadEntry("missing id", "entry has neither an id/guid nor a link")
        if not link and urlsplit(post_id).scheme in ("http", "https"):
            link = post_id
        base = link or feed_url
        title = html_to_text(entry.get("title", ""))
        summary = entry.get("summary", "")
        text = "\n\n".join(part for part in (title, html_to_text(summary)) if part)
        account = entry.get("author") or feed_info.get("author") or feed_info.get("title") or urlsplit(feed_url).hostname or ""
        return Post(
            platform=self.platform,
            post_id=post_id,
            url=link or feed_url,
            account=html_to_text(account),
            text=text,
            created_at=entry_time(entry, "published", "updated"),
            media=self._media(entry, summary, base),
            lang=entry.get("language") or language or None,
        )

    @staticmethod
    def _media(entry: Any, summary: str, base: str) -> tuple:
        media = MediaList()
        for enclosure in entry.get("enclosures", []):
            kind = media_kind(enclosure.get("type"))
            if kind:
                media.add(enclosure.get("href"), kind, base)
        for item in entry.get("media_content", []):
            kind = media_kind(item.get("type"), item.get("medium"))
            if kind:
                media.add(item.get("url"), kind, base)
        for thumbnail in entry.get("media_thumbnail", []):
            media.add(thumbnail.get("url"), "image", base)
        media.extend(fragment_images(summary), "image", base)
        for content in entry.get("content", []):
            media.extend(fragment_images(content.get("value", "")), "image", base)
        return media.refs()


def single_page(entries: Any, stats: AgentStats, keywords: tuple[str, ...] | list[str],
                to_post: Callable[[Any], Post], subject: Callable[[int, Any], str]) -> Page:
    """A feed's entries as the one page a feed has: a bad entry is a counted parse drop (the
    others survive), entries not matching the source's keywords are left out."""
    posts: list[Post] = []
    for index, entry in enumerate(entries):
        try:
            post = to_post(entry)
        except BadEntry as bad:
            stats.drops.append(Drop(stage="parse", reason=bad.reason, subject=subject(index, entry), detail=bad.detail))
            continue
        if matches_keywords(post.text, keywords):
            posts.append(post)
    stats.pages += 1
    stats.posts += len(posts)
    return Page(posts=tuple(posts), next_cursor=None)
