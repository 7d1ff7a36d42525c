"""Crawler that reads a platform the way a person does: in Chromium, scrolling a JS-rendered feed.

Some platforms show posts only through JavaScript, and evidence for a takedown is best shown as
the page a user saw, so this agent drives a real headless Chromium through Playwright's sync API.

Playwright's sync objects belong to the thread that created them and refuse to run where an
asyncio loop is running, so every browser call runs on one private worker thread owned by the
agent. Callers may use the agent from any thread (a Ray worker, a thread pool, a test thread);
calls are served one at a time.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from string import Formatter
from typing import Any, Callable, TypeVar
from urllib.parse import quote, urljoin, urlsplit

from agents.base import AgentStats, Drop, MediaRef, Page, Post
from agents.demo_api import check_base_url, parse_timestamp
from agents.browser_guard import GuardedProxy, url_refusal
from agents.errors import SourceError
from agents.fetch import default_user_agent
from storage.blobs import BlobStore, ContentStore

T = TypeVar("T")

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

# CSS selectors (and two attribute names) for reading posts out of the rendered DOM.
DEFAULT_SELECTORS: dict[str, str] = {
    "post": "article.post",
    "post_id_attr": "data-post-id",
    "permalink": "a.permalink",
    "account": "span.account",
    "handle_attr": "data-handle",
    "time": "time",
    "text": "div.text",
    "hashtag": "a.hashtag",
    "media": "img.media, video.media",
    "end": "#end-of-feed",
}

_TEMPLATE_FIELDS = {"term", "bare"}

# Runs in the page; returns plain attribute values, resolved to absolute URLs in Python.
_EXTRACT_JS = """
(sel) => Array.from(document.querySelectorAll(sel.post)).map((el) => {
  const one = (s) => (s ? el.querySelector(s) : null);
  const link = one(sel.permalink), acc = one(sel.account), time = one(sel.time), text = one(sel.text);
  let handle = null;
  if (acc) handle = acc.getAttribute(sel.handle_attr) || acc.textContent.trim().replace(/^@/, "");
  return {
    id: el.getAttribute(sel.post_id_attr),
    href: link ? link.getAttribute("href") : null,
    handle: handle,
    datetime: time ? time.getAttribute("datetime") : null,
    text: text ? text.textContent : "",
    lang: el.getAttribute("lang") || (text && text.getAttribute("lang")) || null,
    hashtags: Array.from(el.querySelectorAll(sel.hashtag)).map((h) => h.textContent.trim()),
    media: Array.from(el.querySelectorAll(sel.media)).map((m) => {
      const source = m.querySelector("source[src]");
      return {tag: m.tagName.toLowerCase(), src: m.getAttribute("src") || (source ? source.getAttribute("src") : null)};
    }),
  };
})
"""

# True once more posts than `n` exist or the end-of-feed marker appeared.
_GREW_JS = "([post, end, n]) => document.querySelectorAll(post).length > n || !!document.querySelector(end)"
_IMAGES_DONE_JS = "() => Array.from(document.images).every((img) => img.complete)"


@dataclass(frozen=True)
class Capture:
    """A full-page screenshot and the rendered DOM of one URL, both stored in the blob store."""

    url: str
    final_url: str
    status: int  # HTTP status of the main document; 0 when the browser got none
    captured_at: datetime  # UTC, when the screenshot was taken
    screenshot_sha256: str
    html_sha256: str
    title: str
    browser_version: str = ""  # Chromium's version, recorded as the capture tool


def default_chromium() -> str:
    """Debian's Chromium unless DEEPWATCH_CHROMIUM names another binary."""
    return os.environ.get("DEEPWATCH_CHROMIUM") or "/usr/bin/chromium"


class BrowserAgent:
    """`Agent` that renders a feed page in Chromium, scrolls it to the end, and reads posts off the DOM.

    One `fetch_page` call returns everything the feed shows (next_cursor is always None).
    """

    platform = "demo"
    searches = True

    def __init__(
        self,
        base_url: str,
        blobs: BlobStore,
        *,
        path_template: str = "/search?q={term}",
        max_scrolls: int = 50,
        max_posts: int = 500,
        selectors: dict[str, str] | None = None,
        executable_path: str | None = None,
        headless: bool = True,
        nav_timeout_s: float = 30,
        render_timeout_s: float = 10,
        viewport: tuple[int, int] = (1280, 800),
        user_agent: str | None = None,
        allow_networks: tuple[str, ...] = (),
    ):
        # base_url may be empty for an agent used only to capture evidence pages by full URL.
        self.base_url = check_base_url(base_url) if base_url else ""
        if not isinstance(blobs, ContentStore):
            raise TypeError(f"blobs must be a blob store (storage.blobs.open_blobs), got {type(blobs).__name__}")
        self.blobs = blobs
        self.path_template = _check_template(path_template)
        self.max_scrolls = _positive_int("max_scrolls", max_scrolls, minimum=0)
        self.max_posts = _positive_int("max_posts", max_posts)
        self.selectors = _merge_selectors(selectors)
        self.executable_path = str(executable_path or default_chromium())
        self.headless = bool(headless)
        self.nav_timeout_ms = _timeout_ms("nav_timeout_s", nav_timeout_s)
        self.render_timeout_ms = _timeout_ms("render_timeout_s", render_timeout_s)
        if len(viewport) != 2 or not all(isinstance(v, int) and v > 0 for v in viewport):
            raise ValueError(f"viewport must be (width, height) in positive pixels, got {viewport!r}")
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self.user_agent = user_agent or default_user_agent()
        # Deny by default: every request of the browser goes through the fetcher's address guard,
        # which refuses private, loopback and metadata addresses outside allow_networks (issue 16).
        self._guard = GuardedProxy(allow_networks)
        self.stats = AgentStats()
        self._executor: ThreadPoolExecutor | None = None
        self._playwright: Any = None
        self._browser: Any = None
        self._closed = False

    # -- public API (any thread) --------------------------------------------------------------

    def fetch_page(self, term: str, cursor: str | None) -> Page:
        if not isinstance(term, str) or not term.strip():
            raise ValueError(f"search term must be a non-empty string, got {term!r}")
        if cursor is not None:
            raise ValueError("BrowserAgent returns a whole feed in one page and takes no cursor")
        return self._call(self._crawl, term)

    def capture(self, url: str) -> Capture:
        """Open `url` (e.g. a permalink), wait for a post to render, and store screenshot + DOM."""
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"capture needs an absolute http(s) URL, got {url!r}")
        return self._call(self._capture, url)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.submit(self._shutdown).result()
            self._executor.shutdown(wait=True)

    def __enter__(self) -> "BrowserAgent":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def url_for(self, term: str) -> str:
        if not self.base_url:
            raise ValueError("this BrowserAgent has no base_url: it can only capture(url)")
        bare = term.strip().lstrip("#@")
        path = self.path_template.format(term=quote(term.strip(), safe=""), bare=quote(bare, safe=""))
        return self.base_url + path

    # -- browser thread -----------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("this BrowserAgent is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwatch-browser")
        return self._executor.submit(fn, *args).result()

    def _ensure_browser(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if not os.path.exists(self.executable_path):
            raise RuntimeError(f"no Chromium at {self.executable_path}; set executable_path to a Chromium binary")
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        if self._playwright is None:
            self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable_path, headless=self.headless, args=list(CHROMIUM_ARGS),
                proxy=self._guard.start().playwright_proxy(),
            )
        except PlaywrightError as exc:
            raise RuntimeError(f"could not launch Chromium at {self.executable_path}: {_first_line(exc)}") from exc
        return self._browser

    def _shutdown(self) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._browser = None
            self._guard.close()
            if self._playwright is not None:
                self._playwright.stop()
                self._playwright = None

    def _new_page(self) -> tuple[Any, Any]:
        context = self._ensure_browser().new_context(
            viewport=self.viewport,
            user_agent=self.user_agent,
            service_workers="block",  # a worker could answer from its cache instead of the server
            accept_downloads=False,
        )
        page = context.new_page()
        page.set_default_timeout(self.render_timeout_ms)
        return context, page

    def _goto(self, page: Any, url: str) -> Any:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        refusal = url_refusal(url, self._guard.allowed)  # a clear reason before Chromium is involved
        if refusal:
            raise SourceError("blocked address", refusal, url=url)
        try:
            response = page.goto(url, wait_until="domcontentloaded", timeout=self.nav_timeout_ms)
        except PlaywrightTimeout as exc:
            raise SourceError("timeout", _first_line(exc), url=url) from None
        except PlaywrightError as exc:
            raise SourceError("navigation failed", _first_line(exc), url=url) from None
        guard = response.headers.get("x-deepwatch-guard") if response is not None else None
        if guard == "unreachable":
            raise SourceError("navigation failed", f"{response.url}: {response.text()[:300]}", url=url)
        if guard == "refused":
            # The page (or a redirect on the way to it) is on a refused address: keep nothing of it.
            raise SourceError("blocked address", f"{response.url}: refused by the address guard", url=url)
        return response

    def _settle(self, page: Any, selector: str) -> bool:
        """Wait for `selector` and for images to finish loading; False when nothing rendered."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        rendered = True
        try:
            page.wait_for_selector(selector, state="attached", timeout=self.render_timeout_ms)
        except PlaywrightTimeout:
            rendered = False
        try:  # a screenshot taken before images load shows empty boxes
            page.wait_for_function(_IMAGES_DONE_JS, timeout=self.render_timeout_ms)
        except PlaywrightTimeout:
            pass
        return rendered

    def _crawl(self, term: str) -> Page:
        url = self.url_for(term)
        sel = self.selectors
        context, page = self._new_page()
        try:
            response = self._goto(page, url)
            if response is not None and response.status >= 400:
                raise SourceError(f"HTTP {response.status}", url=url)
            if not self._settle(page, f"{sel['post']}, {sel['end']}"):
                raise SourceError(
                    "nothing rendered",
                    f"neither {sel['post']!r} nor {sel['end']!r} appeared within {self.render_timeout_ms / 1000}s",
                    url=url,
                )
            stopped = self._scroll(page)
            self._settle(page, sel["post"] + ", " + sel["end"])
            raw = page.evaluate(_EXTRACT_JS, sel)
            page_url = page.url
            png = page.screenshot(full_page=True, type="png", timeout=self.nav_timeout_ms)
        finally:
            context.close()

        if stopped:
            self.stats.drops.append(Drop(stage="crawl", reason=stopped, subject=url, detail=f"{len(raw)} posts rendered"))
        if len(raw) > self.max_posts:
            raw = raw[: self.max_posts]
        shot = self.blobs.put(png)
        posts: list[Post] = []
        seen: set[str] = set()
        for index, item in enumerate(raw):
            post = self._to_post(item, page_url, shot, index)
            if post is not None and post.post_id not in seen:  # a feed may render a post twice
                seen.add(post.post_id)
                posts.append(post)
        self.stats.pages += 1
        self.stats.posts += len(posts)
        return Page(posts=tuple(posts), next_cursor=None, screenshot_sha256=shot)

    def _scroll(self, page: Any) -> str | None:
        """Scroll until the end marker; returns why it stopped short ("post limit", ...) or None."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        sel = self.selectors
        stalls = 0
        for _ in range(self.max_scrolls):
            if page.locator(sel["end"]).count():
                return None
            count = page.locator(sel["post"]).count()
            if count >= self.max_posts:
                return "post limit"
            # The explicit scroll event covers feeds already at the bottom, where scrollTo moves nothing.
            page.evaluate(
                "() => { window.scrollTo(0, document.documentElement.scrollHeight);"
                " window.dispatchEvent(new Event('scroll')); }"
            )
            try:
                page.wait_for_function(_GREW_JS, arg=[sel["post"], sel["end"], count], timeout=self.render_timeout_ms)
                stalls = 0
            except PlaywrightTimeout:
                stalls += 1
                if stalls >= 2:
                    return "feed stalled"
        if page.locator(sel["end"]).count():
            return None
        return "post limit" if page.locator(sel["post"]).count() >= self.max_posts else "scroll limit"

    def _to_post(self, item: dict[str, Any], page_url: str, shot: str, index: int) -> Post | None:
        post_id = item.get("id")
        subject = f"demo post {post_id}" if post_id else f"{page_url} post #{index}"

        def drop(reason: str, detail: str) -> None:
            self.stats.drops.append(Drop(stage="parse", reason=reason, subject=subject, detail=detail))

        if not post_id:
            drop("missing field", self.selectors["post_id_attr"])
            return None
        if not item.get("handle"):
            drop("missing field", "account")
            return None
        try:
            created_at = parse_timestamp(item.get("datetime"))
        except ValueError as exc:
            drop("bad timestamp", f"{item.get('datetime')!r}: {exc}")
            return None
        media: list[MediaRef] = []
        for position, m in enumerate(item.get("media") or []):
            src = m.get("src")
            absolute = urljoin(page_url, src) if src else ""
            kind = {"img": "image", "video": "video"}.get(m.get("tag", ""))
            if kind is None or urlsplit(absolute).scheme not in ("http", "https"):
                # blob: and data: sources (e.g. streamed video) cannot be fetched again later.
                drop("bad media", f"<{m.get('tag')}> src={src!r}")
                continue
            media.append(MediaRef(url=absolute, kind=kind, position=position))
        href = item.get("href")
        return Post(
            platform=self.platform,
            post_id=post_id,
            url=urljoin(page_url, href) if href else f"{self.base_url}/p/{quote(post_id, safe='')}",
            account=item["handle"],
            text=item.get("text") or "",
            created_at=created_at,
            hashtags=tuple(t.lstrip("#") for t in item.get("hashtags") or () if t.lstrip("#")),
            media=tuple(media),
            lang=item.get("lang") or None,
            screenshot_sha256=shot,
        )

    def _capture(self, url: str) -> Capture:
        sel = self.selectors
        context, page = self._new_page()
        try:
            response = self._goto(page, url)
            status = response.status if response is not None else 0
            # Wait for a post, or for the page to say it has none; a gone post is evidence too.
            self._settle(page, f"{sel['post']}, {sel['end']}")
            captured_at = datetime.now(timezone.utc)
            browser_version = page.context.browser.version if page.context.browser else ""
            png = page.screenshot(full_page=True, type="png", timeout=self.nav_timeout_ms)
            html = page.content()
            title = page.title()
            final_url = page.url
        finally:
            context.close()
        return Capture(
            url=url,
            final_url=final_url,
            status=status,
            captured_at=captured_at,
            screenshot_sha256=self.blobs.put(png),
            html_sha256=self.blobs.put(html.encode("utf-8")),
            title=title,
            browser_version=browser_version,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_template(template: object) -> str:
    if not isinstance(template, str) or not template.startswith("/"):
        raise ValueError(f"path_template must be a path starting with '/', got {template!r}")
    try:
        fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"path_template {template!r} is not a valid template: {exc}") from None
    unknown = fields - _TEMPLATE_FIELDS
    if unknown or not fields:
        raise ValueError(
            f"path_template {template!r} must use {{term}} (as typed) or {{bare}} (without a leading # or @)"
            + (f"; unknown placeholders: {', '.join(sorted(unknown))}" if unknown else "")
        )
    return template


def _merge_selectors(selectors: dict[str, str] | None) -> dict[str, str]:
    merged = dict(DEFAULT_SELECTORS)
    if selectors is None:
        return merged
    if not isinstance(selectors, dict):
        raise ValueError(f"selectors must be a mapping of name -> CSS selector, got {type(selectors).__name__}")
    unknown = sorted(set(selectors) - set(DEFAULT_SELECTORS))
    if unknown:
        raise ValueError(f"unknown selector names: {', '.join(unknown)}; known: {', '.join(DEFAULT_SELECTORS)}")
    for name, value in selectors.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"selector {name!r} must be a non-empty string, got {value!r}")
        merged[name] = value
    return merged


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _timeout_ms(name: str, seconds: object) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return float(seconds) * 1000
