"""Crawler for one Mastodon instance's public API: hashtag timelines and status search.

A term "#tag" reads `GET /api/v1/timelines/tag/:tag`; a plain keyword reads
`GET /api/v2/search?type=statuses&q=...` (many instances answer status search only to a logged-in
client, hence the optional `access_token`, sent as a Bearer header). Both page backwards with
`max_id`: the cursor is the smallest status id of the page just read, and an empty page ends the
walk (the `Link: rel="next"` header would save that last request, but the fetcher hands back only
the body).

Decisions:
- `post_id` is the status `uri`, its ActivityPub identity. The numeric `id` is local to the
  instance that answered, so the same federated status read through two instances would
  otherwise be stored twice.
- A reblog is recorded as the original status (its uri, author, text and media): the media and
  the words are the original author's, and every reblog of a fake then lands on one post. Paging
  still uses the reblog's own id, which is what the timeline is ordered by.
- Attachments: image -> image; video and gifv -> video (`url`, falling back to `remote_url` for
  remote media the instance has not cached); audio and unknown are counted parse drops
  ("unsupported media type") and the post keeps its other media.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from agents import _social as s
from agents.base import AgentStats, MediaRef, Page, Post
from agents.errors import SourceError
from agents.fetch import Fetcher
from agents.post_urls import post_url

MAX_PAGE_SIZE = 40  # Mastodon caps `limit` at 40 for timelines and search
_MEDIA_KINDS = {"image": "image", "video": "video", "gifv": "video"}
# Mastodon hashtags are letters, digits, underscores and a few joiners (Unicode included).
_TAG = re.compile(r"^[\w\u00b7\u200c]+$")


class MastodonAgent:
    """`Agent` for one Mastodon instance; one call reads one page of statuses."""

    platform = "mastodon"
    searches = True

    def __init__(self, base_url: str, fetcher: Fetcher, page_size: int = 40, access_token: str | None = None):
        self.base_url = s.check_base_url(base_url)
        self.fetcher = s.check_fetcher(fetcher)
        self.page_size = s.check_page_size(page_size, MAX_PAGE_SIZE)
        self.access_token = s.check_token(access_token)
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        url, params, is_tag = self._request_for(s.check_term(term))
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor:
                raise ValueError(f"cursor must be a non-empty status id string, got {cursor!r}")
            params["max_id"] = cursor
        answer = s.get_json(self.fetcher, url, params, self.access_token)
        if is_tag:
            if not isinstance(answer, list):
                raise s.bad_shape(answer, "a list of statuses", url)
            statuses = answer
        else:
            if not isinstance(answer, dict) or not isinstance(answer.get("statuses"), list):
                raise s.bad_shape(answer, "an object with a 'statuses' list", url)
            statuses = answer["statuses"]

        posts = [p for p in (self._parse(r, term, i) for i, r in enumerate(statuses)) if p is not None]
        next_cursor = self._next_cursor(statuses, cursor, url)
        self.stats.pages += 1
        self.stats.posts += len(posts)
        return Page(posts=tuple(posts), next_cursor=next_cursor)

    def close(self) -> None:
        """The fetcher is shared and owned by the caller; nothing of ours to release."""

    # -- requests and paging ------------------------------------------------------------------

    def _request_for(self, term: str) -> tuple[str, dict[str, Any], bool]:
        if term.startswith("#"):
            tag = term[1:]
            if not _TAG.match(tag):
                raise ValueError(
                    f"mastodon cannot search hashtag {term!r}: a tag is letters, digits and underscores"
                )
            return f"{self.base_url}/api/v1/timelines/tag/{quote(tag, safe='')}", {"limit": self.page_size}, True
        params = {"q": term, "type": "statuses", "limit": self.page_size}
        return f"{self.base_url}/api/v2/search", params, False

    def _next_cursor(self, statuses: list, sent: str | None, url: str) -> str | None:
        if not statuses:
            return None
        ids = [r["id"] for r in statuses if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"]]
        if not ids:
            raise SourceError("bad response", f"none of the {len(statuses)} statuses has an id to page from", url=url)
        smallest = min(ids, key=_id_order)
        s.same_cursor(smallest, sent, url)
        if sent is not None and _id_order(smallest) > _id_order(sent):
            # max_id was ignored: the answer is newer than what we asked for, and would loop.
            raise SourceError("cursor did not advance", f"got ids down to {smallest}, asked below {sent}", url=url)
        return smallest

    # -- parsing ------------------------------------------------------------------------------

    def _parse(self, record: object, term: str, index: int) -> Post | None:
        subject = f"mastodon {term!r} item {index}"
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            subject = f"mastodon status {record['id']} at {self.base_url}"
        try:
            return self._to_post(record, subject)
        except s.BadRecord as bad:
            s.drop(self.stats, bad.reason, subject, bad.detail)
            return None

    def _to_post(self, record: object, subject: str) -> Post:
        if not isinstance(record, dict):
            raise s.BadRecord("not an object", f"got {type(record).__name__}")
        status = record
        if record.get("reblog") is not None:
            status = record["reblog"]
            if not isinstance(status, dict):
                raise s.BadRecord("bad field", f"reblog is {type(status).__name__}")
        uri = s.required_str(status, "uri")
        account = s.required_dict(status, "account")
        acct = s.required_str(account, "acct", "account.acct")
        content = status.get("content") or ""
        spoiler = status.get("spoiler_text") or ""
        if not isinstance(content, str) or not isinstance(spoiler, str):
            raise s.BadRecord("bad field", "content and spoiler_text must be strings")
        # A content warning is part of what readers see first; keep it ahead of the body.
        text = "\n\n".join(t for t in (spoiler.strip(), s.html_to_text(content)) if t)
        tags = status.get("tags") or []
        if not isinstance(tags, list):
            raise s.BadRecord("bad field", "tags must be a list")
        names = [t["name"] for t in tags if isinstance(t, dict) and isinstance(t.get("name"), str)]
        return Post(
            platform=self.platform,
            post_id=uri,
            url=post_url(s.optional_str(status, "url") or uri, "url"),  # the instance's word only (issue 16)
            account=acct,
            text=text,
            created_at=s.timestamp(status.get("created_at"), "created_at"),
            hashtags=s.unique([n.lstrip("#") for n in names]),
            media=self._media(status.get("media_attachments") or [], subject),
            lang=s.optional_str(status, "language"),
        )

    def _media(self, attachments: object, subject: str) -> tuple[MediaRef, ...]:
        if not isinstance(attachments, list):
            raise s.BadRecord("bad field", "media_attachments must be a list")
        refs: list[MediaRef] = []
        for position, item in enumerate(attachments):
            try:
                if not isinstance(item, dict):
                    raise s.BadRecord("bad media", f"media_attachments[{position}] is {type(item).__name__}")
                kind = _MEDIA_KINDS.get(item.get("type"))
                if kind is None:
                    raise s.BadRecord("unsupported media type", f"media_attachments[{position}] is {item.get('type')!r}")
                url = s.media_url(item.get("url") or item.get("remote_url"), f"media_attachments[{position}].url")
                refs.append(MediaRef(url=url, kind=kind, position=position))
            except s.BadRecord as bad:
                s.drop(self.stats, bad.reason, subject, bad.detail)
        return tuple(refs)


def _id_order(status_id: str) -> tuple[int, int, str]:
    """Mastodon ids are numeric strings (compare as numbers); other servers' flake ids sort as text."""
    if status_id.isdigit():
        return (0, int(status_id), "")
    return (1, 0, status_id)
