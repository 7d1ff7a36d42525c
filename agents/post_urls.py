"""Post URLs are attacker-written (issue 16, finding 1): a Mastodon instance, a feed or a page says
where a post lives, and the capture stage opens that URL in Chromium. Two checks:

    post_url(value, name) -> str              in an agent: an absolute http(s) URL or BadRecord
    post_url_refusal(url, allow_networks)     before capture: why the address guard refuses it, or None

The browser's own guard (agents.browser_guard) refuses the same addresses again at connect time;
this check gives a clear drop reason and spares a browser start for a URL that cannot be opened.
"""
from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

from agents._social import BadRecord
from agents.browser_guard import parse_networks, url_refusal

MAX_URL_CHARS = 4096


def post_url(value: object, name: str = "url") -> str:
    if not isinstance(value, str) or not value:
        raise BadRecord("bad post url", f"{name} is missing")
    if len(value) > MAX_URL_CHARS:
        raise BadRecord("bad post url", f"{name} is longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise BadRecord("bad post url", f"{name} is not an absolute http(s) URL without credentials: {value!r:.120}")
    return value


def post_url_refusal(url: str, allow_networks: Iterable[str] = ()) -> str | None:
    try:
        post_url(url)
    except BadRecord as bad:
        return bad.detail
    return url_refusal(url, parse_networks(allow_networks))
