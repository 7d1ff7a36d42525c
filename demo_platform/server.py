"""HTTP server for the demo world: the JSON API, media bytes, and JavaScript-rendered pages.

Routes (a contract the crawler agents code against):
  GET /api/v1/search?q=TERM&cursor=C&limit=N     {"posts": [...], "next_cursor": str|null}
  GET /api/v1/posts/ID                            one post
  GET /api/v1/accounts/HANDLE/posts?cursor=&limit= an account's feed, same shape as search
  GET /media/NAME                                 bytes, declared Content-Type, ETag, ranges
  GET /search?q=TERM, /tag/TAG, /@HANDLE, /p/ID   HTML shells; posts are rendered by JS only
  GET /static/app.js, /static/style.css, /robots.txt, /

The server runs in a background thread (`ThreadingHTTPServer`, one thread per request).
"""
from __future__ import annotations

import html
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, quote, unquote, urlsplit

from demo_platform.api import ApiError, DemoApi
from demo_platform.world import World

_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
_STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

_PAGE = """<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Demo Social</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body data-mode="{mode}">
<header class="top"><a class="brand" href="/">Demo Social</a>
<form class="searchbox" action="/search" method="get"><input name="q" placeholder="검색 / search" aria-label="search"></form>
</header>
<main><h1 id="feed-title"></h1><div id="feed" aria-live="polite"></div><div id="status" role="status"></div></main>
<script src="/static/app.js"></script>
</body>
</html>
"""


def _index_html(world: World) -> str:
    links = "".join(
        f'<li><a href="/search?q={quote(term, safe="")}">{html.escape(term)}</a></li>'
        for term in world.search_terms
    )
    accounts = "".join(
        f'<li><a href="/@{html.escape(a.handle, quote=True)}">{html.escape(a.display_name)} '
        f'<span class="handle">@{html.escape(a.handle)}</span></a></li>'
        for a in world.accounts.values()
    )
    return (
        '<!DOCTYPE html><html lang="ko"><head><meta charset="utf-8"><title>Demo Social</title>'
        '<link rel="stylesheet" href="/static/style.css"></head><body data-mode="index">'
        '<header class="top"><a class="brand" href="/">Demo Social</a></header><main>'
        "<h1>Demo Social</h1><p>A generated social network for testing deepwatch. "
        "Election day: 2026-06-03.</p>"
        f"<h2>Searches</h2><ul>{links}</ul><h2>Accounts</h2><ul>{accounts}</ul></main></body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    server_version = "DemoSocial/1.0"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers (~40 ms per response on Linux loopback keep-alive).
    disable_nagle_algorithm = True

    # -- plumbing --------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        if self.server.verbose:
            super().log_message(format, *args)

    def _base(self) -> str:
        host = self.headers.get("Host", "")
        if not _HOST_HEADER.match(host):  # never echo a malformed Host into URLs
            h, p = self.server.server_address[:2]
            host = f"[{h}]:{p}" if ":" in str(h) else f"{h}:{p}"
        return f"http://{host}"

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: object) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", {"Cache-Control": "no-store"})

    def _html(self, status: int, text: str) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            self._route(path, query)
        except ApiError as exc:
            self._json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer

    # -- routes ----------------------------------------------------------------------------
    def _route(self, path: str, query: dict[str, str]) -> None:
        api: DemoApi = self.server.api
        world = api.world
        if path == "/api/v1/search":
            page = api.search(query.get("q"), query.get("cursor"), query.get("limit"))
            return self._feed(page)
        if m := re.fullmatch(r"/api/v1/posts/([^/]+)", path):
            return self._json(200, api.post_json(api.get_post(m.group(1)), self._base()))
        if m := re.fullmatch(r"/api/v1/accounts/([^/]+)/posts", path):
            return self._feed(api.account_feed(m.group(1), query.get("cursor"), query.get("limit")))
        if path.startswith("/api/"):
            raise ApiError(404, f"no API route {path}")
        if path.startswith("/media/"):
            return self._media(path)
        if m := re.fullmatch(r"/static/([a-z.]+)", path):
            return self._static(m.group(1))
        if path == "/robots.txt":
            return self._send(200, b"User-agent: *\nAllow: /\n", "text/plain; charset=utf-8")
        if path == "/":
            return self._html(200, _index_html(world))
        if path == "/search":
            return self._html(200, _PAGE.format(title="Search", mode="search"))
        if re.fullmatch(r"/tag/[^/]+", path):
            return self._html(200, _PAGE.format(title="Tag", mode="tag"))
        if m := re.fullmatch(r"/@([^/]+)", path):
            status = 200 if m.group(1) in world.accounts else 404
            return self._html(status, _PAGE.format(title="Account", mode="account"))
        if m := re.fullmatch(r"/p/([^/]+)", path):
            status = 200 if world.post(m.group(1)) else 404
            return self._html(status, _PAGE.format(title="Post", mode="post"))
        self._html(404, "<!DOCTYPE html><title>Not found</title><h1>Not found</h1>")

    def _feed(self, page) -> None:
        base = self._base()
        self._json(200, {"posts": [self.server.api.post_json(p, base) for p in page.posts],
                         "next_cursor": page.next_cursor})

    def _static(self, name: str) -> None:
        if name not in _STATIC_TYPES:
            return self._html(404, "<!DOCTYPE html><title>Not found</title><h1>Not found</h1>")
        body = resources.files("demo_platform").joinpath("static", name).read_bytes()
        self._send(200, body, _STATIC_TYPES[name], {"Cache-Control": "no-cache"})

    def _media(self, path: str) -> None:
        blob = self.server.api.world.media.get(path)
        if blob is None:
            return self._send(404, b"not found\n", "text/plain; charset=utf-8")
        etag = blob.etag
        common = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=3600"}
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = blob.data
        rng = self.headers.get("Range")
        if rng and (m := _RANGE.match(rng.strip())) and (m.group(1) or m.group(2)):
            # One byte range, as browsers ask for when they play or seek a video.
            size = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or start > end:
                return self._send(416, b"", blob.content_type, {**common, "Content-Range": f"bytes */{size}"})
            return self._send(206, data[start: end + 1], blob.content_type,
                              {**common, "Content-Range": f"bytes {start}-{end}/{size}"})
        self._send(200, data, blob.content_type, common)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, api: DemoApi, verbose: bool):
        self.api = api
        self.verbose = verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class DemoPlatform:
    """Serves a `World` over HTTP from a background thread.

    `start()` returns the base URL; `stop()` shuts the server down. As a context manager it
    starts on enter (if not yet started) and stops on exit.
    """

    def __init__(self, world: World, *, verbose: bool = False):
        self.world = world
        self.verbose = verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError(f"demo platform already running at {self.base_url}")
        server = _Server((host, port), DemoApi(self.world), self.verbose)
        bound_host, bound_port = server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"demo-platform:{bound_port}", daemon=True)
        self._thread.start()
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    @property
    def api(self) -> DemoApi:
        if self._server is None:
            raise RuntimeError("the demo platform is not running")
        return self._server.api

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread, self.base_url = None, None, None

    def __enter__(self) -> "DemoPlatform":
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
