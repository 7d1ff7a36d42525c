"""The browser path of the `site` agent: render a page in Chromium, scroll, click "more", read the DOM.

Every request the page makes goes through the campaign's guarded Fetcher (robots.txt, rate
limits, the address guard, size caps): the main document and each script, XHR or fetch request is
fetched by the Fetcher and handed to Chromium with `route.fulfill`, so the browser itself never
opens a connection. Images, media and fonts are not loaded at all (posts are read from the DOM;
media bytes are fetched later by the fetch stage), and only GET requests are allowed.

Playwright's sync objects belong to the thread that made them, so all browser calls run on one
private worker thread, as in agents/browser.py.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.browser import CHROMIUM_ARGS, default_chromium
from agents.errors import FetchError, SourceError
from agents.fetch import Fetcher
from agents.site_profile import Render, Selector

_SKIPPED_TYPES = frozenset({"image", "media", "font", "stylesheet"})
_COUNT_JS = "(sel) => document.querySelectorAll(sel).length"
_GREW_JS = "([sel, n]) => document.querySelectorAll(sel).length > n"


class Renderer:
    """Renders URLs with the profile's `render` settings; `render(url)` gives (html, final_url)."""

    def __init__(self, fetcher: Fetcher, settings: Render, container: Selector, *,
                 executable_path: str | None = None, viewport: tuple[int, int] = (1280, 900)):
        if container.css is None:
            raise ValueError("a profile rendered with javascript needs a css post.container (the browser counts posts)")
        self.fetcher = fetcher
        self.settings = settings
        self.container = container.css
        self.wait_for = settings.wait_for.css if settings.wait_for is not None else container.css
        self.executable_path = str(executable_path or default_chromium())
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self.blocked: list[str] = []  # requests refused by the fetch policy, for the caller's drops
        self._executor: ThreadPoolExecutor | None = None
        self._playwright: Any = None
        self._browser: Any = None
        self._document_error: FetchError | None = None

    def render(self, url: str) -> tuple[str, str, str | None]:
        """(rendered HTML, final URL, why loading more stopped early or None)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwatch-site-render")
        return self._executor.submit(self._render, url).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.submit(self._shutdown).result()
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- browser thread ---------------------------------------------------------------------

    def _browser_instance(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if not os.path.exists(self.executable_path):
            raise SourceError("no browser", f"no Chromium at {self.executable_path} (set DEEPWATCH_CHROMIUM)")
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        if self._playwright is None:
            self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable_path, headless=True, args=list(CHROMIUM_ARGS))
        except PlaywrightError as exc:
            raise SourceError("no browser", f"could not launch Chromium: {str(exc).splitlines()[0]}") from None
        return self._browser

    def _shutdown(self) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._browser = None
            if self._playwright is not None:
                self._playwright.stop()
                self._playwright = None

    def _route(self, route: Any) -> None:
        """Answer one browser request from the guarded Fetcher, or refuse it."""
        request = route.request
        if request.resource_type in _SKIPPED_TYPES:
            return route.abort()
        if request.method != "GET" or not request.url.startswith(("http://", "https://")):
            self.blocked.append(f"{request.method} {request.url[:200]}: only GET over http(s)")
            return route.abort()
        accept = request.headers.get("accept") or "*/*"
        try:
            fetched = self.fetcher.get_document(request.url, accept=accept)
        except FetchError as exc:
            if request.is_navigation_request() and request.frame.parent_frame is None:
                self._document_error = exc  # the page itself: the caller reports the Fetcher's reason
            self.blocked.append(f"{request.url[:200]}: {exc.reason} {exc.detail}".rstrip())
            return route.abort()
        route.fulfill(status=200, body=fetched.data, content_type=fetched.declared_mime or "application/octet-stream")

    def _render(self, url: str) -> tuple[str, str, str | None]:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        timeout_ms = self.settings.timeout_s * 1000
        context = self._browser_instance().new_context(
            viewport=self.viewport, user_agent=self.fetcher.policy.user_agent,
            service_workers="block", accept_downloads=False, java_script_enabled=True)
        try:
            context.route("**/*", self._route)
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            self._document_error = None
            try:
                page.goto(url, wait_until="domcontentloaded", timeout=max(timeout_ms, self.fetcher.policy.timeout_s * 1000))
            except PlaywrightTimeout as exc:
                raise SourceError("timeout", str(exc).splitlines()[0], url=url) from None
            except PlaywrightError as exc:
                refused = self._document_error
                if refused is not None:  # the Fetcher refused the page (address guard, robots, HTTP 404...)
                    raise SourceError(refused.reason, refused.detail, url=refused.url or url) from None
                raise SourceError("navigation failed", str(exc).splitlines()[0], url=url) from None
            try:
                page.wait_for_selector(self.wait_for, state="attached", timeout=timeout_ms)
            except PlaywrightTimeout:
                return page.content(), page.url, "nothing rendered"
            stopped = self._load_more(page, PlaywrightTimeout)
            return page.content(), page.url, stopped
        finally:
            context.close()

    def _load_more(self, page: Any, timeout_error: type[Exception]) -> str | None:
        """Scroll, then click "more", as the profile says; why it stopped short, or None."""
        timeout_ms = self.settings.timeout_s * 1000
        for _ in range(self.settings.scrolls):
            count = page.evaluate(_COUNT_JS, self.container)
            # The explicit scroll event covers pages already at the bottom, where scrollTo moves nothing.
            page.evaluate("() => { window.scrollTo(0, document.documentElement.scrollHeight);"
                          " window.dispatchEvent(new Event('scroll')); }")
            try:
                page.wait_for_function(_GREW_JS, arg=[self.container, count], timeout=timeout_ms)
            except timeout_error:
                break  # nothing more came: the feed ended
        if self.settings.more_button is None:
            return None
        for _ in range(self.settings.clicks):
            button = page.locator(self.settings.more_button.css).first
            if not button.count() or not button.is_visible():
                return None  # no more button: everything is shown
            count = page.evaluate(_COUNT_JS, self.container)
            button.click()
            try:
                page.wait_for_function(_GREW_JS, arg=[self.container, count], timeout=timeout_ms)
            except timeout_error:
                return "more button stalled"
        return "click limit"
