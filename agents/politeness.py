"""Politeness for the shared fetcher: robots.txt rules per origin, a limiter per host, and the
validators (ETag / Last-Modified) that let a re-polled document come back as a bodiless 304.

All are used from many threads at once (one Fetcher serves a thread pool), so
every piece of shared state sits behind a lock, and every wait is bounded by the caller's
deadline: politeness may slow a fetch down, but never past the time the fetch was given.

The robots.txt rules follow RFC 9309:
- fetched once per origin (scheme, host, port) and cached for `ttl_s`;
- 2xx: the file's rules apply (parsed by protego, group for our product token "deepwatch");
- 4xx: no usable file, so everything is allowed;
- 5xx (and 429): the site may be in trouble, so everything is disallowed ("robots.txt
  disallows") for `error_ttl_s` before the file is asked for again;
- no answer at all (refused, timed out): the host is paused for `error_ttl_s` too, and its
  fetches fail with that same reason ("connection failed", "timeout"), which says more about
  the host than "disallowed" would.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from protego import Protego

from agents.errors import FetchError

ROBOTS_TOKEN = "deepwatch"  # the product token robots.txt groups are matched against
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 asks crawlers to parse at least 500 KiB; the rest is cut


class PolitenessTimeout(Exception):
    """Waiting for a host's turn would pass the fetch's deadline."""


# -- per-host limiter -----------------------------------------------------------------------


@dataclass
class _HostState:
    slots: threading.BoundedSemaphore | None
    next_start: float = 0.0  # monotonic time before which no new request may start
    crawl_delay_s: float = 0.0  # from the host's robots.txt


class HostLimiter:
    """At most `concurrency` requests in flight per host, and request starts spaced out.

    The spacing is the larger of 1/`rps` and the host's robots.txt Crawl-delay. Start times are
    handed out in order under a lock (a reservation, not a sleep-and-retry), so threads that
    arrive together queue up at the right intervals instead of all waking at once.
    `concurrency` or `rps` of None/0 switches that limit off.
    """

    def __init__(self, concurrency: int | None, rps: float | None):
        self._concurrency = concurrency or 0
        self._interval = 1.0 / rps if rps else 0.0
        self._lock = threading.Lock()
        self._hosts: dict[str, _HostState] = {}

    def set_crawl_delay(self, host: str, seconds: float) -> None:
        with self._lock:
            self._state(host).crawl_delay_s = max(0.0, seconds)

    @contextmanager
    def slot(self, host: str, deadline: float) -> Iterator[None]:
        """Hold one of `host`'s request slots, starting no earlier than its spacing allows."""
        with self._lock:
            state = self._state(host)
        if state.slots is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not state.slots.acquire(timeout=remaining):
                raise PolitenessTimeout(
                    f"all {self._concurrency} request slots for {host} stayed busy until the deadline"
                )
        try:
            wait = self._reserve_start(host, state, deadline)
            if wait > 0:
                time.sleep(wait)
            yield
        finally:
            if state.slots is not None:
                state.slots.release()

    def _reserve_start(self, host: str, state: _HostState, deadline: float) -> float:
        with self._lock:
            interval = max(self._interval, state.crawl_delay_s)
            now = time.monotonic()
            start = max(now, state.next_start)
            if start > deadline:
                raise PolitenessTimeout(
                    f"the next request to {host} may start in {start - now:.1f} s, after the deadline"
                )
            state.next_start = start + interval
            return start - now

    def _state(self, host: str) -> _HostState:
        # Caller holds self._lock. Host entries are tiny and a campaign meets a bounded number
        # of hosts (platforms and their CDNs), so they are kept for the Fetcher's lifetime.
        state = self._hosts.get(host)
        if state is None:
            slots = threading.BoundedSemaphore(self._concurrency) if self._concurrency > 0 else None
            state = self._hosts[host] = _HostState(slots)
        return state


# -- robots.txt -----------------------------------------------------------------------------


class RobotsAnswer(NamedTuple):
    """What the server said when asked for /robots.txt (after redirects)."""

    status: int
    body: bytes


class RobotsVerdict(NamedTuple):
    allowed: bool
    detail: str  # why, for the FetchError a refusal becomes
    crawl_delay_s: float | None


@dataclass(frozen=True)
class _RobotsState:
    """One origin's verdict source; replaced whole on refresh, so readers never see half of one."""

    expires: float
    rules: Protego | None = None  # a parsed file
    allow_all: bool = False  # 4xx: no file
    status_detail: str = ""  # why everything is disallowed (5xx)
    failure: FetchError | None = None  # unreachable: the error that fetches get meanwhile


@dataclass
class _Origin:
    state: _RobotsState | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # held by the one thread fetching


class RobotsCache:
    """robots.txt verdicts per origin, each file fetched once per TTL even under many threads.

    `fetch(robots_url, deadline)` asks the server (through the guarded client) and returns a
    RobotsAnswer for any HTTP status, or raises FetchError when no answer came at all.
    """

    def __init__(
        self,
        fetch: Callable[[str, float], RobotsAnswer],
        *,
        ttl_s: float,
        error_ttl_s: float,
        max_origins: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._error_ttl_s = error_ttl_s
        self._max_origins = max_origins
        self._clock = clock
        self._lock = threading.Lock()
        self._origins: OrderedDict[str, _Origin] = OrderedDict()
        self.fetches = 0  # robots.txt requests made (cache misses)

    def check(self, origin: str, url: str, deadline: float) -> RobotsVerdict:
        """May `url` (on `origin`, "scheme://host:port") be fetched? Raises FetchError when the
        origin's robots.txt could not be reached (the same reason the fetch itself would get)."""
        state = self._state(origin, deadline)
        if state.failure is not None:
            f = state.failure
            raise FetchError(f.reason, f"robots.txt of {origin} unreachable, host paused: {f.detail}", url=url)
        if state.allow_all:
            return RobotsVerdict(True, "no robots.txt", None)
        if state.rules is None:
            return RobotsVerdict(False, state.status_detail, None)
        delay = state.rules.crawl_delay(ROBOTS_TOKEN)
        if state.rules.can_fetch(url, ROBOTS_TOKEN):
            return RobotsVerdict(True, "allowed by robots.txt", delay)
        return RobotsVerdict(False, f"{origin}/robots.txt disallows this path for {ROBOTS_TOKEN}", delay)

    def _state(self, origin: str, deadline: float) -> _RobotsState:
        with self._lock:
            slot = self._origins.get(origin)
            if slot is None:
                slot = self._origins[origin] = _Origin()
                while len(self._origins) > self._max_origins:
                    self._origins.popitem(last=False)
            self._origins.move_to_end(origin)
        state = slot.state
        if state is not None and state.expires > self._clock():
            return state
        # One thread fetches; the others for this origin wait for its result (up to their deadline).
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not slot.lock.acquire(timeout=remaining):
            raise FetchError("timeout", f"waited for {origin}/robots.txt until the deadline", url=origin)
        try:
            state = slot.state
            if state is None or state.expires <= self._clock():  # nobody refreshed it while we waited
                state = slot.state = self._load(origin, deadline)
            return state
        finally:
            slot.lock.release()

    def _load(self, origin: str, deadline: float) -> _RobotsState:
        robots_url = f"{origin}/robots.txt"
        with self._lock:
            self.fetches += 1
        try:
            answer = self._fetch(robots_url, deadline)
        except FetchError as exc:
            if exc.reason == "blocked address":
                raise  # no request was made; nothing to remember or pause
            return _RobotsState(self._clock() + self._error_ttl_s, failure=exc)
        if 200 <= answer.status < 300:
            text = answer.body.decode("utf-8", "replace").lstrip("\ufeff")
            return _RobotsState(self._clock() + self._ttl_s, rules=Protego.parse(text))
        if 400 <= answer.status < 500 and answer.status != 429:
            return _RobotsState(self._clock() + self._ttl_s, allow_all=True)
        # 5xx, 429, or anything unexpected: the site may be struggling; stay away a while.
        detail = (
            f"{robots_url} answered HTTP {answer.status}; everything disallowed for "
            f"{self._error_ttl_s:g} s (RFC 9309)"
        )
        return _RobotsState(self._clock() + self._error_ttl_s, status_detail=detail)


# -- conditional requests -------------------------------------------------------------------


class Cached(NamedTuple):
    """A document kept with its validators so that a 304 can be answered from memory."""

    etag: str | None
    last_modified: str | None
    data: bytes
    declared_mime: str
    final_url: str

    def conditional_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class ValidatorCache:
    """ETag / Last-Modified and the body they validate, per URL; LRU-bounded in count and bytes.

    Feeds and API listings are polled again and again; a server that answers 304 Not Modified
    then sends no body, and the caller still gets the document from here.
    """

    def __init__(self, max_entries: int, max_bytes: int):
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Cached] = OrderedDict()

    def get(self, url: str) -> Cached | None:
        with self._lock:
            item = self._items.get(url)
            if item is not None:
                self._items.move_to_end(url)
            return item

    def put(self, url: str, item: Cached) -> None:
        if not (item.etag or item.last_modified) or len(item.data) > self._max_bytes or self._max_entries <= 0:
            self.discard(url)
            return
        with self._lock:
            old = self._items.pop(url, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._items[url] = item
            self._bytes += len(item.data)
            while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted.data)

    def discard(self, url: str) -> None:
        with self._lock:
            old = self._items.pop(url, None)
            if old is not None:
                self._bytes -= len(old.data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
