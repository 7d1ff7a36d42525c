"""A loopback HTTP server that replays recorded platform responses, for offline agent tests.

Routes are keyed by path (the query string is handed to the route, so a route can page by
`max_id`, `cursor`, `after`...). A route is either a fixed answer or a function of the request:

    with ReplayServer() as srv:
        srv.route("/api/v1/timelines/tag/hoot", json_body=statuses)
        srv.route("/media/a.jpg", body=jpeg_bytes, content_type="image/jpeg")
        srv.route("/search", handler=lambda req: Answer(json_body=page_for(req.query)))
        agent = MastodonAgent(srv.base_url, ...)

Every request is logged in `srv.requests` (path, query, headers) so tests can assert on the
paging parameters and headers an agent sent. `{BASE}` inside a text or JSON body is replaced by
the server's base URL, so recorded media URLs can be pointed back at loopback.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Answer:
    status: int = 200
    body: bytes | str | None = None
    json_body: Any = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Answer]


class ReplayServer:
    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, path: str, *, handler: Handler | None = None, **answer: Any) -> None:
        """Answer `path` with `handler(request)`, or with the fixed Answer(**answer)."""
        if handler is None:
            fixed = Answer(**answer)
            handler = lambda _request: fixed  # noqa: E731
        self._routes[path] = handler

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> "ReplayServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _render(self, answer: Answer) -> tuple[bytes, str]:
        if answer.json_body is not None:
            text = json.dumps(answer.json_body).replace("{BASE}", self.base_url)
            return text.encode(), answer.content_type or "application/json; charset=utf-8"
        body = answer.body if answer.body is not None else b""
        if isinstance(body, str):
            body = body.replace("{BASE}", self.base_url).encode("utf-8")
        return body, answer.content_type or "application/octet-stream"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                request = Request(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()})
                replay.requests.append(request)
                handler = replay._routes.get(parts.path)
                answer = handler(request) if handler else Answer(status=404, body=b"not found", content_type="text/plain")
                body, content_type = replay._render(answer)
                self.send_response(answer.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # keep test output quiet

        return _Handler
