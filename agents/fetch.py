"""The shared HTTP fetcher: polite, bounded, and safe to point at URLs that strangers wrote.

Media URLs come from posts, i.e. from anyone, so every connection goes through an address guard
(no private, loopback, link-local, multicast, reserved or cloud-metadata targets unless the
operator allows a network). The guard sits in the connection layer itself, so the address that
was checked is the address that gets connected to (a hostname that re-resolves differently between
a check and the connect cannot slip past), and it runs again for every redirect hop because
redirects are followed by hand.

Every agent and the media fetch stage share this one policy:
- politeness (agents/politeness.py): robots.txt per origin (RFC 9309, Crawl-delay honoured),
  a limit on requests in flight and request rate per host, retries with backoff and jitter that
  honour Retry-After, and conditional requests (ETag / Last-Modified) for documents;
- safety: the address guard, a redirect cap, a byte cap on the body as sent *and* as decoded
  (a small gzip body that inflates to gigabytes is cut at the cap, never held whole), and a
  wall-clock deadline per fetch that every socket read is clamped to (a slow drip ends on time).

Failures are values: `get_json` raises `FetchError(reason)` and `fetch_media` returns a
`Drop(stage="fetch", reason=...)`, with short stable reasons that the run report counts.
`Fetcher.counters` counts requests, retries, not_modified, robots_refused, robots_fetches and
bytes (body bytes received as sent, before decoding).
"""
from __future__ import annotations

import ipaddress
import json
import math
import random
import socket
import ssl
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, Union

import certifi
import httpcore
import httpx

from agents.base import Drop, MediaRef
from agents.errors import FetchError
from agents.politeness import (
    ROBOTS_MAX_BYTES,
    Cached,
    HostLimiter,
    PolitenessTimeout,
    RobotsAnswer,
    RobotsCache,
    ValidatorCache,
)

__all__ = [
    "DEFAULT_CONTACT_URL",
    "ArchivedResponse",
    "Exchange",
    "FetchError",
    "FetchPolicy",
    "FetchResult",
    "Fetched",
    "Fetcher",
    "address_refusal",
    "default_user_agent",
]

DEFAULT_CONTACT_URL = "https://github.com/deepwatch/deepwatch"

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Instance-metadata endpoints hand out cloud credentials; refused even when a broader allowed
# network covers them, unless the operator names the exact address.
_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ERROR_SNIPPET_BYTES = 512
# Only encodings this module decodes itself, with a bound on each output piece (httpx's own
# decoders inflate a whole network chunk at once: 64 KB of gzip can become 64 MB in one go).
_ACCEPT_ENCODING = "gzip, deflate"
_DECODE_PIECE = 64 * 1024
# A redirect's own body (usually a line of "Moved") is kept for the archive up to this size.
_REDIRECT_BODY_CAP = 64 * 1024


def default_user_agent(contact_url: str = DEFAULT_CONTACT_URL) -> str:
    """A User-Agent that names the crawler and where a platform operator can reach its owners."""
    return f"deepwatch/0.1 (+{contact_url}; election deepfake monitoring)"


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and how far the fetcher goes; validated on construction."""

    user_agent: str = field(default_factory=default_user_agent)
    timeout_s: float = 30.0  # connect and per-read timeout
    total_timeout_s: float = 600.0  # wall clock for one fetch, all hops, retries and waits (slow-drip guard)
    max_bytes: int = 200_000_000  # media body cap, as decoded; video-sized, streamed and cut here
    max_json_bytes: int = 20_000_000  # API answers are small; a huge one is a broken or hostile server
    max_redirects: int = 5
    allow_networks: tuple[str, ...] = ()  # CIDRs fetched even though private/loopback (e.g. a demo)
    retries: int = 2  # extra attempts on connect errors, 429 and 5xx
    backoff_s: float = 0.5  # first retry delay; doubles each attempt, with jitter
    max_retry_after_s: float = 30.0  # a server's Retry-After is honoured up to this
    # Politeness. Benchmarks and loopback demos switch these off.
    respect_robots: bool = True  # obey robots.txt (product token "deepwatch") on every hop
    robots_ttl_s: float = 86_400.0  # RFC 9309: a cached robots.txt is used for at most a day
    robots_error_ttl_s: float = 600.0  # robots.txt answered 5xx or not at all: host off-limits this long
    max_crawl_delay_s: float = 30.0  # a robots.txt Crawl-delay is honoured up to this
    per_host_concurrency: int | None = 2  # requests in flight per host; None or 0 = no limit
    per_host_rps: float | None = None  # request starts per second per host; None or 0 = no limit
    conditional_cache_entries: int = 1024  # documents remembered with ETag/Last-Modified (LRU); 0 = off
    conditional_cache_bytes: int = 64_000_000  # total body bytes that cache may hold
    max_connections: int = 20  # connection pool size across all hosts

    def __post_init__(self) -> None:
        for name in ("timeout_s", "total_timeout_s", "max_retry_after_s", "robots_ttl_s", "robots_error_ttl_s"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise ValueError(f"FetchPolicy.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_bytes", "max_json_bytes", "max_connections"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"FetchPolicy.{name} must be a positive integer, got {value!r}")
        for name in ("max_redirects", "retries", "conditional_cache_entries", "conditional_cache_bytes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"FetchPolicy.{name} must be an integer >= 0, got {value!r}")
        for name in ("backoff_s", "max_crawl_delay_s"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"FetchPolicy.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.per_host_concurrency is not None and (not _is_int(self.per_host_concurrency) or self.per_host_concurrency < 0):
            raise ValueError(
                f"FetchPolicy.per_host_concurrency must be None or an integer >= 0, got {self.per_host_concurrency!r}"
            )
        if self.per_host_rps is not None and (not _is_number(self.per_host_rps) or self.per_host_rps < 0):
            raise ValueError(f"FetchPolicy.per_host_rps must be None or a number >= 0, got {self.per_host_rps!r}")
        if not isinstance(self.respect_robots, bool):
            raise ValueError(f"FetchPolicy.respect_robots must be true or false, got {self.respect_robots!r}")
        if not self.user_agent or not isinstance(self.user_agent, str):
            raise ValueError("FetchPolicy.user_agent must be a non-empty string")
        if isinstance(self.allow_networks, str) or not isinstance(self.allow_networks, Iterable):
            raise ValueError(
                "FetchPolicy.allow_networks must be a tuple of CIDR strings, "
                f"got {self.allow_networks!r}"
            )
        object.__setattr__(self, "allow_networks", tuple(self.allow_networks))
        self.networks()  # validates every entry now rather than at the first fetch

    def networks(self) -> tuple[IPNetwork, ...]:
        parsed = []
        for entry in self.allow_networks:
            try:
                parsed.append(ipaddress.ip_network(str(entry), strict=False))
            except ValueError as exc:
                raise ValueError(f"FetchPolicy.allow_networks entry {entry!r} is not a CIDR: {exc}") from None
        return tuple(parsed)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def address_refusal(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why `ip` must not be fetched (e.g. "loopback"), or None when it may be."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    allowed = tuple(allowed)
    if ip in _METADATA_ADDRESSES:
        named = any(net.num_addresses == 1 and ip in net for net in allowed)
        return None if named else "cloud metadata"
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    for attr, label in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(ip, attr):
            return label
    if not ip.is_global:
        return "not globally routable"
    return None


class _BlockedAddress(Exception):
    """Raised inside the connection layer; not an OSError so httpx passes it through unchanged."""


class _Deadline(threading.local):
    """The monotonic deadline of the fetch running on this thread (None outside a fetch)."""

    at: float | None = None

    def clamp(self, timeout: float | None) -> float | None:
        """`timeout`, shortened so that no socket wait runs past the deadline."""
        if self.at is None:
            return timeout
        left = max(0.001, self.at - time.monotonic())
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the current fetch's deadline.

    httpx's read timeout restarts with each chunk, so a server dripping one byte a second would
    otherwise hold a fetch forever; clamping at the socket ends it at the deadline itself.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline):
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, self._deadline.clamp(timeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address (never re-resolves)."""

    def __init__(self, allowed: tuple[IPNetwork, ...], deadline: _Deadline):
        self._allowed = allowed
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve host {host!r}: {exc}") from exc
        addresses: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        # One bad address refuses the host: a name that resolves to both a public and a private
        # address is how rebinding attacks look.
        for ip in addresses:
            refusal = address_refusal(ip, self._allowed)
            if refusal:
                shown = host if host == str(ip) else f"{host} -> {ip}"
                raise _BlockedAddress(f"{shown} is {refusal}")
        failures: list[httpcore.ConnectError | httpcore.ConnectTimeout] = []
        for ip in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(ip), port, timeout=self._deadline.clamp(timeout), local_address=local_address,
                    socket_options=socket_options,
                )
                return _DeadlineStream(stream, self._deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                where = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
                failures.append(type(exc)(f"{exc} to {where}"))
        if not failures:  # getaddrinfo gave nothing (it normally raises instead)
            raise httpcore.ConnectError(f"host {host!r} resolved to no address")
        raise failures[-1]

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise _BlockedAddress(f"unix socket {path} is never fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool swapped for one on the guarded backend."""

    def __init__(self, allowed: tuple[IPNetwork, ...], limits: httpx.Limits, deadline: _Deadline):
        super().__init__(trust_env=False, limits=limits)
        if not hasattr(self, "_pool"):  # httpx internals moved: fail loudly, never unguarded
            raise RuntimeError("this httpx version has no HTTPTransport._pool; the address guard cannot attach")
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allowed, deadline),
        )


class Fetched(NamedTuple):
    """Bytes that came back; unpacks as (data, declared_mime, final_url)."""

    data: bytes
    declared_mime: str  # the Content-Type the server declared, without parameters; not trusted
    final_url: str  # after redirects


FetchResult = Union[Fetched, Drop]


@dataclass(frozen=True)
class Exchange:
    """One HTTP request and the answer to it, as a web archive (WARC) records them."""

    method: str
    url: str
    request_headers: tuple[tuple[str, str], ...]  # as sent, in order
    http_version: str  # "HTTP/1.1"
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # response headers in wire order, names as the server wrote them
    # The body as received: Content-Encoding (gzip...) kept, the chunked transfer coding already
    # undone by the HTTP layer (see `chunked`).
    body: bytes
    body_complete: bool  # False when a redirect's body was cut at _REDIRECT_BODY_CAP or broke off
    peer_ip: str | None  # the address actually connected to (None if the socket would not say)
    started_at: datetime  # UTC, just before the request was sent

    @property
    def chunked(self) -> bool:
        """True when the server sent the body with Transfer-Encoding: chunked."""
        return any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in self.headers)


@dataclass(frozen=True)
class ArchivedResponse:
    """What `Fetcher.archive_get` returns: every hop, and the final body decoded."""

    url: str  # as asked for
    exchanges: tuple[Exchange, ...]  # each redirect hop in order, then the final answer
    body: bytes  # the final body with Content-Encoding undone
    declared_mime: str  # the final Content-Type without parameters; not trusted

    @property
    def final(self) -> Exchange:
        return self.exchanges[-1]

    @property
    def final_url(self) -> str:
        return self.final.url


@dataclass(frozen=True)
class _Mode:
    """What kind of fetch this is: its cap, and which politeness and caching steps apply."""

    max_bytes: int
    accept: str
    conditional: bool = False  # documents: send validators, answer a 304 from the cache
    robots: bool = True  # check robots.txt on every hop (off only for robots.txt itself)
    retries: int | None = None  # None: the policy's
    truncate: bool = False  # keep the first max_bytes instead of failing (robots.txt)
    any_status: bool = False  # hand 4xx/5xx answers back instead of raising (robots.txt)
    headers: tuple[tuple[str, str], ...] = ()  # caller's extra headers, first origin only
    # archive_get: every answered hop is appended here as an Exchange (None: not recorded).
    archive: list[Exchange] | None = field(default=None, compare=False)


class _Answer(NamedTuple):
    status: int
    fetched: Fetched


class _Retryable(Exception):
    def __init__(self, error: FetchError, retry_after: float | None = None):
        self.error = error
        self.retry_after = retry_after


class _Redirect(NamedTuple):
    location: str
    from_url: httpx.URL  # the URL actually requested (query included); relative Locations resolve here


class Fetcher:
    """One pooled sync HTTP client under a `FetchPolicy`. Thread-safe; close it when done."""

    def __init__(self, policy: FetchPolicy | None = None):
        self.policy = policy if policy is not None else FetchPolicy()
        p = self.policy
        self.counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        self._deadline = _Deadline()
        limits = httpx.Limits(
            max_connections=p.max_connections,
            max_keepalive_connections=p.max_connections,
            keepalive_expiry=30,
        )
        self._client = httpx.Client(
            transport=_GuardedTransport(p.networks(), limits, self._deadline),
            headers={"User-Agent": p.user_agent, "Accept-Encoding": _ACCEPT_ENCODING},
            timeout=httpx.Timeout(p.timeout_s),
            follow_redirects=False,  # by hand, so every hop is re-checked and counted
            trust_env=False,  # an environment proxy would bypass the address guard
        )
        self._limiter = HostLimiter(p.per_host_concurrency, p.per_host_rps)
        self._robots = RobotsCache(self._fetch_robots, ttl_s=p.robots_ttl_s, error_ttl_s=p.robots_error_ttl_s)
        self._validators = ValidatorCache(p.conditional_cache_entries, p.conditional_cache_bytes)

    # -- public API ---------------------------------------------------------------------------

    def get_json(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        """GET a JSON document; raises FetchError("HTTP 404" / "invalid JSON" / "timeout" / ...).

        `headers` (an API token, say) go with the first request and with redirects that stay on
        the same origin only, so a redirect elsewhere cannot carry a credential away.
        """
        mode = _Mode(self.policy.max_json_bytes, "application/json", conditional=True, headers=_extra_headers(headers))
        body, _, final_url = self._fetch(url, params, mode).fetched
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FetchError("invalid JSON", f"{exc}; body starts {body[:60]!r}", url=final_url) from None

    def get_document(
        self, url: str, params: dict[str, Any] | None = None,
        accept: str = "text/html,application/xml;q=0.9,*/*;q=0.5", headers: dict[str, str] | None = None,
    ) -> Fetched:
        """GET a text document (HTML page, RSS/Atom feed) under the JSON size cap; raises FetchError.

        Returns the raw bytes: feed and HTML parsers sniff the encoding better than a header does.
        `headers` are sent as in get_json (same-origin hops only).
        """
        mode = _Mode(self.policy.max_json_bytes, accept, conditional=True, headers=_extra_headers(headers))
        return self._fetch(url, params, mode).fetched

    def check_robots(self, url: str) -> None:
        """FetchError("robots.txt disallows") when the policy obeys robots.txt and it refuses `url`.

        For clients with their own HTTP stack (yt-dlp listings) that must still honour robots.txt;
        robots.txt itself is fetched (and cached) through this Fetcher's guard.
        """
        if self.policy.respect_robots:
            self._obey_robots(_checked_url(url), time.monotonic() + self.policy.total_timeout_s)

    def fetch_media(self, ref: MediaRef) -> FetchResult:
        """The bytes behind a media reference, or a Drop(stage="fetch") saying why not."""
        if not isinstance(ref, MediaRef):
            raise TypeError(f"fetch_media takes an agents.base.MediaRef, got {type(ref).__name__}")
        accept = "video/*,*/*;q=0.5" if ref.kind == "video" else "image/*,*/*;q=0.5"
        try:
            result = self._fetch(ref.url, None, _Mode(self.policy.max_bytes, accept)).fetched
        except FetchError as exc:
            detail = exc.detail
            if exc.url and exc.url != ref.url:
                detail = f"{detail} (at {exc.url})" if detail else f"at {exc.url}"
            return Drop(stage="fetch", reason=exc.reason, subject=ref.url, detail=detail)
        if not result.data:
            return Drop(stage="fetch", reason="empty body", subject=ref.url, detail=f"no bytes from {result.final_url}")
        return result

    def archive_get(self, url: str, accept: str = "*/*") -> ArchivedResponse:
        """GET `url` for a web archive: the same guarded, polite fetch as `fetch_media` (address
        guard on every hop, robots.txt, caps, retries, deadline), returning each redirect hop and
        the final answer as they went over the wire, with the peer address. Raises FetchError.

        Never answered from the conditional cache: an archive records what the server says now.
        """
        if not isinstance(accept, str) or not accept.strip():
            raise TypeError(f"accept must be a non-empty string, got {accept!r}")
        exchanges: list[Exchange] = []
        answer = self._fetch(url, None, _Mode(self.policy.max_bytes, accept, archive=exchanges))
        return ArchivedResponse(str(url), tuple(exchanges), answer.fetched.data, answer.fetched.declared_mime)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals: one fetch -----------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[name] += n

    def _fetch(self, url: str, params: dict[str, Any] | None, mode: _Mode, deadline: float | None = None) -> _Answer:
        current = _checked_url(url)
        if params:
            current = current.copy_merge_params(params)
        if deadline is None:
            deadline = time.monotonic() + self.policy.total_timeout_s
        first_origin = _origin(current)
        outer, self._deadline.at = self._deadline.at, deadline  # robots.txt fetches nest inside
        try:
            for _hop in range(self.policy.max_redirects + 1):
                if mode.robots and self.policy.respect_robots:
                    self._obey_robots(current, deadline)
                extra = dict(mode.headers) if _origin(current) == first_origin else {}
                outcome = self._with_retries(current, mode, extra, deadline)
                if isinstance(outcome, _Answer):
                    return outcome
                current = _checked_url(outcome.from_url.join(outcome.location))
        finally:
            self._deadline.at = outer
        raise FetchError(
            "too many redirects", f"still redirected after {self.policy.max_redirects} hops", url=url
        )

    def _obey_robots(self, url: httpx.URL, deadline: float) -> None:
        origin = _origin(url)
        verdict = self._robots.check(origin, str(url), deadline)
        if verdict.crawl_delay_s:
            self._limiter.set_crawl_delay(_host_key(url), min(verdict.crawl_delay_s, self.policy.max_crawl_delay_s))
        if not verdict.allowed:
            self._count("robots_refused")
            raise FetchError("robots.txt disallows", verdict.detail, url=str(url))

    def _fetch_robots(self, robots_url: str, deadline: float) -> RobotsAnswer:
        """robots.txt itself: no robots check, no retries, any status handed back, big files cut."""
        self._count("robots_fetches")
        mode = _Mode(ROBOTS_MAX_BYTES, "text/plain", robots=False, retries=0, truncate=True, any_status=True)
        status, fetched = self._fetch(robots_url, None, mode, deadline)
        return RobotsAnswer(status, fetched.data)

    def _with_retries(self, url: httpx.URL, mode: _Mode, extra: dict[str, str], deadline: float):
        retries = self.policy.retries if mode.retries is None else mode.retries
        attempt = 0
        while True:
            try:
                return self._once(url, mode, extra, deadline)
            except _Retryable as retry:
                if attempt >= retries:
                    raise retry.error from None
                if retry.retry_after is not None:
                    delay = min(retry.retry_after, self.policy.max_retry_after_s)
                else:
                    # Exponential backoff with jitter so many workers don't retry in lockstep.
                    delay = self.policy.backoff_s * (2**attempt) * random.uniform(0.5, 1.0)
                if time.monotonic() + delay > deadline:
                    raise retry.error from None
                time.sleep(delay)
                attempt += 1
                self._count("retries")

    def _once(self, url: httpx.URL, mode: _Mode, extra: dict[str, str], deadline: float):
        headers = {"Accept": mode.accept, **extra}
        cached = self._validators.get(str(url)) if mode.conditional else None
        if cached is not None:
            headers.update(cached.conditional_headers())
        try:
            with self._limiter.slot(_host_key(url), deadline):
                return self._send(url, headers, mode, deadline, cached)
        except PolitenessTimeout as exc:
            raise FetchError("timeout", f"politeness wait: {exc}", url=str(url)) from None

    def _send(self, url: httpx.URL, headers: dict[str, str], mode: _Mode, deadline: float, cached: Cached | None):
        timeout = httpx.Timeout(min(self.policy.timeout_s, max(0.001, deadline - time.monotonic())))
        request = self._client.build_request("GET", url, headers=headers, timeout=timeout)
        shown = str(request.url)
        self._count("requests")  # attempted: robots.txt and retries included
        started_at = datetime.now(timezone.utc)
        try:
            response = self._client.send(request, stream=True)
        except _BlockedAddress as exc:
            raise FetchError("blocked address", str(exc), url=shown) from None
        except httpx.ConnectTimeout as exc:
            raise _Retryable(FetchError("timeout", f"connect: {exc}", url=shown)) from None
        except httpx.ConnectError as exc:
            raise _Retryable(FetchError("connection failed", str(exc), url=shown)) from None
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"{type(exc).__name__}: {exc}", url=shown) from None
        except httpx.TransportError as exc:
            raise FetchError("connection failed", f"{type(exc).__name__}: {exc}", url=shown) from None
        tap = _ExchangeTap(request, response, started_at) if mode.archive is not None else None
        try:
            outcome = self._answer(response, mode, deadline, cached)
            if tap is not None:  # only answers that were used: a retried 503 is not an archived hop
                mode.archive.append(tap.exchange(outcome))
            return outcome
        finally:
            response.close()

    def _answer(self, response: httpx.Response, mode: _Mode, deadline: float, cached: Cached | None):
        status = response.status_code
        shown = str(response.url)
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise FetchError(f"HTTP {status}", "redirect without a Location header", url=shown)
            return _Redirect(location, response.url)
        if status == 304 and mode.conditional:
            if cached is None:
                raise FetchError("HTTP 304", "not modified, but nothing was cached for this URL", url=shown)
            self._count("not_modified")
            return _Answer(200, Fetched(cached.data, cached.declared_mime, cached.final_url))
        mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower() or "application/octet-stream"
        if not 200 <= status < 300:
            if mode.any_status:
                return _Answer(status, Fetched(b"", mime, shown))
            if status == 429 or status >= 500:
                retry_after = _parse_retry_after(response.headers.get("retry-after"))
                raise _Retryable(FetchError(f"HTTP {status}", url=shown), retry_after)
            raise FetchError(f"HTTP {status}", _error_snippet(response, deadline), url=shown)
        data = self._body(response, mode, deadline)
        fetched = Fetched(data, mime, shown)
        if mode.conditional:
            self._validators.put(shown, Cached(
                response.headers.get("etag"), response.headers.get("last-modified"), data, mime, shown
            ))
        return _Answer(status, fetched)

    def _body(self, response: httpx.Response, mode: _Mode, deadline: float) -> bytes:
        """The decoded body, cut (or refused) at the mode's cap, read until the deadline at most."""
        shown = str(response.url)
        cap = mode.max_bytes
        declared = response.headers.get("content-length", "")
        if not mode.truncate and declared.isdigit() and int(declared) > cap:
            raise FetchError("over size cap", f"Content-Length {declared} > cap {cap}", url=shown)
        decoder = _Decoder.for_header(response.headers.get("content-encoding", ""), shown)
        chunks: list[bytes] = []
        kept = 0
        received = 0
        try:
            for raw in response.iter_raw():
                received += len(raw)
                for piece in decoder.feed(raw):
                    if kept + len(piece) > cap:
                        if mode.truncate:
                            chunks.append(piece[: cap - kept])
                            return b"".join(chunks)
                        what = f"decoded ({decoder.name}) body" if decoder.name else "body"
                        raise FetchError(
                            "over size cap", f"{what} passed the cap of {cap} bytes after {received} bytes received",
                            url=shown,
                        )
                    chunks.append(piece)
                    kept += len(piece)
                if time.monotonic() > deadline:
                    raise FetchError(
                        "timeout", f"body incomplete after {self.policy.total_timeout_s}s ({received} bytes)", url=shown
                    )
            for piece in decoder.flush():
                if kept + len(piece) > cap and not mode.truncate:
                    raise FetchError("over size cap", f"decoded body passed the cap of {cap} bytes", url=shown)
                chunks.append(piece[: max(0, cap - kept)])
                kept += len(piece)
        except zlib.error as exc:
            raise FetchError("bad encoding", f"{decoder.name}: {exc}", url=shown) from None
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"reading body: {type(exc).__name__}", url=shown) from None
        except httpx.TransportError as exc:
            raise FetchError("connection failed", f"reading body: {type(exc).__name__}: {exc}", url=shown) from None
        finally:
            self._count("bytes", received)
        return b"".join(chunks)


# -- recording exchanges for archive_get ----------------------------------------------------


class _TeeStream(httpx.SyncByteStream):
    """The response's raw byte stream, with a copy of every chunk kept as it is read."""

    def __init__(self, inner: httpx.SyncByteStream, copy: list[bytes]):
        self._inner = inner
        self._copy = copy

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._copy.append(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _ExchangeTap:
    """Watches one response for archive_get: the peer address (asked before the body is read,
    because a server that closes the connection afterwards takes the answer with it) and the raw
    body bytes as the fetch's own body reader pulls them."""

    def __init__(self, request: httpx.Request, response: httpx.Response, started_at: datetime):
        self._request = request
        self._response = response
        self._started_at = started_at
        self._peer_ip = _peer_ip(response)
        self._raw: list[bytes] = []
        response.stream = _TeeStream(response.stream, self._raw)

    def exchange(self, outcome: object) -> Exchange:
        complete = True
        if isinstance(outcome, _Redirect):  # the fetch itself never reads a redirect's body
            complete = self._read_redirect_body()
            body = b"".join(self._raw)[:_REDIRECT_BODY_CAP]
        else:
            body = b"".join(self._raw)
        request, response = self._request, self._response
        return Exchange(
            method=request.method,
            url=str(request.url),
            request_headers=_text_pairs(request.headers.raw),
            http_version=response.http_version,
            status=response.status_code,
            reason=response.reason_phrase,
            headers=_text_pairs(response.headers.raw),
            body=body,
            body_complete=complete,
            peer_ip=self._peer_ip,
            started_at=self._started_at,
        )

    def _read_redirect_body(self) -> bool:
        kept = 0
        try:
            for chunk in self._response.iter_raw():
                kept += len(chunk)
                if kept > _REDIRECT_BODY_CAP:
                    return False
        except (httpx.HTTPError, httpx.StreamError):
            return False
        return True


def _peer_ip(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        address = stream.get_extra_info("server_addr")
    except OSError:  # the socket is already gone
        return None
    if not address:
        return None
    return str(address[0]).split("%", 1)[0]  # (host, port[, flow, scope]); no IPv6 zone id


def _text_pairs(raw: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    # Header bytes are ISO-8859-1 on the wire (RFC 9110 5.5); latin-1 maps every byte back exactly.
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


# -- content decoding with bounded output ---------------------------------------------------


class _Inflater:
    """gzip or deflate, decoded in pieces of at most _DECODE_PIECE bytes.

    zlib's `max_length` stops each call at the piece size and keeps the rest of the input in
    `unconsumed_tail`, so memory stays at one piece however far the data would inflate.
    """

    def __init__(self, encoding: str):
        self._gzip = encoding in ("gzip", "x-gzip")
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16) if self._gzip else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._z is None:
            # "deflate" should be zlib-wrapped, but some servers send a bare deflate stream.
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        elif self._z.eof:
            if not self._gzip:
                return  # bytes after the end of a deflate stream are ignored
            self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)  # the next gzip member
        pending = data
        while True:
            out = self._z.decompress(pending, _DECODE_PIECE)
            if out:
                yield out
            if self._z.eof:
                pending = self._z.unused_data
                if not pending or not self._gzip:
                    return
                self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)  # concatenated gzip members
                continue
            pending = self._z.unconsumed_tail
            if not pending and len(out) < _DECODE_PIECE:
                return  # all input used and no output held back
            # Otherwise output is still pending (input left, or a full piece): go round again.

    def flush(self) -> Iterator[bytes]:
        if self._z is not None and not self._z.eof:
            tail = self._z.flush()
            if tail:
                yield tail


class _Decoder:
    """The Content-Encoding chain of a response, undone in order, with bounded output pieces."""

    def __init__(self, names: list[str], inflaters: list[_Inflater]):
        self.name = ", ".join(names)
        self._inflaters = inflaters  # in decoding order (the last encoding applied comes first)

    @classmethod
    def for_header(cls, header: str, url: str) -> "_Decoder":
        names = [e.strip().lower() for e in header.split(",") if e.strip() and e.strip().lower() != "identity"]
        for name in names:
            if name not in ("gzip", "x-gzip", "deflate"):
                raise FetchError("bad encoding", f"Content-Encoding {name!r} was not asked for and is not decoded", url=url)
        return cls(names, [_Inflater(n) for n in reversed(names)])

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._through(0, data)

    def flush(self) -> Iterator[bytes]:
        for i, inflater in enumerate(self._inflaters):
            for piece in inflater.flush():
                yield from self._through(i + 1, piece)

    def _through(self, i: int, data: bytes) -> Iterator[bytes]:
        if i == len(self._inflaters):
            yield data
            return
        for piece in self._inflaters[i].feed(data):
            yield from self._through(i + 1, piece)


# -- helpers --------------------------------------------------------------------------------


def _extra_headers(headers: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    if headers is None:
        return ()
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise TypeError(f"headers must be a dict of str to str, got {headers!r}")
    return tuple(headers.items())


def _checked_url(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError("bad url", str(exc), url=str(url)) from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError("unsupported scheme", f"only http and https are fetched, not {parsed.scheme!r}", url=str(url))
    if not parsed.host:
        raise FetchError("bad url", "no host", url=str(url))
    return parsed


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _origin(url: httpx.URL) -> str:
    """scheme://host:port, the unit robots.txt applies to (RFC 9309 section 2.3)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}:{_port(url)}"


def _host_key(url: httpx.URL) -> str:
    """host:port, the unit politeness limits apply to (http and https of one server share it)."""
    return f"{url.host}:{_port(url)}"


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_snippet(response: httpx.Response, deadline: float) -> str:
    """The start of an error body (e.g. an API's {"error": ...}), for the FetchError detail."""
    data = b""
    try:
        for chunk in response.iter_raw():
            data += chunk
            if len(data) >= _ERROR_SNIPPET_BYTES or time.monotonic() > deadline:
                break
    except (httpx.HTTPError, httpx.StreamError):
        pass
    try:
        data = b"".join(_Decoder.for_header(response.headers.get("content-encoding", ""), "").feed(data))[:_ERROR_SNIPPET_BYTES]
    except (FetchError, zlib.error):
        pass  # an undecodable error body is shown as it came
    return " ".join(data[:_ERROR_SNIPPET_BYTES].decode("utf-8", "replace").split())
