"""The fetcher's address guard for Chromium (issue 16, finding 1): every navigation, redirect,
iframe, image, fetch() and WebSocket of a page goes through a loopback proxy that resolves the host,
refuses it if any address is one `agents.fetch.address_refusal` refuses, and otherwise connects to
the checked address itself (the browser never resolves or connects on its own).

    guard = GuardedProxy(allow_networks=("127.0.0.1/32",)); guard.start()
    chromium.launch(proxy=guard.playwright_proxy())   # "<-loopback>": no implicit localhost bypass
    guard.refusals()                                   # [(url or host:port, why)], in order

Why a proxy and not Playwright route interception: Playwright does not route the requests a
redirect leads to, so a page on an allowed address could 302 the browser to an internal one.
Each client connection is tied to the one upstream address checked for its first request; a
second request on it can only ever reach that same checked address.
"""
from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading
from typing import Iterable
from urllib.parse import urlsplit

from agents.fetch import IPNetwork, address_refusal

MAX_HEAD_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0


class Refused(Exception):
    """The address guard refused a host; the message says why."""


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    if isinstance(cidrs, str):
        raise ValueError(f"allow_networks must be a list of CIDRs, got the string {cidrs!r}")
    nets = []
    for entry in cidrs:
        try:
            nets.append(ipaddress.ip_network(str(entry), strict=False))
        except ValueError as exc:
            raise ValueError(f"allow_networks entry {entry!r} is not a CIDR: {exc}") from None
    return tuple(nets)


def checked_addresses(host: str, port: int, allowed: tuple[IPNetwork, ...]) -> list[str]:
    """The host's addresses, all allowed; Refused if any is not (how rebinding looks) or none."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve host {host!r}: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        refusal = address_refusal(ip, allowed)
        if refusal:
            shown = host if host == str(ip) else f"{host} -> {ip}"
            raise Refused(f"blocked address: {shown} is {refusal}")
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise Refused(f"host {host!r} resolved to no address")
    return addresses


def url_refusal(url: str, allowed: tuple[IPNetwork, ...]) -> str | None:
    """Why the guard would refuse `url` (scheme or address), or None when it may be opened."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url[:200]!r}"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        checked_addresses(parts.hostname, port, allowed)
    except Refused as exc:
        return str(exc)
    except ValueError as exc:  # a bad port
        return f"bad URL {url[:200]!r}: {exc}"
    return None


def _connect(host: str, port: int, allowed: tuple[IPNetwork, ...]) -> socket.socket:
    last: OSError | None = None
    for ip in checked_addresses(host, port, allowed):
        try:
            return socket.create_connection((ip, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            last = exc
    raise last or OSError(f"cannot connect to {host}:{port}")


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""

    def one_way(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    back = threading.Thread(target=one_way, args=(b, a), daemon=True)
    back.start()
    one_way(a, b)
    back.join(IDLE_TIMEOUT_S)


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        client = self.request
        client.settimeout(IDLE_TIMEOUT_S)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
                if len(head) > MAX_HEAD_BYTES:
                    return self._refuse(client, "?", "request head too large")
        except OSError:
            return
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            return self._refuse(client, lines[0][:200], "malformed request line")
        if method.upper() == "CONNECT":
            host, _, port_text = target.rpartition(":")
            shown = target
            try:
                upstream = _connect(host, int(port_text), self.server.allowed)
            except (Refused, ValueError) as exc:
                return self._refuse(client, shown, str(exc))
            except OSError as exc:
                return self._unreachable(client, exc)
            client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            with upstream:
                _pipe(client, upstream)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            return self._refuse(client, target, "only absolute http:// requests and CONNECT are proxied")
        try:
            upstream = _connect(parts.hostname, parts.port or 80, self.server.allowed)
        except (Refused, ValueError) as exc:
            return self._refuse(client, target, str(exc))
        except OSError as exc:
            return self._unreachable(client, exc)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-connection:", "connection:"))]
        out = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"]) + "\r\n\r\n"
        with upstream:
            upstream.sendall(out.encode("latin-1") + rest)
            _pipe(client, upstream)

    def _unreachable(self, client: socket.socket, exc: OSError) -> None:
        """An allowed address that did not answer: a 502 the browser shows, not a refusal."""
        body = f"connection failed: {exc.strerror or exc}".encode("utf-8", "replace")
        try:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"X-Deepwatch-Guard: unreachable\r\nConnection: close\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass

    def _refuse(self, client: socket.socket, what: str, why: str) -> None:
        self.server.record(what, why)
        body = f"refused by deepwatch's address guard: {why}".encode("utf-8", "replace")
        try:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"X-Deepwatch-Guard: refused\r\nConnection: close\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, allowed: tuple[IPNetwork, ...]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.allowed = allowed
        self._refused: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, what: str, why: str) -> None:
        with self._lock:
            self._refused.append((what, why))


class GuardedProxy:
    """A loopback HTTP proxy applying the address guard; one per browser."""

    def __init__(self, allow_networks: Iterable[str] = ()):
        self.allowed = parse_networks(allow_networks)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "GuardedProxy":
        if self._server is None:
            self._server = _Server(self.allowed)
            self._thread = threading.Thread(target=self._server.serve_forever, name="deepwatch-browser-guard",
                                            daemon=True)
            self._thread.start()
        return self

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("the guard proxy is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def playwright_proxy(self) -> dict[str, str]:
        # "<-loopback>" removes Chromium's implicit bypass for localhost: loopback goes through the
        # guard like everything else (and is refused unless allowed).
        return {"server": self.address, "bypass": "<-loopback>"}

    def refusals(self) -> list[tuple[str, str]]:
        if self._server is None:
            return []
        with self._server._lock:
            return list(self._server._refused)

    def mark(self) -> int:
        """A position in the refusal list, to ask later what was refused since."""
        return len(self.refusals())

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
