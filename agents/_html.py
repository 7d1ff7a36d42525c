"""Shared helpers for the feed agents (RSS/Atom, YouTube, web pages, Telegram).

HTML parsing with lxml, media collection (resolved, deduplicated, numbered), the optional
`keywords` filter every feed agent accepts, and fetching a document with FetchError turned into
the SourceError agents raise.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.etree
import lxml.html

from agents.base import MediaKind, MediaRef
from agents.errors import FetchError, SourceError
from agents.fetch import Fetched, Fetcher

FEED_ACCEPT = "application/atom+xml,application/rss+xml,application/xml;q=0.9,text/xml;q=0.8,*/*;q=0.5"
HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

# Elements after which text_content() should break the line, so words don't run together.
_BLOCK_TAGS = frozenset({"p", "div", "li", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
TRACKING_PIXEL_MAX = 2  # width/height attributes at or under this are analytics beacons, not pictures


# -- parameters -------------------------------------------------------------------------------

def check_http_url(value: object, name: str) -> str:
    """An absolute http(s) URL, or ValueError naming the parameter."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty URL string, got {value!r}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return value.strip()


def check_keywords(keywords: object) -> tuple[str, ...]:
    """The optional `keywords` param: a list of non-empty strings (None or [] = keep everything)."""
    if keywords is None:
        return ()
    if isinstance(keywords, str) or not isinstance(keywords, (list, tuple)):
        raise ValueError(f"keywords must be a list of strings, got {keywords!r}")
    cleaned = []
    for index, word in enumerate(keywords):
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"keywords[{index}] must be a non-empty string, got {word!r}")
        cleaned.append(word.strip().casefold())
    return tuple(cleaned)


def matches_keywords(text: str, keywords: tuple[str, ...]) -> bool:
    """True when no keywords are set or `text` contains one, ignoring case in any script."""
    if not keywords:
        return True
    folded = text.casefold()
    return any(word in folded for word in keywords)


# -- fetching ---------------------------------------------------------------------------------

def fetch_document(fetcher: Fetcher, url: str, params: dict | None = None, accept: str = HTML_ACCEPT) -> Fetched:
    """GET a feed or page through the guarded fetcher; an unreachable source is a SourceError."""
    try:
        return fetcher.get_document(url, params, accept=accept)
    except FetchError as exc:
        raise SourceError(exc.reason, exc.detail, url=exc.url or url) from None


# -- HTML -------------------------------------------------------------------------------------

def parse_html(data: bytes) -> lxml.html.HtmlElement:
    """A parsed HTML document; lxml reads the charset from <meta> itself. ValueError if empty."""
    if not data or not data.strip():
        raise ValueError("empty document")
    try:
        return lxml.html.document_fromstring(data)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise ValueError(f"unparseable HTML: {exc}") from None


def document_base(doc: lxml.html.HtmlElement, page_url: str) -> str:
    """The URL relative links resolve against: <base href> (itself relative to the page) or the page."""
    for href in doc.xpath("//base/@href"):
        if href.strip():
            return urljoin(page_url, href.strip())
    return page_url


def element_text(element: lxml.html.HtmlElement) -> str:
    """Visible text with line breaks where <br> and block elements put them; spaces collapsed."""
    pieces: list[str] = []

    def walk(node: lxml.html.HtmlElement) -> None:
        if isinstance(node.tag, str) and node.tag.lower() in ("script", "style"):
            return
        if isinstance(node.tag, str) and node.text:
            pieces.append(node.text)
        for child in node:
            walk(child)
            if isinstance(child.tag, str) and child.tag.lower() in _BLOCK_TAGS:
                pieces.append("\n")
            if child.tail:
                pieces.append(child.tail)

    walk(element)
    lines = (" ".join(line.split()) for line in "".join(pieces).splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(fragment: str) -> str:
    """Text of an HTML fragment (an RSS summary); plain text comes back with spaces tidied."""
    if not fragment or not fragment.strip():
        return ""
    try:
        element = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return " ".join(fragment.split())
    return element_text(element)


def fragment_images(fragment: str) -> list[str]:
    """`<img src>` values inside an HTML fragment (unresolved, in document order)."""
    if not fragment or "<img" not in fragment.lower():
        return []
    try:
        element = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return []
    return [img.get("src", "") for img in element.iter("img") if not is_tracking_pixel(img)]


def largest_srcset_url(srcset: str | None) -> str | None:
    """The candidate with the largest width (`640w`) or density (`2x`) descriptor in a srcset."""
    if not srcset:
        return None
    best, best_size = None, -1.0
    # Candidates are comma-separated, but a URL may itself hold commas; a candidate's URL never
    # starts with whitespace, so split on commas followed by whitespace or at the end.
    for candidate in re.split(r",\s+|,$", srcset.strip()):
        fields = candidate.strip().split()
        if not fields:
            continue
        url, size = fields[0], 1.0
        if len(fields) > 1:
            descriptor = fields[1].lower()
            try:
                size = float(descriptor[:-1]) if descriptor[-1:] in ("w", "x") else 1.0
            except ValueError:
                size = 1.0
        if size > best_size:
            best, best_size = url, size
    return best


def background_image_url(style: str | None) -> str | None:
    """The URL in a `background-image:url('...')` inline style, if any."""
    if not style:
        return None
    match = _CSS_URL.search(style)
    return match.group(2).strip() if match and match.group(2).strip() else None


def is_tracking_pixel(element: lxml.html.HtmlElement) -> bool:
    """An element declared 1x1 or 2x2 (or 0 wide) by its attributes: a beacon, not a picture."""
    for attribute in ("width", "height"):
        value = (element.get(attribute) or "").strip().lower().removesuffix("px")
        if value.isdigit() and int(value) <= TRACKING_PIXEL_MAX:
            return True
    return False


# -- media ------------------------------------------------------------------------------------

class MediaList:
    """Media refs of one post: resolved against a base URL, http(s) only, deduplicated, numbered."""

    def __init__(self) -> None:
        self._refs: list[MediaRef] = []
        self._seen: set[str] = set()

    def add(self, url: str | None, kind: MediaKind, base: str, resolver: str | None = None) -> None:
        if not url or not url.strip():
            return
        url = url.strip()
        if url.lower().startswith(("data:", "javascript:", "blob:")):
            return  # inline bytes or script, nothing to fetch
        absolute = urlunsplit(urlsplit(urljoin(base, url))._replace(fragment=""))
        if urlsplit(absolute).scheme not in ("http", "https") or absolute in self._seen:
            return
        self._seen.add(absolute)
        self._refs.append(MediaRef(url=absolute, kind=kind, position=len(self._refs), resolver=resolver))

    def extend(self, urls: Iterable[str | None], kind: MediaKind, base: str) -> None:
        for url in urls:
            self.add(url, kind, base)

    def refs(self) -> tuple[MediaRef, ...]:
        return tuple(self._refs)
