"""Parsing and validation helpers shared by the social-platform agents (Mastodon, Bluesky, Reddit).

Each agent turns one API record into a `Post` and, when the record breaks the platform's
contract, raises `BadRecord(reason, detail)`; the agent counts it as a parse Drop and goes on
with the rest of the page. Reasons are short and stable because run reports count by them.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lxml import etree, html as lxml_html

from agents.base import AgentStats, Drop
from agents import demo_api
from agents.errors import FetchError, SourceError
from agents.fetch import Fetcher


class BadRecord(Exception):
    """A record (or one media item of it) that the agent cannot turn into a Post."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


# -- constructor parameters ------------------------------------------------------------------


def check_fetcher(fetcher: object) -> Fetcher:
    if not isinstance(fetcher, Fetcher):
        raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
    return fetcher


def check_base_url(value: object, name: str = "base_url") -> str:
    """An absolute http(s) URL without a trailing slash; the ValueError names the parameter."""
    try:
        return demo_api.check_base_url(value)
    except ValueError as exc:
        raise ValueError(str(exc).replace("base_url", name, 1)) from None


def check_page_size(value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValueError(f"page_size must be an integer from 1 to {maximum}, got {value!r}")
    return value


def check_token(value: object) -> str | None:
    """None, or a token that can go into an Authorization header as it is."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        # Never echo the value: it is a credential.
        raise ValueError("access_token must be a non-empty string without whitespace")
    return value.strip()


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_term(term: object) -> str:
    if not isinstance(term, str) or not term.strip():
        raise ValueError(f"search term must be a non-empty string, got {term!r}")
    return term.strip()


# -- talking to the API ----------------------------------------------------------------------


def get_json(fetcher: Fetcher, url: str, params: dict[str, Any], token: str | None) -> Any:
    """GET a JSON answer through the shared fetcher; any fetch failure becomes a SourceError.

    The Bearer header is passed only when a token is configured, and the fetcher sends it on
    the first hop (and same-origin redirects) only, so a redirect cannot carry it elsewhere.
    """
    try:
        if token is None:
            return fetcher.get_json(url, params)
        return fetcher.get_json(url, params, headers={"Authorization": f"Bearer {token}"})
    except FetchError as exc:
        raise SourceError(exc.reason, exc.detail, url=exc.url or url) from None


def bad_shape(answer: object, expected: str, url: str) -> SourceError:
    shape = f"an object with keys {sorted(answer)[:12]}" if isinstance(answer, dict) else type(answer).__name__
    return SourceError("bad response", f"expected {expected}, got {shape}", url=url)


def same_cursor(next_cursor: str | None, sent: str | None, url: str) -> None:
    """A cursor that does not move would page forever: refuse it."""
    if next_cursor is not None and next_cursor == sent:
        raise SourceError("cursor did not advance", f"the next cursor {next_cursor!r} equals the one sent", url=url)


def drop(stats: AgentStats, reason: str, subject: str, detail: str = "") -> None:
    stats.drops.append(Drop(stage="parse", reason=reason, subject=subject, detail=detail[:300]))


# -- record fields ---------------------------------------------------------------------------


def required_str(record: dict, key: str, name: str | None = None) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise BadRecord("missing field", name or key)
    return value


def required_dict(record: dict, key: str, name: str | None = None) -> dict:
    value = record.get(key)
    if not isinstance(value, dict):
        raise BadRecord("missing field", name or key)
    return value


def optional_str(record: dict, key: str, name: str | None = None) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRecord("bad field", f"{name or key} is {type(value).__name__}")
    return value


def timestamp(value: object, name: str):
    try:
        return demo_api.parse_timestamp(value)
    except ValueError as exc:
        raise BadRecord("bad timestamp", f"{name} {value!r}: {exc}") from None


def media_url(value: object, name: str) -> str:
    """An absolute http(s) media URL, or BadRecord: the fetch stage can do nothing with others."""
    if not isinstance(value, str) or not value:
        raise BadRecord("bad media", f"{name} is missing")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRecord("bad media", f"{name} is not an absolute http(s) URL: {value!r:.120}")
    return value


def unique(items: list[str]) -> tuple[str, ...]:
    """Order-preserving de-duplication (a tag written twice is one hashtag)."""
    return tuple(dict.fromkeys(i for i in items if i))


# -- HTML to text ----------------------------------------------------------------------------

_BLOCKS = frozenset({"p", "div", "blockquote", "li", "ul", "ol", "pre", "h1", "h2", "h3", "h4", "h5", "h6"})


def html_to_text(markup: str) -> str:
    """Readable text of a post's HTML: paragraphs become blank-line separated, <br> a newline.

    Mastodon hides parts of long links in `<span class="invisible">`; those are kept, so a link
    reads as the full URL rather than the truncated display text.
    """
    if not markup or not markup.strip():
        return ""
    try:
        root = lxml_html.fragment_fromstring(markup, create_parent="div")
    except (etree.ParserError, ValueError):
        return markup.strip()
    pieces: list[str] = []
    _walk(root, pieces)
    lines = "".join(pieces).split("\n")
    text = "\n".join(line.strip() for line in lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def _walk(element, pieces: list[str]) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    if tag == "br":
        pieces.append("\n")
    elif tag in _BLOCKS:
        pieces.append("\n\n")
    if element.text and tag and tag not in ("script", "style"):  # comments have no str tag
        pieces.append(element.text)
    for child in element:
        _walk(child, pieces)
        if child.tail:
            pieces.append(child.tail)
    if tag in _BLOCKS:
        pieces.append("\n\n")
