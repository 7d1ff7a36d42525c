"""Turn a video *page* (a YouTube watch URL, a page with a <video>) into one direct media URL.

The fetch stage calls `resolve_media` for a MediaRef whose resolver is "ytdlp", then downloads the
URL it gets back through the guarded `Fetcher`, so size caps and the address guard apply to the
bytes themselves. yt-dlp is used as a library and only to *extract* (download=False).

yt-dlp has its own HTTP stack that knows nothing of the Fetcher, so the same address guard is
built into it: the page host is checked before yt-dlp starts, yt-dlp gets a request handler whose
every connection (extractor requests and each redirect hop) resolves the host, refuses it if any
address is refused, and connects to a checked address; the chosen media URL's host is checked
too. The handler speaks only http(s) and ignores environment proxies.

Failures are values: a Drop(stage="fetch", reason="blocked address" | "ytdlp: <short>").
"""
from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import yt_dlp
from yt_dlp.networking import _urllib  # the handler classes we guard; yt-dlp has no public hook
from yt_dlp.utils import DownloadError, GeoRestrictedError, UnsupportedError

from agents.base import Drop, MediaRef
from agents.fetch import Fetcher, IPNetwork, address_refusal

__all__ = ["resolve_media", "choose_format"]

# The guard replaces these yt-dlp internals; if they move, refuse to run rather than run unguarded.
if not isinstance(getattr(yt_dlp.YoutubeDL, "_request_director", None), functools.cached_property) or not hasattr(
    _urllib.UrllibRH, "_create_instance"
):
    raise RuntimeError("this yt-dlp version changed its request handler internals; the address guard cannot attach")

PREFERRED_MIN_HEIGHT = 360  # enough pixels for the detectors, while staying small to download


class _Blocked(Exception):
    """A host yt-dlp was about to talk to is refused. Not an OSError, so extractors don't swallow it."""


def host_refusal(url: str, allowed: tuple[IPNetwork, ...]) -> tuple[str, str] | None:
    """(reason, detail) when `url` must not be contacted, or None when its host may be.

    Every address the name resolves to must pass: a name with one public and one private
    address is how DNS rebinding looks.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "unsupported scheme", f"only http and https are resolved, not {parts.scheme!r}"
    host = parts.hostname
    if not host:
        return "bad url", "no host"
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        return "ytdlp: host not found", f"cannot resolve {host!r}: {exc}"
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        refusal = address_refusal(ip, allowed)
        if refusal:
            shown = host if host == str(ip) else f"{host} -> {ip}"
            return "blocked address", f"{shown} is {refusal}"
    return None


def _guarded_socket(allowed: tuple[IPNetwork, ...], address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
    """Resolve, check every address, then connect to a checked address (never re-resolve).

    Installed as http.client's connection factory for yt-dlp, so redirect hops and every
    extractor request pass the same guard as the Fetcher, at the moment of connecting.
    """
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"cannot resolve host {host!r}: {exc}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%", 1)[0]) for i in infos))
    for ip in addresses:
        refusal = address_refusal(ip, allowed)
        if refusal:
            raise _Blocked(f"{host if host == str(ip) else f'{host} -> {ip}'} is {refusal}")
    error: OSError | None = None
    for ip in addresses:
        try:
            return socket.create_connection((str(ip), port), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"host {host!r} resolved to no address")


class _GuardedHTTPHandler(_urllib.HTTPHandler):
    """yt-dlp's HTTP handler, with every connection made through `_guarded_socket`."""

    def __init__(self, allowed: tuple[IPNetwork, ...], **kwargs: Any):
        super().__init__(**kwargs)
        self._allowed = allowed

    def _connection(self, http_class, *args: Any, **kwargs: Any):
        connection = http_class(*args, **kwargs)
        connection._create_connection = functools.partial(_guarded_socket, self._allowed)
        return connection

    def http_open(self, req):
        return self.do_open(functools.partial(self._connection, http.client.HTTPConnection), req)

    def https_open(self, req):
        return self.do_open(functools.partial(self._connection, http.client.HTTPSConnection), req, context=self._context)


class _GuardedUrllibRH(_urllib.UrllibRH):
    """yt-dlp's urllib request handler limited to http(s), with guarded connections and no proxy."""

    _SUPPORTED_URL_SCHEMES = ("http", "https")  # no ftp (an unguarded socket), file or data
    allowed: tuple[IPNetwork, ...] = ()
    ca_file: str | None = None  # an extra trusted CA bundle (a TLS-inspecting gateway's), besides the usual ones

    def _create_instance(self, proxies, cookiejar, legacy_ssl_support=None):
        opener = urllib.request.OpenerDirector()
        context = self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        for handler in (
            urllib.request.ProxyHandler({}),  # empty: environment proxies would bypass the guard
            _GuardedHTTPHandler(self.allowed, context=context),
            urllib.request.HTTPCookieProcessor(cookiejar),
            urllib.request.UnknownHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
            _urllib.RedirectHandler(),
        ):
            opener.add_handler(handler)
        opener.addheaders = []  # no urllib default User-Agent; ours comes from http_headers
        return opener


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL that sends every request through `_GuardedUrllibRH` under the policy's networks."""

    def __init__(self, params: dict[str, Any], allowed: tuple[IPNetwork, ...], ca_file: str | None = None):
        self._allowed = allowed  # before super().__init__, in case it already sends a request
        self._ca_file = ca_file
        super().__init__(params)

    @functools.cached_property
    def _request_director(self):
        guarded = type("_GuardedUrllibRH", (_GuardedUrllibRH,), {"allowed": self._allowed, "ca_file": self._ca_file})
        return self.build_request_director([guarded])


def _ytdlp_options(fetcher: Fetcher) -> dict[str, Any]:
    return {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "socket_timeout": fetcher.policy.timeout_s,
        "http_headers": {"User-Agent": fetcher.policy.user_agent},
        "cachedir": False,  # no state on disk between runs (and nothing for a hostile page to poison)
        "cookiefile": None,
        "proxy": "",  # ignore environment proxies: one would bypass the address guard
        "extractor_retries": 0,  # the campaign, not yt-dlp, decides about retrying a source
        "logger": _SilentLogger(),
    }


class _SilentLogger:
    """yt-dlp prints errors even when quiet; they come back to us as exceptions instead."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def resolve_media(ref: MediaRef, fetcher: Fetcher) -> MediaRef | Drop:
    """A direct media MediaRef for a resolver="ytdlp" page, or a Drop(stage="fetch") saying why not.

    A ref without a resolver is already direct and comes back unchanged.
    """
    if not isinstance(ref, MediaRef):
        raise TypeError(f"resolve_media takes an agents.base.MediaRef, got {type(ref).__name__}")
    if ref.resolver is None:
        return ref
    if ref.resolver != "ytdlp":
        raise ValueError(f"MediaRef.resolver must be None or 'ytdlp', got {ref.resolver!r}")

    allowed = fetcher.policy.networks()
    refusal = host_refusal(ref.url, allowed)
    if refusal:
        return Drop(stage="fetch", reason=refusal[0], subject=ref.url, detail=refusal[1])

    try:
        with _GuardedYoutubeDL(_ytdlp_options(fetcher), allowed) as ydl:
            info = ydl.extract_info(ref.url, download=False)
    except _Blocked as exc:
        return Drop(stage="fetch", reason="blocked address", subject=ref.url, detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - yt-dlp extractors raise anything; it must not stop the stage
        blocked = _blocked_cause(exc)
        if blocked is not None:
            return Drop(stage="fetch", reason="blocked address", subject=ref.url, detail=str(blocked))
        return Drop(stage="fetch", reason=_short_reason(exc), subject=ref.url,
                    detail=f"{type(exc).__name__}: {_one_line(exc)}")

    video = _first_video(info)
    if video is None:
        return Drop(stage="fetch", reason="ytdlp: no video", subject=ref.url, detail="the page yielded no video entry")
    chosen = choose_format(video, fetcher.policy.max_bytes)
    if chosen is None:
        return Drop(stage="fetch", reason="ytdlp: no usable format", subject=ref.url,
                    detail=f"none of {len(video.get('formats') or [video])} formats is a progressive http(s) video under the size cap")
    refusal = host_refusal(chosen["url"], allowed)
    if refusal:
        return Drop(stage="fetch", reason=refusal[0], subject=ref.url, detail=f"media URL: {refusal[1]}")
    return MediaRef(url=chosen["url"], kind="video", position=ref.position, resolver=None)


def choose_format(info: dict[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """The one format to download from a yt-dlp info dict, or None.

    Only progressive http(s) files qualify (one GET gives a playable file; HLS/DASH would need
    yt-dlp to download). Preference, in order: audio and video together (known), then unknown
    codecs (a plain <video src> declares none), then video-only; mp4 before other containers;
    the smallest height >= 360, else the largest below, else unknown height. A format whose
    known size passes the fetch cap is skipped, as the download would be cut anyway.
    """
    formats = info.get("formats") or [info]
    candidates = [f for f in formats if isinstance(f, dict) and _usable(f, max_bytes)]
    if not candidates:
        return None
    return min(candidates, key=_preference)


def _usable(fmt: dict[str, Any], max_bytes: int) -> bool:
    url = fmt.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        return False
    if fmt.get("protocol") not in (None, "http", "https"):
        return False  # m3u8, dash, rtmp...: not one file
    if fmt.get("vcodec") == "none":
        return False  # audio only
    size = fmt.get("filesize") or fmt.get("filesize_approx")
    return not (isinstance(size, (int, float)) and size > max_bytes)


def _preference(fmt: dict[str, Any]) -> tuple:
    vcodec, acodec = fmt.get("vcodec"), fmt.get("acodec")
    if acodec == "none":
        streams = 2
    elif vcodec is None or acodec is None:
        streams = 1
    else:
        streams = 0
    container = 0 if fmt.get("ext") == "mp4" else 1
    height = fmt.get("height")
    if isinstance(height, int) and height >= PREFERRED_MIN_HEIGHT:
        size = (0, height)
    elif isinstance(height, int):
        size = (1, -height)
    else:
        size = (2, 0)
    return (streams, container, size)


def _first_video(info: Any) -> dict[str, Any] | None:
    """The info dict itself, or a playlist's first entry (a page with several videos)."""
    if not isinstance(info, dict):
        return None
    if info.get("_type") in ("playlist", "multi_video"):
        for entry in info.get("entries") or []:
            found = _first_video(entry)
            if found is not None:
                return found
        return None
    return info if (info.get("formats") or info.get("url")) else None


def _causes(exc: BaseException | None):
    """`exc` and what it wraps: yt-dlp nests errors in .cause, .exc_info and .unexpected_errors."""
    pending, seen = [exc], 0
    while pending and seen < 20:
        current = pending.pop(0)
        if current is None:
            continue
        seen += 1
        yield current
        exc_info = getattr(current, "exc_info", None)
        pending.extend([
            getattr(current, "cause", None) if isinstance(getattr(current, "cause", None), BaseException) else None,
            exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None,
            *(getattr(current, "unexpected_errors", None) or []),
            current.__cause__,
            current.__context__,
        ])


def _blocked_cause(exc: BaseException) -> _Blocked | None:
    return next((c for c in _causes(exc) if isinstance(c, _Blocked)), None)


def _short_reason(error: BaseException) -> str:
    """A short, stable reason for the run report, from the errors yt-dlp wrapped."""
    causes = list(_causes(error))
    if any(isinstance(c, _Blocked) for c in causes):
        return "blocked address"
    if any(isinstance(c, UnsupportedError) for c in causes):
        return "ytdlp: unsupported url"
    if any(isinstance(c, GeoRestrictedError) for c in causes):
        return "ytdlp: geo restricted"
    text = str(error).lower()
    # Extractors announce login walls in words (raise_login_required), with a cookies hint.
    if any(words in text for words in ("registered users", "login required", "log in", "sign in", "--cookies")):
        return "ytdlp: login required"
    for cause in causes:
        status = getattr(cause, "status", None)
        if isinstance(status, int) and not isinstance(cause, DownloadError):
            return f"ytdlp: HTTP {status}"
    if "timed out" in text:
        return "ytdlp: timeout"
    if "unavailable" in text or "private video" in text:
        return "ytdlp: video unavailable"
    return "ytdlp: extraction failed"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
