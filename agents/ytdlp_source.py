"""The `ytdlp` source agent: channel, user, playlist, hashtag or search URLs of any site yt-dlp knows.

yt-dlp is used as a library, only to list and describe (never to download): the listing is read
with flat extraction one page at a time (`playlist_items`), and each entry is then described by
its own extractor (title, text, uploader, time) without choosing formats. Media stay pages with
resolver "ytdlp": the fetch stage resolves them to one file and downloads it through the guarded
Fetcher, as for the YouTube agent (agents/ytdlp.py). Every yt-dlp connection passes the same
address guard (agents/ytdlp.py's guarded request handler).

A listing or entry that fails (a login wall, a geo block, a removed video) is a counted drop with
the extractor's reason; the other URLs and entries go on. The cursor is JSON: which URL, which
offset in its listing.
"""
from __future__ import annotations

import json
import os
import re
from datetime import date, datetime, time, timezone
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

from agents._html import MediaList, check_keywords, matches_keywords
from agents.base import AgentStats, Drop, Page, Post
from agents.errors import FetchError
from agents.fetch import Fetcher
from agents.ytdlp import _GuardedYoutubeDL, _one_line, _short_reason, _ytdlp_options, host_refusal

MAX_PAGE_SIZE = 500
MAX_ENTRIES_LIMIT = 100_000
_HASHTAG = re.compile(r"#(\w+)")


class YtdlpSourceAgent:
    """`Agent` over yt-dlp listings (type name "ytdlp").

    Params: `urls` (listing URLs; one containing {term}, or {bare} = the term without # or @, is
    searched per campaign term),
    `page_size` (entries per page), `max_entries` (per URL), `since` / `until` (date window: ISO
    dates or times; entries outside it are skipped), `details` (describe each entry with its own
    extractor, for time and text; off = flat entries only), `keywords` (text filter),
    `ca_file` (an extra trusted CA bundle, e.g. a TLS-inspecting gateway's).
    """

    platform = "ytdlp"
    searches = False

    def __init__(self, urls: list[str], *, fetcher: Fetcher, page_size: int = 25, max_entries: int = 200,
                 since: str | None = None, until: str | None = None, details: bool = True,
                 keywords: list[str] | None = None, ca_file: str | None = None):
        if isinstance(urls, str) or not isinstance(urls, (list, tuple)) or not urls:
            raise ValueError(f"urls must be a non-empty list of http(s) URLs, got {urls!r}")
        for index, url in enumerate(urls):
            sample = url.replace("{term}", "x").replace("{bare}", "x") if isinstance(url, str) else url
            if not isinstance(sample, str) or urlsplit(sample).scheme not in ("http", "https") or not urlsplit(sample).netloc:
                raise ValueError(f"urls[{index}] must be an absolute http(s) URL, got {url!r}")
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        for name, value, top in (("page_size", page_size, MAX_PAGE_SIZE), ("max_entries", max_entries, MAX_ENTRIES_LIMIT)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"{name} must be an integer from 1 to {top}, got {value!r}")
        if not isinstance(details, bool):
            raise ValueError(f"details must be true or false, got {details!r}")
        self.urls = list(urls)
        self.searches = self.searches_for({"urls": urls})
        self.page_size, self.max_entries, self.details = page_size, max_entries, details
        self.since, self.until = _bound("since", since), _bound("until", until)
        if self.since and self.until and self.until <= self.since:
            raise ValueError("until must be after since")
        self.keywords = check_keywords(keywords)
        if ca_file is not None and (not isinstance(ca_file, str) or not os.path.isfile(ca_file)):
            raise ValueError(f"ca_file must be the path of a PEM CA bundle that exists, got {ca_file!r}")
        self.ca_file = ca_file
        self.fetcher = fetcher
        self.stats = AgentStats()

    @classmethod
    def searches_for(cls, params: Mapping[str, Any]) -> bool:
        urls = params.get("urls")
        return isinstance(urls, (list, tuple)) and any(
            isinstance(u, str) and ("{term}" in u or "{bare}" in u) for u in urls)

    def close(self) -> None:
        """The fetcher belongs to the runtime; nothing of ours to release."""

    # -- paging -----------------------------------------------------------------------------

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        index, offset = self._state(cursor)
        url = self.urls[index]
        if "{term}" in url or "{bare}" in url:
            if not isinstance(term, str) or not term.strip():
                raise ValueError(f"urls[{index}] takes a search term; the term must be a non-empty string")
            url = url.replace("{term}", quote(term.strip(), safe="")).replace("{bare}", quote(term.strip().lstrip("#@"), safe=""))
        count = min(self.page_size, self.max_entries - offset)
        entries = self._list(url, offset, count)
        posts = []
        for entry in entries:
            post = self._post(entry, url)
            if post is not None and self._in_window(post) and matches_keywords(post.text, self.keywords):
                posts.append(post)
        self.stats.pages += 1
        self.stats.posts += len(posts)
        if entries and len(entries) >= count and offset + count < self.max_entries:
            next_state = (index, offset + count)
        elif index + 1 < len(self.urls):
            next_state = (index + 1, 0)
        else:
            next_state = None
        next_cursor = json.dumps({"url": next_state[0], "offset": next_state[1]}) if next_state else None
        return Page(posts=tuple(posts), next_cursor=next_cursor)

    def _state(self, cursor: str | None) -> tuple[int, int]:
        if cursor is None:
            return 0, 0
        try:
            state = json.loads(cursor)
            index, offset = state["url"], state["offset"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"cursor is not a ytdlp listing state: {exc}; got {cursor[:80]!r}") from None
        if not (isinstance(index, int) and 0 <= index < len(self.urls) and isinstance(offset, int) and offset >= 0):
            raise ValueError(f"cursor is not a ytdlp listing state for these urls; got {cursor[:80]!r}")
        return index, offset

    # -- yt-dlp ---------------------------------------------------------------------------------

    def _extract(self, url: str, **extra: Any) -> dict[str, Any] | Drop:
        """yt-dlp's info dict for `url`, or a Drop(stage="crawl") with the extractor's reason."""
        allowed = self.fetcher.policy.networks()
        refusal = host_refusal(url, allowed)
        if refusal:
            return Drop(stage="crawl", reason=refusal[0], subject=url, detail=refusal[1])
        try:
            self.fetcher.check_robots(url)  # yt-dlp has its own HTTP stack; robots.txt is asked here
        except FetchError as exc:
            return Drop(stage="crawl", reason=exc.reason, subject=url, detail=exc.detail)
        # Entries are described, not downloaded: an entry whose formats need a login still has a
        # title and a date, and its media is resolved (or dropped) by the fetch stage.
        params = {**_ytdlp_options(self.fetcher), "noplaylist": False, "ignore_no_formats_error": True, **extra}
        rps = self.fetcher.policy.per_host_rps
        if rps:
            # yt-dlp's HTTP stack bypasses the Fetcher's per-host limiter; its own pause between
            # extraction requests keeps the listing at the campaign's request rate.
            params["sleep_interval_requests"] = 1.0 / rps
        try:
            with _GuardedYoutubeDL(params, allowed, ca_file=self.ca_file) as ydl:
                info = ydl.extract_info(url, download=False)
        except Exception as exc:  # noqa: BLE001 - extractors raise anything; one bad URL must not stop the source
            return Drop(stage="crawl", reason=_short_reason(exc), subject=url,
                        detail=f"{type(exc).__name__}: {_one_line(exc)}")
        if not isinstance(info, dict):
            return Drop(stage="crawl", reason="ytdlp: extraction failed", subject=url, detail="no info dict")
        return info

    def _list(self, url: str, offset: int, count: int) -> list[dict[str, Any]]:
        info = self._extract(url, extract_flat="in_playlist", playlist_items=f"{offset + 1}:{offset + count}")
        if isinstance(info, Drop):
            self.stats.drops.append(info)
            return []
        if info.get("_type") not in ("playlist", "multi_video"):
            return [info] if offset == 0 else []  # a single video URL is a one-entry listing
        return [e for e in (info.get("entries") or []) if isinstance(e, dict)]

    def _post(self, entry: dict[str, Any], listing: str) -> Post | None:
        page = entry.get("webpage_url") or entry.get("url")
        if not isinstance(page, str) or urlsplit(page).scheme not in ("http", "https"):
            self.stats.drops.append(Drop(stage="parse", reason="missing field", subject=listing,
                                         detail=f"entry {entry.get('id')!r} has no http(s) url"))
            return None
        info = entry
        if self.details and entry.get("_type") == "url":
            described = self._extract(page, noplaylist=True)
            if isinstance(described, Drop):
                self.stats.drops.append(described)
                return None
            info = {**entry, **described}
            page = info.get("webpage_url") or page
        created = _when(info)
        if created is None:
            created = datetime.now(timezone.utc)  # a flat entry without a date: the time it was seen
        title, description = (info.get("title") or "").strip(), (info.get("description") or "").strip()
        text = "\n\n".join(p for p in (title, description) if p)
        tags = [t for t in (info.get("tags") or []) if isinstance(t, str)] + _HASHTAG.findall(text)
        media = MediaList()
        media.add(page, "video", page, resolver="ytdlp")
        thumbnail = info.get("thumbnail") or next(
            (t.get("url") for t in reversed(info.get("thumbnails") or []) if isinstance(t, dict)), None)
        media.add(thumbnail, "image", page)
        # The listing's extractor names the site; a page that embeds a player (Rumble) would
        # otherwise be filed under the player's extractor ("rumbleembed").
        extractor = str(entry.get("ie_key") or info.get("extractor_key") or "ytdlp").lower()
        return Post(
            platform=re.sub(r"[^a-z0-9_-]+", "", extractor.split(":")[0]) or "ytdlp",
            post_id=str(info.get("id") or page),
            url=page,
            account=str(info.get("uploader_id") or info.get("channel_id") or info.get("uploader") or info.get("channel") or ""),
            text=text,
            created_at=created,
            hashtags=tuple(dict.fromkeys(t.lstrip("#") for t in tags if t.lstrip("#"))),
            media=media.refs(),
        )

    def _in_window(self, post: Post) -> bool:
        return (self.since is None or post.created_at >= self.since) and (self.until is None or post.created_at < self.until)


def _when(info: dict[str, Any]) -> datetime | None:
    for key in ("timestamp", "release_timestamp"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=timezone.utc)
    for key in ("upload_date", "release_date"):
        value = info.get(key)
        if isinstance(value, str) and re.fullmatch(r"\d{8}", value):
            return datetime.strptime(value, "%Y%m%d").replace(tzinfo=timezone.utc)
    return None


def _bound(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time.min)
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be an ISO date or time (2026-05-21 or 2026-05-21T00:00:00+09:00), got {value!r}") from None
    else:
        raise ValueError(f"{name} must be an ISO date or time, got {value!r}")
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
