"""The demo platform's JSON API, independent of HTTP: post records, feeds and opaque cursors.

Cursors are keyset cursors ("continue after post X of feed F"), signed with an HMAC so that
a garbled or hand-made cursor, or one from another query, is refused with a clear error rather
than silently restarting the feed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime

from demo_platform.model import WorldPost
from demo_platform.world import World

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ApiError(Exception):
    """A client error: `status` is the HTTP status, the message goes into {"error": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class FeedPage:
    posts: list[WorldPost]
    next_cursor: str | None


class DemoApi:
    def __init__(self, world: World):
        self.world = world
        self._key = hashlib.sha256(f"deepwatch-demo-cursor:{world.seed}".encode()).digest()
        # The platform's "now": posts created later are not published yet. Tests move it forward
        # to show that a re-run of a campaign fetches only the posts that appeared since.
        self.clock: datetime | None = None

    # -- records ---------------------------------------------------------------------------
    def post_json(self, post: WorldPost, base: str) -> dict:
        account = self.world.accounts[post.handle]
        return {
            "id": post.id,
            "url": f"{base}/p/{post.id}",
            "account": {"handle": account.handle, "display_name": account.display_name},
            "text": post.text,
            "created_at": post.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hashtags": list(post.hashtags),
            "lang": post.lang,
            "media": [
                {"url": f"{base}{path}", "type": kind, "mime": mime}
                for path in post.media
                for kind, mime in [self.world.media_type(path)]
            ],
        }

    # -- feeds -----------------------------------------------------------------------------
    def search(self, query: str | None, cursor: str | None, limit: str | None) -> FeedPage:
        if query is None or not query.strip():
            raise ApiError(400, "missing search term: pass ?q=TERM")
        normalized = " ".join(query.casefold().split())
        return self._page(f"search:{normalized}", self.world.search(query), cursor, limit)

    def account_feed(self, handle: str, cursor: str | None, limit: str | None) -> FeedPage:
        if handle not in self.world.accounts:
            raise ApiError(404, f"unknown account @{handle}")
        return self._page(f"account:{handle}", self.world.account_posts(handle), cursor, limit)

    def get_post(self, post_id: str) -> WorldPost:
        post = self.world.post(post_id)
        if post is None:
            raise ApiError(404, f"unknown post {post_id!r}")
        return post

    def _page(self, feed_key: str, feed: list[WorldPost], cursor: str | None, limit: str | None) -> FeedPage:
        n = parse_limit(limit)
        if self.clock is not None:
            feed = [p for p in feed if p.created_at <= self.clock]
        start = 0
        if cursor:  # an empty cursor parameter means "first page", as omitting it does
            after = self._open_cursor(cursor, feed_key)
            ids = [p.id for p in feed]
            if after not in ids:
                raise ApiError(400, "invalid cursor: it points at a post that is not in this feed")
            start = ids.index(after) + 1
        page = feed[start: start + n]
        more = start + n < len(feed)
        return FeedPage(page, self._make_cursor(feed_key, page[-1].id) if more and page else None)

    # -- cursors ---------------------------------------------------------------------------
    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()[:24]

    def _make_cursor(self, feed_key: str, after_id: str) -> str:
        payload = json.dumps({"f": feed_key, "a": after_id}, ensure_ascii=False, separators=(",", ":")).encode()
        token = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{token}.{self._sign(payload)}"

    def _open_cursor(self, cursor: str, feed_key: str) -> str:
        try:
            token, sig = cursor.split(".", 1)
            payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            fields = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid cursor: not a cursor this API issued") from None
        if not isinstance(fields, dict) or not hmac.compare_digest(sig, self._sign(payload)):
            raise ApiError(400, "invalid cursor: signature does not match (garbled or forged)")
        if fields.get("f") != feed_key:
            raise ApiError(400, "invalid cursor: it belongs to a different query or feed")
        after = fields.get("a")
        if not isinstance(after, str):
            raise ApiError(400, "invalid cursor: no position in it")
        return after


def parse_limit(limit: str | None) -> int:
    if limit is None or limit == "":
        return DEFAULT_LIMIT
    try:
        n = int(limit)
    except ValueError:
        raise ApiError(400, f"invalid limit {limit!r}: expected an integer 1-{MAX_LIMIT}") from None
    if n < 1:
        raise ApiError(400, f"invalid limit {n}: must be at least 1")
    return min(n, MAX_LIMIT)
