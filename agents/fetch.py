"""The shared HTTP fetcher: polite, bounded, and safe to point at URLs that strangers wrote.

Media URLs come from posts, i.e. from anyone, so every connection goes through an address guard
(no private, loopback, link-local, multicast, reserved or cloud-metadata targets unless the
operator allows a network). The guard sits in the connection layer itself, so the address that
was checked is the address that gets connected to (a hostname that re-resolves differently between
a check and the connect cannot slip past), and it runs again for every redirect hop because
redirects are followed by hand.

Failures are values: `get_json` raises `FetchError(reason)` and `fetch_media` returns a
`Drop(stage="fetch", reason=...)`, with short stable reasons that the run report counts.
"""
from __future__ import annotations

import ipaddress
import json
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from collections.abc import Iterable
from typing import Any, NamedTuple, Union

import certifi
import httpcore
import httpx

from agents.base import Drop, MediaRef
from agents.errors import FetchError

__all__ = [
    "DEFAULT_CONTACT_URL",
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


def default_user_agent(contact_url: str = DEFAULT_CONTACT_URL) -> str:
    """A User-Agent that names the crawler and where a platform operator can reach its owners."""
    return f"deepwatch/0.1 (+{contact_url}; election deepfake monitoring)"


@dataclass(frozen=True)
class FetchPolicy:
    """How politely and how far the fetcher goes; validated on construction."""

    user_agent: str = field(default_factory=default_user_agent)
    timeout_s: float = 30.0  # connect and per-read timeout
    total_timeout_s: float = 600.0  # wall clock for one fetch, all hops and retries (slow-drip guard)
    max_bytes: int = 200_000_000  # media body cap; video-sized, bodies are streamed and cut here
    max_json_bytes: int = 20_000_000  # API answers are small; a huge one is a broken or hostile server
    max_redirects: int = 5
    allow_networks: tuple[str, ...] = ()  # CIDRs fetched even though private/loopback (e.g. a demo)
    retries: int = 2  # extra attempts on connect errors, 429 and 5xx
    backoff_s: float = 0.5  # first retry delay; doubles each attempt, with jitter
    max_retry_after_s: float = 30.0  # a server's Retry-After is honoured up to this

    def __post_init__(self) -> None:
        for name in ("timeout_s", "total_timeout_s", "max_retry_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FetchPolicy.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_bytes", "max_json_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"FetchPolicy.{name} must be a positive integer, got {value!r}")
        for name in ("max_redirects", "retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"FetchPolicy.{name} must be an integer >= 0, got {value!r}")
        if self.backoff_s < 0:
            raise ValueError(f"FetchPolicy.backoff_s must be >= 0, got {self.backoff_s!r}")
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


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to a checked address (never re-resolves)."""

    def __init__(self, allowed: tuple[IPNetwork, ...]):
        self._allowed = allowed
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
                return self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
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

    def __init__(self, allowed: tuple[IPNetwork, ...], limits: httpx.Limits):
        super().__init__(trust_env=False, limits=limits)
        if not hasattr(self, "_pool"):  # httpx internals moved: fail loudly, never unguarded
            raise RuntimeError("this httpx version has no HTTPTransport._pool; the address guard cannot attach")
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allowed),
        )


class Fetched(NamedTuple):
    """Bytes that came back; unpacks as (data, declared_mime, final_url)."""

    data: bytes
    declared_mime: str  # the Content-Type the server declared, without parameters; not trusted
    final_url: str  # after redirects


FetchResult = Union[Fetched, Drop]


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
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30)
        self._client = httpx.Client(
            transport=_GuardedTransport(self.policy.networks(), limits),
            headers={"User-Agent": self.policy.user_agent},
            timeout=httpx.Timeout(self.policy.timeout_s),
            follow_redirects=False,  # by hand, so every hop is re-checked and counted
            trust_env=False,  # an environment proxy would bypass the address guard
        )

    # -- public API ---------------------------------------------------------------------------

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON document; raises FetchError("HTTP 404" / "invalid JSON" / "timeout" / ...)."""
        body, _, final_url = self._fetch(url, params, self.policy.max_json_bytes, "application/json")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FetchError("invalid JSON", f"{exc}; body starts {body[:60]!r}", url=final_url) from None

    def get_document(self, url: str, params: dict[str, Any] | None = None, accept: str = "text/html,application/xml;q=0.9,*/*;q=0.5") -> Fetched:
        """GET a text document (HTML page, RSS/Atom feed) under the JSON size cap; raises FetchError.

        Returns the raw bytes: feed and HTML parsers sniff the encoding better than a header does.
        """
        return self._fetch(url, params, self.policy.max_json_bytes, accept)

    def fetch_media(self, ref: MediaRef) -> FetchResult:
        """The bytes behind a media reference, or a Drop(stage="fetch") saying why not."""
        if not isinstance(ref, MediaRef):
            raise TypeError(f"fetch_media takes an agents.base.MediaRef, got {type(ref).__name__}")
        accept = "video/*,*/*;q=0.5" if ref.kind == "video" else "image/*,*/*;q=0.5"
        try:
            result = self._fetch(ref.url, None, self.policy.max_bytes, accept)
        except FetchError as exc:
            detail = exc.detail
            if exc.url and exc.url != ref.url:
                detail = f"{detail} (at {exc.url})" if detail else f"at {exc.url}"
            return Drop(stage="fetch", reason=exc.reason, subject=ref.url, detail=detail)
        if not result.data:
            return Drop(stage="fetch", reason="empty body", subject=ref.url, detail=f"no bytes from {result.final_url}")
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _fetch(self, url: str, params: dict[str, Any] | None, max_bytes: int, accept: str) -> Fetched:
        current = _checked_url(url)
        deadline = time.monotonic() + self.policy.total_timeout_s
        for hop in range(self.policy.max_redirects + 1):
            outcome = self._with_retries(current, params if hop == 0 else None, max_bytes, accept, deadline)
            if isinstance(outcome, Fetched):
                return outcome
            current = _checked_url(outcome.from_url.join(outcome.location))
        raise FetchError(
            "too many redirects", f"still redirected after {self.policy.max_redirects} hops", url=url
        )

    def _with_retries(self, url: httpx.URL, params, max_bytes: int, accept: str, deadline: float):
        attempt = 0
        while True:
            try:
                return self._once(url, params, max_bytes, accept, deadline)
            except _Retryable as retry:
                if attempt >= self.policy.retries:
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

    def _once(self, url: httpx.URL, params, max_bytes: int, accept: str, deadline: float):
        request = self._client.build_request("GET", url, params=params, headers={"Accept": accept})
        shown = str(request.url)
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
        try:
            return self._read(response, max_bytes, deadline)
        finally:
            response.close()

    def _read(self, response: httpx.Response, max_bytes: int, deadline: float):
        status = response.status_code
        shown = str(response.url)
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise FetchError(f"HTTP {status}", "redirect without a Location header", url=shown)
            return _Redirect(location, response.url)
        if status == 429 or status >= 500:
            retry_after = _parse_retry_after(response.headers.get("retry-after"))
            raise _Retryable(FetchError(f"HTTP {status}", url=shown), retry_after)
        if not 200 <= status < 300:
            raise FetchError(f"HTTP {status}", _error_snippet(response, deadline), url=shown)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError("over size cap", f"Content-Length {declared} > cap {max_bytes}", url=shown)
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError("over size cap", f"body passed the cap of {max_bytes} bytes", url=shown)
                if time.monotonic() > deadline:
                    raise FetchError(
                        "timeout", f"body incomplete after {self.policy.total_timeout_s}s ({total} bytes)", url=shown
                    )
                chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"reading body: {type(exc).__name__}", url=shown) from None
        except httpx.DecodingError as exc:
            raise FetchError("bad encoding", str(exc), url=shown) from None
        except httpx.TransportError as exc:
            raise FetchError("connection failed", f"reading body: {type(exc).__name__}: {exc}", url=shown) from None
        mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return Fetched(b"".join(chunks), mime or "application/octet-stream", shown)


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
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= _ERROR_SNIPPET_BYTES or time.monotonic() > deadline:
                break
    except (httpx.HTTPError, httpx.StreamError):
        pass
    return " ".join(data[:_ERROR_SNIPPET_BYTES].decode("utf-8", "replace").split())
