"""Web page agent: each listed page (and, optionally, same-host pages it links to) is one post.

One `fetch_page` call reads one web page, so a long crawl can be stopped and resumed between
any two pages. The cursor is JSON holding the frontier (pages still to read, breadth first) and
the pages already read; with `follow_links` the crawl never queues more than `max_pages` pages in
all, so the cursor stays small.

A listed page that cannot be fetched is a counted drop, not the end of the source (the other
pages may be fine); only when the crawl ends without a single page read is the source reported
unreachable (SourceError).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.html

from agents._html import (
    HTML_ACCEPT,
    MediaList,
    check_http_url,
    check_keywords,
    document_base,
    element_text,
    is_tracking_pixel,
    largest_srcset_url,
    matches_keywords,
    parse_html,
)
from agents.base import AgentStats, Drop, Page, Post
from agents.demo_api import parse_timestamp
from agents.errors import FetchError, SourceError
from agents.fetch import Fetcher

DEFAULT_MAX_PAGES = 50
MAX_PAGES_LIMIT = 10_000
_HTML_MIMES = ("text/html", "application/xhtml+xml")
# Links to these are media or downloads, not pages; following them would waste a fetch.
_NOT_PAGES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".svg", ".mp4", ".webm", ".mov", ".mp3", ".pdf", ".zip", ".css", ".js")


def _normalise(url: str) -> str:
    """The URL without its fragment: #section links name the same page."""
    return urlunsplit(urlsplit(url)._replace(fragment=""))


class WebAgent:
    """`Agent` for a list of web pages (type name "web").

    Params: `urls` (always all read), `follow_links` (also read links to the listed pages'
    hosts, breadth first), `max_pages` (with follow_links: the most pages read in all, never
    fewer than the listed ones; ignored without it), `keywords` (optional text filter).
    """

    platform = "web"
    searches = False

    def __init__(
        self,
        urls: list[str],
        *,
        fetcher: Fetcher,
        follow_links: bool = False,
        max_pages: int = DEFAULT_MAX_PAGES,
        keywords: list[str] | None = None,
    ):
        if isinstance(urls, str) or not isinstance(urls, (list, tuple)) or not urls:
            raise ValueError(f"urls must be a non-empty list of http(s) URLs, got {urls!r}")
        checked = [_normalise(check_http_url(u, f"urls[{i}]")) for i, u in enumerate(urls)]
        self.urls = list(dict.fromkeys(checked))
        if not isinstance(follow_links, bool):
            raise ValueError(f"follow_links must be true or false, got {follow_links!r}")
        if isinstance(max_pages, bool) or not isinstance(max_pages, int) or not 1 <= max_pages <= MAX_PAGES_LIMIT:
            raise ValueError(f"max_pages must be an integer from 1 to {MAX_PAGES_LIMIT}, got {max_pages!r}")
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        self.follow_links = follow_links
        self.max_pages = max_pages
        self.keywords = check_keywords(keywords)
        self.fetcher = fetcher
        self.hosts = {urlsplit(u).netloc.lower() for u in self.urls}
        self.stats = AgentStats()

    # -- paging -----------------------------------------------------------------------------

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        queue, done, read = self._state(cursor)
        url = queue.pop(0)
        done.append(url)
        post, links = self._read(url)
        if post is not None:
            read += 1
        if self.follow_links:
            known = set(queue) | set(done)
            for link in links:
                # Listed pages are always read; discovered ones only while the crawl has room.
                if len(known) >= max(self.max_pages, len(self.urls)):
                    break
                if link not in known:
                    queue.append(link)
                    known.add(link)
        if not queue and read == 0:
            last = self.stats.drops[-1] if self.stats.drops else None
            why = f"; last: {last.reason} {last.detail}".rstrip() if last else ""
            raise SourceError("unreachable", f"none of the {len(done)} page(s) could be read{why}", url=self.urls[0])
        next_cursor = json.dumps({"queue": queue, "done": done, "read": read}, ensure_ascii=False) if queue else None
        posts = (post,) if post is not None and matches_keywords(post.text, self.keywords) else ()
        self.stats.pages += 1
        self.stats.posts += len(posts)
        return Page(posts=posts, next_cursor=next_cursor)

    def close(self) -> None:
        """The fetcher belongs to the runtime; nothing of ours to release."""

    def _state(self, cursor: str | None) -> tuple[list[str], list[str], int]:
        if cursor is None:
            return list(self.urls), [], 0
        try:
            state = json.loads(cursor)
            queue, done, read = state["queue"], state["done"], state["read"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"cursor is not a web crawl state: {exc}; got {cursor[:80]!r}") from None
        if not (isinstance(queue, list) and queue and all(isinstance(u, str) for u in queue)
                and isinstance(done, list) and all(isinstance(u, str) for u in done)
                and isinstance(read, int)):
            raise ValueError(f"cursor is not a web crawl state: bad queue/done/read; got {cursor[:80]!r}")
        return queue, done, read

    # -- one page ---------------------------------------------------------------------------

    def _read(self, url: str) -> tuple[Post | None, list[str]]:
        """The page as a post and its same-host links; (None, []) with a counted drop on failure."""
        try:
            fetched = self.fetcher.get_document(url, accept=HTML_ACCEPT)
        except FetchError as exc:
            self.stats.drops.append(Drop(stage="crawl", reason=exc.reason, subject=url, detail=exc.detail))
            return None, []
        # Servers that declare nothing useful still get a chance if the body starts like markup.
        undeclared = fetched.declared_mime in ("application/octet-stream", "text/plain")
        if fetched.declared_mime not in _HTML_MIMES and not (undeclared and fetched.data.lstrip()[:1] == b"<"):
            self.stats.drops.append(Drop(stage="parse", reason="not html", subject=url,
                                         detail=f"declared {fetched.declared_mime}"))
            return None, []
        try:
            doc = parse_html(fetched.data)
        except ValueError as exc:
            self.stats.drops.append(Drop(stage="parse", reason="bad html", subject=url, detail=str(exc)))
            return None, []
        base = document_base(doc, fetched.final_url)
        post = Post(
            platform=self.platform,
            post_id=url,
            url=url,
            account=urlsplit(fetched.final_url).netloc.lower(),
            text=self._text(doc),
            created_at=self._published(doc) or datetime.now(timezone.utc),
            media=self._media(doc, base),
            lang=(doc.get("lang") or "").strip() or None,
        )
        return post, self._links(doc, base) if self.follow_links else []

    @staticmethod
    def _text(doc: lxml.html.HtmlElement) -> str:
        title = next((element_text(t) for t in doc.xpath("//title")), "")
        description = _meta(doc, "og:description") or _meta(doc, "description") or ""
        return "\n\n".join(part for part in (title, " ".join(description.split())) if part)

    @staticmethod
    def _published(doc: lxml.html.HtmlElement) -> datetime | None:
        value = _meta(doc, "article:published_time")
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except ValueError:
            return None  # a date without a zone, or garbage: the fetch time is the honest fallback

    @staticmethod
    def _media(doc: lxml.html.HtmlElement, base: str) -> tuple:
        media = MediaList()
        for img in doc.iter("img"):
            if is_tracking_pixel(img):
                continue
            # The largest srcset candidate is the same picture at the best resolution the site has.
            media.add(largest_srcset_url(img.get("srcset")) or img.get("src"), "image", base)
        for video in doc.iter("video"):
            if is_tracking_pixel(video):
                continue
            media.add(video.get("src"), "video", base)
            for source in video.iter("source"):
                media.add(source.get("src"), "video", base)
        for name in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"):
            media.add(_meta(doc, name), "image", base)
        # og:video is often a player page (text/html), not a file: yt-dlp can read those.
        player = (_meta(doc, "og:video:type") or "").lower().startswith("text/html")
        for name in ("og:video", "og:video:url", "og:video:secure_url"):
            media.add(_meta(doc, name), "video", base, resolver="ytdlp" if player else None)
        return media.refs()

    def _links(self, doc: lxml.html.HtmlElement, base: str) -> list[str]:
        links: list[str] = []
        for href in doc.xpath("//a/@href"):
            absolute = _normalise(urljoin(base, href.strip()))
            parts = urlsplit(absolute)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() not in self.hosts:
                continue
            if parts.path.lower().endswith(_NOT_PAGES):
                continue
            links.append(absolute)
        return list(dict.fromkeys(links))


def _meta(doc: lxml.html.HtmlElement, name: str) -> str | None:
    """A <meta property=...> or <meta name=...> content (Open Graph uses property, Twitter name)."""
    for meta in doc.iter("meta"):
        key = (meta.get("property") or meta.get("name") or "").strip().lower()
        if key == name and (meta.get("content") or "").strip():
            return meta.get("content").strip()
    return None
