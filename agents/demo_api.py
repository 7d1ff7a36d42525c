"""Crawler for the bundled demo platform's JSON search API.

Pages through `GET /api/v1/search?q=TERM&cursor=C&limit=N`. Records that break the platform's
contract are skipped and counted (a Drop with stage "parse"), so one malformed post never loses
a page; an answer that is not a search page at all raises SourceError.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

from agents.base import AgentStats, Drop, MediaRef, Page, Post
from agents.errors import FetchError, SourceError
from agents.fetch import Fetcher

MAX_PAGE_SIZE = 100  # the platform caps `limit` at 100


class _BadRecord(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def check_base_url(base_url: object) -> str:
    """An absolute http(s) URL without a trailing slash, or ValueError naming the problem."""
    if not isinstance(base_url, str) or not base_url:
        raise ValueError(f"base_url must be a non-empty string, got {base_url!r}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    return base_url.rstrip("/")


def parse_timestamp(value: object) -> datetime:
    """An ISO 8601 timestamp with an offset, as aware UTC. A naive one is ambiguous, so refused."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    # fromisoformat only learned the 'Z' suffix in 3.11; the project supports 3.10.
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return when.astimezone(timezone.utc)


class DemoApiAgent:
    """`Agent` for the demo platform's JSON API; one call fetches one page of results."""

    platform = "demo"
    searches = True

    def __init__(self, base_url: str, fetcher: Fetcher, page_size: int = 50):
        self.base_url = check_base_url(base_url)
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {page_size!r}")
        self.fetcher = fetcher
        self.page_size = page_size
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        if not isinstance(term, str) or not term.strip():
            raise ValueError(f"search term must be a non-empty string, got {term!r}")
        url = f"{self.base_url}/api/v1/search"
        params: dict[str, Any] = {"q": term, "limit": self.page_size}
        if cursor is not None:
            params["cursor"] = cursor
        try:
            answer = self.fetcher.get_json(url, params)
        except FetchError as exc:
            raise SourceError(exc.reason, exc.detail, url=exc.url or url) from None

        if not isinstance(answer, dict) or not isinstance(answer.get("posts"), list):
            shape = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            raise SourceError("bad response", f"expected an object with a 'posts' list, got {shape}", url=url)
        next_cursor = answer.get("next_cursor")
        if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
            raise SourceError("bad response", f"next_cursor must be a non-empty string or null, got {next_cursor!r}", url=url)
        if next_cursor is not None and next_cursor == cursor:
            # A cursor that does not move would page forever.
            raise SourceError("cursor did not advance", f"next_cursor {next_cursor!r} equals the cursor sent", url=url)

        posts: list[Post] = []
        for index, record in enumerate(answer["posts"]):
            post = self._parse(record, term, index)
            if post is not None:
                posts.append(post)
        self.stats.pages += 1
        self.stats.posts += len(posts)
        return Page(posts=tuple(posts), next_cursor=next_cursor)

    def close(self) -> None:
        """The fetcher is shared and owned by the caller, so there is nothing of ours to release."""

    # -- parsing ------------------------------------------------------------------------------

    def _parse(self, record: object, term: str, index: int) -> Post | None:
        subject = f"demo search {term!r} item {index}"
        if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"]:
            subject = f"demo post {record['id']}"
        try:
            return self._to_post(record, subject)
        except _BadRecord as bad:
            self.stats.drops.append(Drop(stage="parse", reason=bad.reason, subject=subject, detail=bad.detail))
            return None

    def _to_post(self, record: object, subject: str) -> Post:
        if not isinstance(record, dict):
            raise _BadRecord("not an object", f"got {type(record).__name__}")
        post_id = _required_str(record, "id")
        account = record.get("account")
        if not isinstance(account, dict):
            raise _BadRecord("missing field", "account")
        handle = _required_str(account, "handle", "account.handle")
        text = record.get("text", "")
        if not isinstance(text, str):
            raise _BadRecord("bad field", f"text is {type(text).__name__}")
        try:
            created_at = parse_timestamp(record.get("created_at"))
        except ValueError as exc:
            raise _BadRecord("bad timestamp", f"created_at {record.get('created_at')!r}: {exc}") from None
        url = record.get("url") or f"/p/{post_id}"
        if not isinstance(url, str):
            raise _BadRecord("bad field", f"url is {type(url).__name__}")
        hashtags = record.get("hashtags", [])
        if not isinstance(hashtags, list) or not all(isinstance(t, str) for t in hashtags):
            raise _BadRecord("bad field", "hashtags must be a list of strings")
        lang = record.get("lang")
        if lang is not None and not isinstance(lang, str):
            raise _BadRecord("bad field", f"lang is {type(lang).__name__}")
        return Post(
            platform=self.platform,
            post_id=post_id,
            url=urljoin(self.base_url + "/", url),
            account=handle,
            text=text,
            created_at=created_at,
            hashtags=tuple(t.lstrip("#") for t in hashtags if t.lstrip("#")),
            media=self._media(record.get("media", []), subject),
            lang=lang or None,
        )

    def _media(self, items: object, subject: str) -> tuple[MediaRef, ...]:
        """Usable media refs; a bad item is dropped (and counted) without losing the post."""
        if not isinstance(items, list):
            raise _BadRecord("bad field", "media must be a list")
        refs: list[MediaRef] = []
        for position, item in enumerate(items):
            kind = item.get("type") if isinstance(item, dict) else None
            url = item.get("url") if isinstance(item, dict) else None
            if kind not in ("image", "video") or not isinstance(url, str) or not url:
                self.stats.drops.append(Drop(
                    stage="parse", reason="bad media", subject=subject,
                    detail=f"media[{position}] = {item!r:.200}",
                ))
                continue
            refs.append(MediaRef(url=urljoin(self.base_url + "/", url), kind=kind, position=position))
        return tuple(refs)


def _required_str(record: dict, key: str, name: str | None = None) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise _BadRecord("missing field", name or key)
    return value
