"""Read posts out of one HTML page with a site profile's selectors (CSS via cssselect, or XPath).

The same code reads a page fetched over HTTP and a page rendered in Chromium (site_render.py
hands back the rendered DOM), so a profile behaves the same on both paths. Besides the posts it
reports, per selector, how many posts it matched in: `deepwatch profile test` shows the ones that
matched nothing, which is how a person finds the selector to fix.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from urllib.parse import urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html
from cssselect import GenericTranslator

from agents._html import MediaList, document_base, element_text, is_tracking_pixel, largest_srcset_url
from agents.base import Drop, Post
from agents.site_profile import PostSelectors, Selector, SiteProfile, TimeSelector

_TRANSLATOR = GenericTranslator()
_HASHTAG = re.compile(r"#([^\s#.,!?;:()\[\]{}<>\"']+)")


class BadPost(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass
class PageResult:
    """What one page yielded: posts, drops, the next page's link or cursor, and selector hits."""

    posts: list[Post] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    containers: int = 0
    next_value: str | None = None  # next_link href (absolute) or cursor value
    hits: Counter = field(default_factory=Counter)  # field name -> posts it matched in

    def unmatched(self, profile: SiteProfile) -> list[str]:
        """Selectors that matched nothing on this page, described for a person."""
        out = []
        if not self.containers:
            out.append(f"post.container ({profile.post.container.describe()})")
            return out
        for name, selector in _fields(profile.post):
            if not self.hits[name]:
                out.append(f"post.{name} ({selector.describe()})")
        return out


@lru_cache(maxsize=512)
def _compiled(kind: str, expression: str) -> lxml.etree.XPath:
    xpath = _TRANSLATOR.css_to_xpath(expression, prefix="descendant-or-self::") if kind == "css" else expression
    return lxml.etree.XPath(xpath)


def select(node: lxml.html.HtmlElement, selector: Selector) -> list:
    """Matching nodes (elements, or strings for XPath that ends in @attr or text())."""
    kind, expression = ("css", selector.css) if selector.css is not None else ("xpath", selector.xpath)
    result = _compiled(kind, expression)(node)
    return result if isinstance(result, list) else [result]


def values(node: lxml.html.HtmlElement, selector: Selector) -> list[str]:
    """The selector's values in document order: attribute, text, or the regex's group; blanks dropped."""
    out = []
    for match in select(node, selector):
        if isinstance(match, str):
            value = str(match)
        elif selector.attr:
            value = match.get(selector.attr) or ""
            if selector.attr == "srcset":
                value = largest_srcset_url(value) or ""
        else:
            value = element_text(match)
        if selector.regex is not None:
            found = re.search(selector.regex, value)
            if not found:
                continue
            value = found.group(1) if found.groups() else found.group(0)
        value = value.strip()
        if value:
            out.append(value)
    return out


def first(node: lxml.html.HtmlElement, selector: Selector | None) -> str | None:
    if selector is None:
        return None
    found = values(node, selector)
    return found[0] if found else None


_RELATIVE = re.compile(
    r"^(\d+)\s*(초|분|시간|일|주|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)\s*(전|ago)$", re.IGNORECASE)
_UNITS = {"초": 1, "분": 60, "시간": 3600, "일": 86400, "주": 604800, "s": 1, "sec": 1, "secs": 1, "second": 1,
          "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600,
          "hours": 3600, "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}


def _relative(text: str, read_at: datetime) -> datetime | None:
    """'3일 전', '5 minutes ago', '방금', '어제': boards print recent times relative to now."""
    lowered = text.strip().lower()
    if lowered in ("방금", "방금 전", "just now", "now"):
        return read_at
    if lowered in ("어제", "yesterday"):
        return read_at - timedelta(days=1)
    match = _RELATIVE.match(lowered)
    if match is None:
        return None
    return read_at - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_time(raw: str, spec: TimeSelector, read_at: datetime | None = None) -> datetime:
    """`raw` read with the first of the profile's formats that fits, as aware UTC; ValueError if none.

    Format "relative" reads '3일 전' / '2 hours ago' against `read_at` (the time the page was read).
    """
    text = " ".join(raw.split())
    zone = ZoneInfo(spec.zone)
    for fmt in spec.formats:
        if fmt == "relative":
            when = _relative(text, read_at or datetime.now(timezone.utc))
            if when is not None:
                return when.astimezone(timezone.utc)
            continue
        try:
            if fmt in ("epoch", "epoch_ms"):
                seconds = float(text) / (1000 if fmt == "epoch_ms" else 1)
                return datetime.fromtimestamp(seconds, tz=timezone.utc)
            if fmt == "iso":
                when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
            else:
                when = datetime.strptime(text, fmt)
        except (ValueError, OverflowError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)  # boards print local time without an offset
        return when.astimezone(timezone.utc)
    raise ValueError(f"{raw!r} fits none of the formats {spec.formats}")


def _matches(node, name: str, selector: Selector) -> bool:
    """Whether `selector` yields a value in this post (media elements count by their URL, not text)."""
    if name in ("images", "videos", "embeds"):
        return any(_media_values(m, selector) for m in select(node, selector))
    return bool(values(node, selector))


def _fields(selectors: PostSelectors) -> list[tuple[str, Selector]]:
    out: list[tuple[str, Selector]] = []
    for name in ("id", "url", "author", "time", "hashtags", "images", "videos", "embeds"):
        selector = getattr(selectors, name)
        if selector is not None:
            out.append((name, selector))
    out.extend((f"text[{i}]", s) for i, s in enumerate(selectors.text))
    return out


def _absolute(url: str, base: str) -> str:
    return urlunsplit(urlsplit(urljoin(base, url.strip()))._replace(fragment=""))


def extract_page(data: bytes | str, page_url: str, profile: SiteProfile, *,
                 read_at: datetime | None = None) -> PageResult:
    """Posts of one page. A post missing its URL or with an unreadable time is a counted drop."""
    result = PageResult()
    if not data.strip():
        result.drops.append(Drop(stage="parse", reason="bad html", subject=page_url, detail="empty document"))
        return result
    try:
        doc = lxml.html.document_fromstring(data)
    except (lxml.etree.ParserError, ValueError) as exc:
        result.drops.append(Drop(stage="parse", reason="bad html", subject=page_url, detail=str(exc)))
        return result
    base = document_base(doc, page_url)
    read_at = read_at or datetime.now(timezone.utc)
    sel = profile.post
    seen: set[str] = set()
    containers = [c for c in select(doc, sel.container) if not isinstance(c, str)]
    result.containers = len(containers)
    for index, node in enumerate(containers):
        for name, selector in _fields(sel):
            if _matches(node, name, selector):
                result.hits[name] += 1
        try:
            post = _post(node, index, base, profile, read_at)
        except BadPost as exc:
            result.drops.append(Drop(stage="parse", reason=exc.reason, subject=f"{page_url} post #{index}",
                                     detail=exc.detail))
            continue
        if post.post_id in seen:
            continue  # a board may show a pinned post twice (notice + list)
        seen.add(post.post_id)
        result.posts.append(post)
    paging = profile.paging
    if paging.mode == "next_link":
        link = first(doc, paging.next_link if paging.next_link.attr or paging.next_link.xpath else
                     paging.next_link.model_copy(update={"attr": "href"}))
        if link and not link.lower().startswith(("javascript:", "#")):
            result.next_value = _absolute(link, base)
    elif paging.mode == "cursor":
        result.next_value = first(doc, paging.cursor)
    return result


def _post(node, index: int, base: str, profile: SiteProfile, read_at: datetime) -> Post:
    sel = profile.post
    link = first(node, sel.url)
    if not link:
        raise BadPost("missing field", f"url ({sel.url.describe()}) matched nothing")
    url = _absolute(link, base)
    if urlsplit(url).scheme not in ("http", "https"):
        raise BadPost("bad url", f"post url {link!r} is not http(s)")
    post_id = first(node, sel.id) if sel.id is not None else url
    if not post_id:
        raise BadPost("missing field", f"id ({sel.id.describe()}) matched nothing")
    created = read_at
    if sel.time is not None:
        raw = first(node, sel.time)
        if raw is None:
            raise BadPost("missing timestamp", f"time ({sel.time.describe()}) matched nothing")
        try:
            created = parse_time(raw, sel.time, read_at)
        except ValueError as exc:
            raise BadPost("bad timestamp", str(exc)) from None
    texts = ["\n".join(values(node, s)) for s in sel.text]
    text = "\n\n".join(t for t in texts if t)
    tags = values(node, sel.hashtags) if sel.hashtags is not None else _HASHTAG.findall(text)
    hashtags = tuple(dict.fromkeys(t.lstrip("#") for t in tags if t.lstrip("#")))
    media = MediaList()
    for name, kind, resolver in (("images", "image", None), ("videos", "video", None), ("embeds", "video", "ytdlp")):
        selector = getattr(sel, name)
        if selector is None:
            continue
        for match in select(node, selector):
            if not isinstance(match, str) and is_tracking_pixel(match):
                continue
            for value in _media_values(match, selector):
                media.add(value, kind, base, resolver=resolver)
    return Post(
        platform=profile.platform,
        post_id=post_id,
        url=url,
        account=first(node, sel.author) or "",
        text=text,
        created_at=created,
        hashtags=hashtags,
        media=media.refs(),
        lang=profile.lang,
    )


def _media_values(match, selector: Selector) -> list[str]:
    """A media element's URL: the named attribute, else src / srcset / a <source> child."""
    if isinstance(match, str):
        return [match]
    if selector.attr:
        raw = match.get(selector.attr) or ""
        value = largest_srcset_url(raw) if selector.attr == "srcset" else raw
        if selector.regex and value:
            found = re.search(selector.regex, value)
            value = (found.group(1) if found.groups() else found.group(0)) if found else ""
        return [value] if value else []
    found = [largest_srcset_url(match.get("srcset")) or match.get("src") or match.get("data-src") or ""]
    found += [s.get("src") or "" for s in match.iter("source")]
    return [v for v in found if v]
