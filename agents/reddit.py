"""Crawler for Reddit's JSON listings: site search, subreddit search and a subreddit's new posts.

- term -> `GET {base_url}/search.json?q=&sort=&limit=&after=&raw_json=1&type=link&include_over_18=on`
- with `subreddit` set -> `/r/<sub>/search.json?...&restrict_sr=1`
- term "" or "*" with `subreddit` set -> `/r/<sub>/<sort>.json` (new, hot or top)

Reddit has no hashtags: a "#tag" term is searched as the plain word. `raw_json=1` asks for
URLs without HTML escaping; `&amp;` is still undone in case a server ignores it. NSFW posts are
kept (a deepfake is no less one for carrying the label), which is why search asks for them with
`include_over_18=on`. `data.after` is the cursor. Reddit increasingly refuses anonymous JSON
reads; set `access_token` (an OAuth token, sent as a Bearer header) with
`base_url: https://oauth.reddit.com`.

Each listing child `t3` becomes a Post: `post_id` is its fullname (`name`, t3_...), `url` is
https://www.reddit.com + `permalink` (the public address, whichever API host answered), text is
the title and the self text. Media, from the crosspost parent when there is one (a crosspost
carries its parent's media):
- gallery (`is_gallery`): `gallery_data.items` in order, each through `media_metadata[id]`:
  an Image's `s.u`; an AnimatedImage's `s.gif` (the original upload) as an image, else its
  `s.mp4` as a video; anything else, or an item not processed yet, is a counted drop;
- Reddit-hosted video (`is_video`): `secure_media.reddit_video.fallback_url` (or `media.`),
  a plain MP4;
- an image post (`post_hint` "image", or a URL whose path ends in an image extension): its URL;
- an embedded third-party video (`post_hint` "rich:video": YouTube, Streamable, Imgur gifv...):
  the post's link as a video with resolver "ytdlp", for yt-dlp to extract.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from agents import _social as s
from agents.base import AgentStats, MediaRef, Page, Post
from agents.fetch import Fetcher

MAX_PAGE_SIZE = 100  # Reddit caps `limit` at 100
WEB_URL = "https://www.reddit.com"
SEARCH_SORTS = ("new", "relevance", "hot", "top", "comments")
LISTING_SORTS = ("new", "hot", "top")  # the subreddit listings these sorts name
_SUBREDDIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{1,20}$")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")


class RedditAgent:
    """`Agent` for Reddit listings; one call reads one page (up to 100 posts)."""

    platform = "reddit"
    searches = True

    def __init__(
        self,
        fetcher: Fetcher,
        base_url: str = "https://www.reddit.com",
        subreddit: str | None = None,
        sort: str = "new",
        page_size: int = 100,
        access_token: str | None = None,
    ):
        self.fetcher = s.check_fetcher(fetcher)
        self.base_url = s.check_base_url(base_url)
        self.subreddit = _check_subreddit(subreddit)
        self.sort = s.check_choice("sort", sort, SEARCH_SORTS)
        self.page_size = s.check_page_size(page_size, MAX_PAGE_SIZE)
        self.access_token = s.check_token(access_token)
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        url, params = self._request_for(term)
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor:
                raise ValueError(f"cursor must be a non-empty fullname string, got {cursor!r}")
            params["after"] = cursor
        answer = s.get_json(self.fetcher, url, params, self.access_token)
        listing = _listing_data(answer, url)
        next_cursor = listing.get("after")
        if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
            raise s.bad_shape(answer, "data.after to be a fullname string or null", url)
        if not listing["children"]:
            next_cursor = None
        s.same_cursor(next_cursor, cursor, url)

        children = listing["children"]
        posts = [p for p in (self._parse(c, term, i) for i, c in enumerate(children)) if p is not None]
        self.stats.pages += 1
        self.stats.posts += len(posts)
        return Page(posts=tuple(posts), next_cursor=next_cursor)

    def close(self) -> None:
        """The fetcher is shared and owned by the caller; nothing of ours to release."""

    # -- requests -----------------------------------------------------------------------------

    def _request_for(self, term: object) -> tuple[str, dict[str, Any]]:
        if not isinstance(term, str):
            raise ValueError(f"search term must be a string, got {term!r}")
        term = term.strip()
        if term in ("", "*"):
            if self.subreddit is None:
                raise ValueError(f"reddit cannot list everything: term {term!r} needs the subreddit parameter")
            if self.sort not in LISTING_SORTS:
                raise ValueError(
                    f"sort {self.sort!r} applies to searches only; a subreddit listing (term {term!r}) "
                    f"takes one of {', '.join(LISTING_SORTS)}"
                )
            return f"{self.base_url}/r/{self.subreddit}/{self.sort}.json", {"limit": self.page_size, "raw_json": 1}
        query = term.lstrip("#") if term.startswith("#") else term
        if not query.strip():
            raise ValueError(f"reddit cannot search {term!r}: nothing left after the '#'")
        params: dict[str, Any] = {
            "q": query, "sort": self.sort, "limit": self.page_size, "raw_json": 1,
            "type": "link", "include_over_18": "on",
        }
        if self.subreddit is None:
            return f"{self.base_url}/search.json", params
        params["restrict_sr"] = 1
        return f"{self.base_url}/r/{self.subreddit}/search.json", params

    # -- parsing ------------------------------------------------------------------------------

    def _parse(self, child: object, term: str, index: int) -> Post | None:
        subject = f"reddit {term!r} item {index}"
        data = child.get("data") if isinstance(child, dict) else None
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            subject = f"reddit {data['name']}"
        try:
            if not isinstance(child, dict) or not isinstance(data, dict):
                raise s.BadRecord("not an object", f"listing child is {type(child).__name__} without a data object")
            if child.get("kind") != "t3":
                raise s.BadRecord("not a post", f"listing child of kind {child.get('kind')!r}")
            return self._to_post(data, subject)
        except s.BadRecord as bad:
            s.drop(self.stats, bad.reason, subject, bad.detail)
            return None

    def _to_post(self, data: dict, subject: str) -> Post:
        name = s.required_str(data, "name")
        if not name.startswith("t3_"):
            raise s.BadRecord("bad field", f"name {name!r} is not a post fullname (t3_...)")
        permalink = s.required_str(data, "permalink")
        if not permalink.startswith("/"):
            raise s.BadRecord("bad field", f"permalink {permalink!r:.120} is not a site path")
        author = s.required_str(data, "author")
        title = s.required_str(data, "title")
        selftext = s.optional_str(data, "selftext") or ""
        created = data.get("created_utc")
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise s.BadRecord("bad timestamp", f"created_utc {created!r}")
        try:
            created_at = datetime.fromtimestamp(created, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise s.BadRecord("bad timestamp", f"created_utc {created!r}: {exc}") from None
        return Post(
            platform=self.platform,
            post_id=name,
            url=WEB_URL + permalink,
            account=author,
            text="\n\n".join(t for t in (title.strip(), selftext.strip()) if t),
            created_at=created_at,
            media=self._media(data, subject),
        )

    def _media(self, data: dict, subject: str) -> tuple[MediaRef, ...]:
        parents = data.get("crosspost_parent_list")
        if isinstance(parents, list) and parents and isinstance(parents[0], dict):
            data = parents[0]
        try:
            if data.get("is_gallery"):
                return self._gallery(data, subject)
            if data.get("is_video"):
                return (MediaRef(url=_hosted_video(data), kind="video", position=0),)
            link = _unescape(data.get("url_overridden_by_dest") or data.get("url"))
            hint = data.get("post_hint")
            if hint == "image" or (isinstance(link, str) and urlsplit(link).path.lower().endswith(_IMAGE_EXTENSIONS)):
                return (MediaRef(url=s.media_url(link, "url"), kind="image", position=0),)
            if hint == "rich:video":
                return (MediaRef(url=s.media_url(link, "url"), kind="video", position=0, resolver="ytdlp"),)
            if hint == "hosted:video":
                raise s.BadRecord("bad media", "hosted:video without is_video and a reddit_video")
            return ()
        except s.BadRecord as bad:
            s.drop(self.stats, bad.reason, subject, bad.detail)
            return ()

    def _gallery(self, data: dict, subject: str) -> tuple[MediaRef, ...]:
        gallery = data.get("gallery_data")
        items = gallery.get("items") if isinstance(gallery, dict) else None
        metadata = data.get("media_metadata")
        if not isinstance(items, list) or not isinstance(metadata, dict):
            raise s.BadRecord("bad media", "gallery without gallery_data.items and media_metadata")
        refs: list[MediaRef] = []
        for position, item in enumerate(items):
            try:
                media_id = item.get("media_id") if isinstance(item, dict) else None
                meta = metadata.get(media_id) if isinstance(media_id, str) else None
                if not isinstance(meta, dict):
                    raise s.BadRecord("bad media", f"gallery item {position} ({media_id!r}) has no media_metadata")
                refs.append(_gallery_ref(meta, position))
            except s.BadRecord as bad:
                s.drop(self.stats, bad.reason, subject, bad.detail)
        return tuple(refs)


def _gallery_ref(meta: dict, position: int) -> MediaRef:
    name = f"media_metadata[{meta.get('id')!r}]"
    if meta.get("status") != "valid":
        raise s.BadRecord("media not ready", f"{name} status is {meta.get('status')!r}")
    kind = meta.get("e")
    if kind not in ("Image", "AnimatedImage"):
        raise s.BadRecord("unsupported media type", f"{name} is {kind!r}")
    source = meta.get("s")
    if not isinstance(source, dict):
        raise s.BadRecord("bad media", f"{name} has no source ('s')")
    if kind == "Image":
        return MediaRef(url=s.media_url(_unescape(source.get("u")), f"{name}.s.u"), kind="image", position=position)
    if source.get("gif"):  # an AnimatedImage: the GIF is the original upload, the MP4 Reddit's re-encode
        return MediaRef(url=s.media_url(_unescape(source["gif"]), f"{name}.s.gif"), kind="image", position=position)
    return MediaRef(url=s.media_url(_unescape(source.get("mp4")), f"{name}.s.mp4"), kind="video", position=position)


def _hosted_video(data: dict) -> str:
    for holder in ("secure_media", "media"):
        container = data.get(holder)
        video = container.get("reddit_video") if isinstance(container, dict) else None
        if isinstance(video, dict) and video.get("fallback_url"):
            return s.media_url(_unescape(video["fallback_url"]), f"{holder}.reddit_video.fallback_url")
    raise s.BadRecord("bad media", "is_video without a reddit_video fallback_url")


def _unescape(url: object) -> object:
    """Undo the HTML escaping Reddit applies to JSON without raw_json=1. Only `&amp;` occurs in
    URLs; html.unescape would also turn a literal '&copy=' query into '©='."""
    return url.replace("&amp;", "&") if isinstance(url, str) else url


def _check_subreddit(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip()
        for prefix in ("/r/", "r/"):
            if name.startswith(prefix):
                name = name[len(prefix):]
        name = name.rstrip("/")
        if _SUBREDDIT.match(name):
            return name
    raise ValueError(f"subreddit must be a subreddit name like 'politics' (or 'r/politics'), got {value!r}")


def _listing_data(answer: object, url: str) -> dict:
    """The `data` of a Listing. A submission's own page (/comments/<id>.json) answers
    [submission listing, comments listing]; its first listing holds the post."""
    if isinstance(answer, list) and answer:
        answer = answer[0]
    data = answer.get("data") if isinstance(answer, dict) and answer.get("kind") == "Listing" else None
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise s.bad_shape(answer, "a Listing with data.children", url)
    return data
