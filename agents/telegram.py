"""Telegram public channel agent over the web preview, `https://t.me/s/<channel>`.

The preview page lists a channel's latest ~20 messages, oldest first, without login; older ones
come from `?before=<message id>`. The cursor is the smallest message id seen so far, so each
page asks for messages strictly older than the last one and a resumed crawl picks up there.
"""
from __future__ import annotations

import re
import lxml.html

from agents._html import (
    HTML_ACCEPT,
    MediaList,
    background_image_url,
    check_keywords,
    element_text,
    fetch_document,
    matches_keywords,
    parse_html,
)
from agents.base import AgentStats, Drop, Page, Post
from agents.demo_api import check_base_url, parse_timestamp
from agents.errors import SourceError
from agents.fetch import Fetcher

DEFAULT_BASE_URL = "https://t.me"
# Telegram usernames: letters, digits and underscores, starting with a letter (5-32; a few old ones 4).
_CHANNEL = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
_DATA_POST = re.compile(r"^([A-Za-z][A-Za-z0-9_]{3,31})/([0-9]+)$")


def _has_class(name: str) -> str:
    """XPath test for one class token (what the CSS selector `.name` means)."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


class _BadMessage(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class TelegramAgent:
    """`Agent` for one public Telegram channel (type name "telegram")."""

    platform = "telegram"
    searches = False

    def __init__(self, channel: str, *, fetcher: Fetcher, base_url: str = DEFAULT_BASE_URL,
                 keywords: list[str] | None = None):
        if not isinstance(channel, str) or not _CHANNEL.match(channel.lstrip("@")):
            raise ValueError(f"channel must be a public channel username (4-32 letters, digits and _, starting with a letter), got {channel!r}")
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        self.channel = channel.lstrip("@")
        self.base_url = check_base_url(base_url)
        self.keywords = check_keywords(keywords)
        self.fetcher = fetcher
        self.stats = AgentStats()

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        before = self._before(cursor)
        url = f"{self.base_url}/s/{self.channel}"
        fetched = fetch_document(self.fetcher, url, {"before": before} if before else None, accept=HTML_ACCEPT)
        try:
            doc = parse_html(fetched.data)
        except ValueError as exc:
            raise SourceError("bad response", str(exc), url=fetched.final_url) from None
        messages = doc.xpath(f"//*[{_has_class('tgme_widget_message')} and @data-post]")
        if not messages and not doc.xpath(f"//*[{_has_class('tgme_channel_info')}]"):
            # A private or unknown channel redirects to a plain t.me page with neither.
            raise SourceError("bad response", "not a public channel preview (no messages, no channel info)",
                              url=fetched.final_url)

        posts: list[Post] = []
        ids: list[int] = []
        for index, message in enumerate(messages):
            subject = f"telegram {message.get('data-post') or f'{self.channel} message {index}'}"
            try:
                message_id, post = self._to_post(message, fetched.final_url)
            except _BadMessage as bad:
                self.stats.drops.append(Drop(stage="parse", reason=bad.reason, subject=subject, detail=bad.detail))
                continue
            if before is not None and message_id >= before:
                continue  # already seen on a newer page
            ids.append(message_id)
            if matches_keywords(post.text, self.keywords):
                posts.append(post)
        self.stats.pages += 1
        self.stats.posts += len(posts)
        # Older messages exist while this page had some and the oldest is not message 1.
        oldest = min(ids) if ids else None
        next_cursor = str(oldest) if oldest is not None and oldest > 1 else None
        return Page(posts=tuple(posts), next_cursor=next_cursor)

    def close(self) -> None:
        """The fetcher belongs to the runtime; nothing of ours to release."""

    @staticmethod
    def _before(cursor: str | None) -> int | None:
        if cursor is None:
            return None
        if not isinstance(cursor, str) or not cursor.isdigit() or int(cursor) < 1:
            raise ValueError(f"cursor must be a positive message id, got {cursor!r}")
        return int(cursor)

    # -- one message ------------------------------------------------------------------------

    def _to_post(self, message: lxml.html.HtmlElement, page_url: str) -> tuple[int, Post]:
        data_post = (message.get("data-post") or "").strip()
        match = _DATA_POST.match(data_post)
        if not match:
            raise _BadMessage("bad data-post", f"data-post={data_post!r}")
        channel, message_id = match.group(1), int(match.group(2))
        times = message.xpath(f".//*[{_has_class('tgme_widget_message_date')}]//time/@datetime")
        if not times:
            raise _BadMessage("missing timestamp", "no time[datetime] in .tgme_widget_message_date")
        try:
            created_at = parse_timestamp(times[0])
        except ValueError as exc:
            raise _BadMessage("bad timestamp", f"datetime={times[0]!r}: {exc}") from None
        # A reply quotes the message it answers inside .tgme_widget_message_reply; that text is not ours.
        texts = message.xpath(
            f".//*[{_has_class('tgme_widget_message_text')}"
            f" and not(ancestor::*[{_has_class('tgme_widget_message_reply')}])]"
        )
        text = element_text(texts[0]) if texts else ""
        hashtags = [a.text_content().strip().lstrip("#") for a in message.xpath(".//a[starts-with(@href, '?q=%23')]")]
        return message_id, Post(
            platform=self.platform,
            post_id=data_post,
            url=f"{self.base_url}/{channel}/{message_id}",
            account=channel,
            text=text,
            created_at=created_at,
            hashtags=tuple(dict.fromkeys(t for t in hashtags if t)),
            media=self._media(message, page_url),
        )

    @staticmethod
    def _media(message: lxml.html.HtmlElement, base: str) -> tuple:
        """Photos (one or an album), videos with their poster frames, in page order."""
        media = MediaList()
        photo = _has_class("tgme_widget_message_photo_wrap")
        video = f"self::video and {_has_class('tgme_widget_message_video')}"
        thumb = _has_class("tgme_widget_message_video_thumb")
        for element in message.xpath(f".//*[({photo}) or ({video}) or ({thumb})]"):
            classes = (element.get("class") or "").split()
            if "tgme_widget_message_photo_wrap" in classes:
                media.add(background_image_url(element.get("style")), "image", base)
            elif element.tag == "video":
                media.add(element.get("src"), "video", base)
            else:
                media.add(background_image_url(element.get("style")), "image", base)
        return media.refs()

