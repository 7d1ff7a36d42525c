"""Crawler for Bluesky post search: `GET {base_url}/xrpc/app.bsky.feed.searchPosts`.

`q` is the term as given (Bluesky's search reads "#tag" as a hashtag query), `sort=latest`
(or `top`), and the answer's opaque `cursor` is the next page; no cursor, or an empty page,
ends the walk.

Bluesky has at times closed unauthenticated full-text search on its public AppView, and refuses
`cursor` there (bluesky-social/atproto#3423, #2838), so an `access_token` (an access JWT from
`com.atproto.server.createSession`) can be set; it is sent as a Bearer header.

Each post view gives: `uri` (at://did/app.bsky.feed.post/rkey, the post's global identity, used
as `post_id`), `author.handle`, `record.text`, `record.createdAt`, `record.langs`, hashtags from
the `app.bsky.richtext.facet#tag` facets and the record's `tags`, and the embed view:
- `app.bsky.embed.images#view`: each image's `fullsize` URL;
- `app.bsky.embed.video#view`: the view's `playlist` is HLS, so the original upload is read
  as a blob from the author's PDS: `{pds}/xrpc/com.atproto.sync.getBlob?did=<did>&cid=<cid>`;
- `app.bsky.embed.recordWithMedia#view`: the `media` inside, read as above;
- link cards and quoted posts carry no media of this post and give nothing; an embed type this
  module does not know is a counted drop ("unsupported media type"), the post is kept.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from agents import _social as s
from agents.base import AgentStats, MediaRef, Page, Post
from agents.fetch import Fetcher

MAX_PAGE_SIZE = 100  # searchPosts caps `limit` at 100
SEARCH_PATH = "/xrpc/app.bsky.feed.searchPosts"
WEB_URL = "https://bsky.app"  # where people (and the evidence capture) open a post

_IMAGES = "app.bsky.embed.images#view"
_VIDEO = "app.bsky.embed.video#view"
_WITH_MEDIA = "app.bsky.embed.recordWithMedia#view"
_NO_MEDIA = frozenset({"app.bsky.embed.external#view", "app.bsky.embed.record#view"})
_TAG_FACET = "app.bsky.richtext.facet#tag"


class BlueskyAgent:
    """`Agent` for Bluesky's searchPosts; one call reads one page of post views."""

    platform = "bluesky"
    searches = True

    def __init__(
        self,
        fetcher: Fetcher,
        base_url: str = "https://public.api.bsky.app",
        pds: str = "https://bsky.social",
        page_size: int = 25,
        sort: str = "latest",
        access_token: str | None = None,
    ):
        self.fetcher = s.check_fetcher(fetcher)
        self.base_url = s.check_base_url(base_url)
        self.pds = s.check_base_url(pds, "pds")
        self.page_size = s.check_page_size(page_size, MAX_PAGE_SIZE)
        self.sort = s.check_choice("sort", sort, ("latest", "top"))
        self.access_token = s.check_token(access_token)
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        term = s.check_term(term)
        if term.startswith("#") and not term[1:].strip():
            raise ValueError(f"bluesky cannot search hashtag {term!r}: the tag is empty")
        url = self.base_url + SEARCH_PATH
        params: dict[str, Any] = {"q": term, "sort": self.sort, "limit": self.page_size}
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor:
                raise ValueError(f"cursor must be a non-empty string, got {cursor!r}")
            params["cursor"] = cursor
        answer = s.get_json(self.fetcher, url, params, self.access_token)
        if not isinstance(answer, dict) or not isinstance(answer.get("posts"), list):
            raise s.bad_shape(answer, "an object with a 'posts' list", url)
        next_cursor = answer.get("cursor")
        if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
            raise s.bad_shape(answer, "'cursor' to be a non-empty string when present", url)
        if not answer["posts"]:
            next_cursor = None  # some servers hand out a cursor with an empty last page
        s.same_cursor(next_cursor, cursor, url)

        views = answer["posts"]
        posts = [p for p in (self._parse(v, term, i) for i, v in enumerate(views)) if p is not None]
        self.stats.pages += 1
        self.stats.posts += len(posts)
        return Page(posts=tuple(posts), next_cursor=next_cursor)

    def close(self) -> None:
        """The fetcher is shared and owned by the caller; nothing of ours to release."""

    # -- parsing ------------------------------------------------------------------------------

    def _parse(self, view: object, term: str, index: int) -> Post | None:
        subject = f"bluesky {term!r} item {index}"
        if isinstance(view, dict) and isinstance(view.get("uri"), str):
            subject = view["uri"]
        try:
            return self._to_post(view, subject)
        except s.BadRecord as bad:
            s.drop(self.stats, bad.reason, subject, bad.detail)
            return None

    def _to_post(self, view: object, subject: str) -> Post:
        if not isinstance(view, dict):
            raise s.BadRecord("not an object", f"got {type(view).__name__}")
        uri = s.required_str(view, "uri")
        did, rkey = _split_post_uri(uri)
        author = s.required_dict(view, "author")
        handle = s.required_str(author, "handle", "author.handle")
        record = s.required_dict(view, "record")
        text = record.get("text", "")
        if not isinstance(text, str):
            raise s.BadRecord("bad field", f"record.text is {type(text).__name__}")
        langs = record.get("langs") or []
        if not isinstance(langs, list):
            raise s.BadRecord("bad field", "record.langs must be a list")
        lang = next((code for code in langs if isinstance(code, str) and code), None)
        # "handle.invalid" marks a handle that no longer verifies; the DID always addresses the profile.
        profile = did if handle == "handle.invalid" else handle
        embed = view.get("embed")
        return Post(
            platform=self.platform,
            post_id=uri,
            url=f"{WEB_URL}/profile/{quote(profile, safe=':.')}/post/{quote(rkey, safe='')}",
            account=handle,
            text=text,
            created_at=s.timestamp(record.get("createdAt"), "record.createdAt"),
            hashtags=_hashtags(record),
            media=self._media(embed, did, subject) if embed is not None else (),
            lang=lang,
        )

    def _media(self, embed: object, did: str, subject: str) -> tuple[MediaRef, ...]:
        try:
            if not isinstance(embed, dict):
                raise s.BadRecord("bad media", f"embed is {type(embed).__name__}")
            kind = embed.get("$type")
            if kind == _WITH_MEDIA:
                # The quoted record is someone else's post; only the attached media is this post's.
                inner = embed.get("media")
                return self._media(inner, did, subject)
            if kind == _IMAGES:
                return self._images(embed, subject)
            if kind == _VIDEO:
                cid = s.required_str(embed, "cid", "embed.cid")
                query = urlencode({"did": did, "cid": cid})
                return (MediaRef(url=f"{self.pds}/xrpc/com.atproto.sync.getBlob?{query}", kind="video", position=0),)
            if kind in _NO_MEDIA:
                return ()
            raise s.BadRecord("unsupported media type", f"embed $type {kind!r}")
        except s.BadRecord as bad:
            s.drop(self.stats, bad.reason, subject, bad.detail)
            return ()

    def _images(self, embed: dict, subject: str) -> tuple[MediaRef, ...]:
        images = embed.get("images")
        if not isinstance(images, list):
            raise s.BadRecord("bad media", "embed.images must be a list")
        refs: list[MediaRef] = []
        for position, image in enumerate(images):
            try:
                if not isinstance(image, dict):
                    raise s.BadRecord("bad media", f"embed.images[{position}] is {type(image).__name__}")
                url = s.media_url(image.get("fullsize"), f"embed.images[{position}].fullsize")
                refs.append(MediaRef(url=url, kind="image", position=position))
            except s.BadRecord as bad:
                s.drop(self.stats, bad.reason, subject, bad.detail)
        return tuple(refs)


def _split_post_uri(uri: str) -> tuple[str, str]:
    """(did, rkey) of at://<did>/app.bsky.feed.post/<rkey>, or BadRecord."""
    parts = uri.split("/")
    if len(parts) != 5 or parts[:2] != ["at:", ""] or not parts[2].startswith("did:") or parts[3] != "app.bsky.feed.post" or not parts[4]:
        raise s.BadRecord("bad field", f"uri is not an at://did/app.bsky.feed.post/rkey URI: {uri!r:.120}")
    return parts[2], parts[4]


def _hashtags(record: dict) -> tuple[str, ...]:
    """Tags from rich-text tag facets, then the record's own `tags` (tags not shown in the text)."""
    found: list[str] = []
    facets = record.get("facets") or []
    for facet in facets if isinstance(facets, list) else []:
        features = facet.get("features") if isinstance(facet, dict) else None
        for feature in features if isinstance(features, list) else []:
            if isinstance(feature, dict) and feature.get("$type") == _TAG_FACET and isinstance(feature.get("tag"), str):
                found.append(feature["tag"].lstrip("#"))
    tags = record.get("tags") or []
    found.extend(t.lstrip("#") for t in (tags if isinstance(tags, list) else []) if isinstance(t, str))
    return s.unique(found)
