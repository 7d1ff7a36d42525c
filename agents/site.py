"""The `site` source agent: any public site described by a site profile (agents/site_profile.py).

One `fetch_page` call reads one page of the profile's listing or search, so a crawl can stop and
resume between any two pages: the cursor is JSON holding the next page's URL and how many pages
were read. Pages are fetched through the campaign's guarded Fetcher (robots.txt, rate limits,
address guard, caps) or, when the profile needs JavaScript, rendered in Chromium with every
request still answered by that Fetcher (agents/site_render.py). Posts a profile cannot read
(no URL, an unreadable time) are counted drops, as in every other agent.
"""
from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from agents._html import HTML_ACCEPT, check_keywords, fetch_document, matches_keywords
from agents.base import AgentStats, Drop, Page
from agents.demo_api import check_base_url
from agents.errors import SourceError
from agents.fetch import Fetcher
from agents.site_extract import PageResult, extract_page
from agents.site_profile import MAX_PAGES_LIMIT, ProfileError, SiteProfile, load_profile
from agents.site_render import Renderer

_HTML_MIMES = ("text/html", "application/xhtml+xml")


class SiteAgent:
    """`Agent` for one site profile (type name "site").

    Params: `profile` (a shipped profile name, a .yaml path, or the profile itself inline), `vars` (values for the profile's
    URL variables, e.g. a gallery id), `base_url` (replaces the profile's), `max_pages` (replaces
    the profile's paging.max_pages), `keywords` (optional text filter), `executable_path`
    (Chromium, for profiles that render JavaScript).
    """

    platform = "site"
    searches = True  # per profile: see searches_for

    def __init__(self, profile: str | dict[str, Any], *, fetcher: Fetcher, vars: dict[str, str] | None = None,
                 base_url: str | None = None, max_pages: int | None = None,
                 keywords: list[str] | None = None, executable_path: str | None = None):
        if not isinstance(fetcher, Fetcher):
            raise TypeError(f"fetcher must be an agents.fetch.Fetcher, got {type(fetcher).__name__}")
        self.profile: SiteProfile = load_profile(profile)
        self.platform = self.profile.platform
        self.searches = self.profile.searches
        # A source's base_url moves the whole profile to another origin (a mirror, a replay server).
        self.base_override = check_base_url(base_url) if base_url is not None else None
        self.base_url = self.base_override or self.profile.base_url
        if self.base_url is None and self.profile.url.startswith("/"):
            raise ValueError(f"profile {self.profile.name} has a relative url and no base_url; give params.base_url")
        self.vars = _check_vars(self.profile, vars)
        if max_pages is not None and (isinstance(max_pages, bool) or not isinstance(max_pages, int)
                                      or not 1 <= max_pages <= MAX_PAGES_LIMIT):
            raise ValueError(f"max_pages must be an integer from 1 to {MAX_PAGES_LIMIT}, got {max_pages!r}")
        self.max_pages = max_pages or self.profile.paging.max_pages
        self.keywords = check_keywords(keywords)
        self.fetcher = fetcher
        self.renderer = (Renderer(fetcher, self.profile.render, self.profile.post.container,
                                  executable_path=executable_path) if self.profile.render.javascript else None)
        self.stats = AgentStats()
        self.last: PageResult | None = None  # what the last page yielded, for `profile test`

    @classmethod
    def searches_for(cls, params: Mapping[str, Any]) -> bool:
        """Whether a source with these params is searched per term (spec.py asks before building it)."""
        try:
            return load_profile(params.get("profile")).searches
        except ProfileError:
            return True  # the agent's constructor reports the bad profile with its own words

    # -- paging -----------------------------------------------------------------------------

    def first_url(self, term: str) -> str:
        values = {name: quote(value, safe="") for name, value in self.vars.items()}
        if self.searches:
            if not isinstance(term, str) or not term.strip():
                raise ValueError(f"profile {self.profile.name} searches: the term must be a non-empty string, got {term!r}")
            values["term"] = quote(term.strip(), safe="")
            values["bare"] = quote(term.strip().lstrip("#@"), safe="")
        url = self.profile.url.format(**values)
        if url.startswith("/"):
            return urljoin(self.base_url + "/", url.lstrip("/"))
        if self.base_override:
            parts = urlsplit(url)
            return urljoin(self.base_override + "/", urlunsplit(("", "", parts.path, parts.query, "")).lstrip("/"))
        return url

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        first = self.first_url(term)
        url, page_no = self._state(cursor, first)
        result, final_url = self._read(url)
        self.last = result
        self.stats.drops.extend(result.drops)
        posts = tuple(p for p in result.posts if matches_keywords(p.text, self.keywords))
        self.stats.pages += 1
        self.stats.posts += len(posts)
        next_url = self._next(first, final_url, page_no, result)
        next_cursor = json.dumps({"url": next_url, "page": page_no + 1}, ensure_ascii=False) if next_url else None
        return Page(posts=posts, next_cursor=next_cursor)

    def _state(self, cursor: str | None, first: str) -> tuple[str, int]:
        if cursor is None:
            return first, 0
        try:
            state = json.loads(cursor)
            url, page_no = state["url"], state["page"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"cursor is not a site crawl state: {exc}; got {cursor[:80]!r}") from None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not isinstance(page_no, int):
            raise ValueError(f"cursor is not a site crawl state: bad url/page; got {cursor[:80]!r}")
        return url, page_no

    def _next(self, first: str, current: str, page_no: int, result: PageResult) -> str | None:
        paging = self.profile.paging
        if page_no + 1 >= self.max_pages or paging.mode == "none" or not result.containers:
            return None  # an empty page ends the listing whatever the paging says
        if paging.mode == "next_link":
            return result.next_value if result.next_value and result.next_value != current else None
        if paging.mode == "page_param":
            return _with_param(first, paging.param, str(paging.start + (page_no + 1) * paging.step))
        return _with_param(first, paging.param, result.next_value) if result.next_value else None

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()

    # -- one page -----------------------------------------------------------------------------

    def _read(self, url: str) -> tuple[PageResult, str]:
        if self.renderer is not None:
            before = len(self.renderer.blocked)
            html, final_url, stopped = self.renderer.render(url)
            # The page itself failing is the source's error (raised above); these are its parts.
            for refused in self.renderer.blocked[before:]:
                self.stats.drops.append(Drop(stage="crawl", reason="request refused", subject=url, detail=refused))
            if stopped:
                self.stats.drops.append(Drop(stage="crawl", reason=stopped, subject=url,
                                             detail=f"profile {self.profile.name}"))
            return extract_page(html, final_url, self.profile), final_url
        fetched = fetch_document(self.fetcher, url, accept=HTML_ACCEPT)
        undeclared = fetched.declared_mime in ("application/octet-stream", "text/plain")
        if fetched.declared_mime not in _HTML_MIMES and not (undeclared and fetched.data.lstrip()[:1] == b"<"):
            raise SourceError("not html", f"declared {fetched.declared_mime}", url=fetched.final_url)
        return extract_page(fetched.data, fetched.final_url, self.profile), fetched.final_url


def _check_vars(profile: SiteProfile, given: object) -> dict[str, str]:
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValueError(f"vars must be a mapping of variable name to value, got {given!r}")
    unknown = sorted(str(k) for k in given if k not in profile.variables)
    if unknown:
        known = ", ".join(profile.variables) or "none"
        raise ValueError(f"vars: profile {profile.name} has no variable(s) {', '.join(unknown)}; it has: {known}")
    values: dict[str, str] = {}
    for name, default in profile.variables.items():
        value = given.get(name, default)
        if value is None:
            raise ValueError(f"vars.{name} is required by profile {profile.name}")
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
            raise ValueError(f"vars.{name} must be a non-empty string, got {value!r}")
        values[name] = str(value).strip()
    return values


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def inline_profile(params: dict[str, Any]) -> None:
    """Replace a profile *path* in a source's params with the profile's validated contents.

    The campaign file is read on the driver, but agents run in Ray workers, possibly on other
    machines where the file does not exist; the contents travel with the source instead.
    Shipped names stay names (every node has the package). ProfileError (a ValueError) if bad.
    """
    ref = params.get("profile")
    if isinstance(ref, str) and ref.strip().endswith((".yaml", ".yml")):
        params["profile"] = load_profile(ref).model_dump(mode="json", exclude_none=True)
