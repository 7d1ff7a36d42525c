"""A tiny stand-in for the demo platform, for the crawler tests.

It speaks the same contract as `demo_platform/server.py` (JSON search API with opaque cursors,
media bytes with declared types, JS-only HTML pages with infinite scroll) on a handful of posts,
so the agent tests don't wait on the real platform. It also serves hostile endpoints under
`/_test/` (redirect loops, endless and slow-drip bodies, a flaky 503) for the fetcher tests.

Run in a thread on 127.0.0.1 with a free port: `with FakePlatform() as fp: fp.base_url`.
"""
from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image, ImageDraw

HANDLER_MAX_S = 30.0  # hostile endpoints give up after this even if nobody stops them


def _image(kind: str, colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    draw.ellipse((40, 30, 180, 170), fill=(255 - colour[0], 200, 90))
    draw.rectangle((200, 120, 300, 220), fill=(20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format=kind)
    return buf.getvalue()


def _tiny_mp4() -> bytes:
    """A real 4-frame MPEG-4 clip, so the <video> element gets something playable."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.time_base = Fraction(1, 10)
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _media() -> dict[str, tuple[bytes, str]]:
    return {
        "rally.png": (_image("PNG", (30, 90, 160)), "image/png"),
        "debate.jpg": (_image("JPEG", (160, 60, 40)), "image/jpeg"),
        "crowd.jpg": (_image("JPEG", (60, 140, 60)), "image/jpeg"),
        # Broken on purpose: an HTML page that claims to be a JPEG.
        "broken.jpg": (b"<!doctype html><html><body>Not found</body></html>", "image/jpeg"),
        "clip.mp4": (_tiny_mp4(), "video/mp4"),
    }


# (id, handle, display name, text, created_at, hashtags, lang, media names)
_POSTS = [
    ("p0001", "minjun_kim", "김민준", "선거 토론회 현장 사진입니다", "2026-05-20T09:15:00Z", ["선거2026"], "ko", ["rally.png"]),
    ("p0002", "seoyeon_lee", "이서연", "이번 선거는 정말 중요합니다", "2026-05-21T01:00:00Z", ["선거2026", "debate"], "ko", ["debate.jpg", "crowd.jpg"]),
    ("p0003", "news_daily", "News Daily", "Election night coverage starts soon", "2026-05-22T12:30:00Z", ["election2026"], "en", []),
    ("p0004", "minjun_kim", "김민준", "선거 유세 영상", "2026-05-23T18:45:00+09:00", ["선거2026"], "ko", ["clip.mp4"]),
    ("p0005", "citizen_park", "박시민", "투표소 앞 긴 줄, 선거 열기", "2026-05-24T03:10:00Z", [], "ko", ["crowd.jpg"]),
    ("p0006", "fact_check", "Fact Check", "This election image is doctored", "2026-05-25T07:00:00Z", ["election2026", "선거2026"], "en", ["broken.jpg"]),
    ("p0007", "seoyeon_lee", "이서연", "선거 D-7, 마지막 주말 일정", "2026-05-27T10:00:00Z", ["선거2026"], "ko", []),
    ("p0008", "citizen_park", "박시민", "선거 전날 밤", "2026-06-02T14:00:00Z", ["선거2026"], "ko", ["rally.png"]),
    ("p0009", "cook_kim", "김요리", "오늘의 김치찌개 레시피", "2026-05-26T11:00:00Z", ["food"], "ko", ["debate.jpg"]),
    ("p0010", "news_daily", "News Daily", "Weather: sunny weekend ahead", "2026-05-28T06:00:00Z", [], "en", []),
]

# Records that break the contract in different ways; reachable only by searching "garbage".
_BAD_RECORDS: list[object] = [
    {"id": "p9001", "url": "/p/p9001", "account": {"handle": "x"}, "text": "garbage time",
     "created_at": "yesterday", "hashtags": [], "lang": "en", "media": []},
    {"url": "/p/p9002", "account": {"handle": "x"}, "text": "garbage no id",
     "created_at": "2026-05-20T09:15:00Z", "hashtags": [], "media": []},
    "garbage, not an object",
    {"id": "p9003", "url": "/p/p9003", "account": {"handle": "x"}, "text": "garbage bad media kind",
     "created_at": "2026-05-20T09:15:00Z", "hashtags": ["#garbage"], "lang": "en",
     "media": [{"url": "/media/rally.png", "type": "hologram", "mime": "image/png"},
               {"url": "/media/crowd.jpg", "type": "image", "mime": "image/jpeg"}]},
]


_PAGE = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font-family: sans-serif; margin: 0 auto; max-width: 720px; }}
 article.post {{ min-height: 420px; border: 1px solid #ccc; margin: 12px; padding: 12px; }}
 img.media, video.media {{ width: 240px; height: 180px; display: block; margin: 4px 0; }}
</style></head>
<body><h1>{heading}</h1><main id="feed"></main>
<script>
const API = {api};
const SINGLE = {single};
const feed = document.getElementById("feed");
let cursor = null, loading = false, done = false;
function child(parent, tag, cls, text) {{
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;  // post text is untrusted: never innerHTML
  parent.appendChild(el);
  return el;
}}
function render(p) {{
  const a = document.createElement("article");
  a.className = "post"; a.dataset.postId = p.id; a.lang = p.lang || "";
  child(a, "a", "permalink", "link").setAttribute("href", "/p/" + encodeURIComponent(p.id));
  child(a, "span", "account", "@" + p.account.handle).dataset.handle = p.account.handle;
  child(a, "time", "", p.created_at).setAttribute("datetime", p.created_at);
  child(a, "div", "text", p.text);
  for (const h of p.hashtags) child(a, "a", "hashtag", "#" + h).setAttribute("href", "/tag/" + encodeURIComponent(h));
  for (const m of p.media) {{
    // Relative src on purpose: the crawler must resolve it.
    const el = child(a, m.type === "video" ? "video" : "img", "media");
    el.setAttribute("src", new URL(m.url).pathname);
  }}
  return a;
}}
function finish() {{
  done = true;
  child(document.body, "div", "", "end of feed").id = "end-of-feed";
}}
async function loadMore() {{
  if (loading || done) return;
  loading = true;
  if (SINGLE) {{
    const r = await fetch("/api/v1/posts/" + encodeURIComponent(SINGLE));
    if (r.ok) feed.appendChild(render(await r.json())); else child(feed, "p", "missing", "Post not found");
    loading = false; finish(); return;
  }}
  const url = API + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
  const data = await (await fetch(url)).json();
  await new Promise(ok => setTimeout(ok, 100));  // a network-ish pause, like a real feed
  for (const p of data.posts) feed.appendChild(render(p));
  cursor = data.next_cursor;
  loading = false;
  if (!cursor) finish();
}}
window.addEventListener("scroll", () => {{
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 300) loadMore();
}});
loadMore();
</script></body></html>
"""


class FakePlatform:
    def __init__(self, page_size: int = 3):
        self.page_size = page_size
        self.media = _media()
        self.hits: Counter[str] = Counter()  # request path+query -> count, for retry tests
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        platform = self

        class Handler(_Handler):
            fake = platform

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakeplatform", daemon=True)
        self._thread.start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakePlatform":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data ---------------------------------------------------------------------------------

    def post_json(self, row: tuple, base: str) -> dict:
        pid, handle, name, text, created, tags, lang, media = row
        return {
            "id": pid,
            "url": f"{base}/p/{pid}",
            "account": {"handle": handle, "display_name": name},
            "text": text,
            "created_at": created,
            "hashtags": list(tags),
            "lang": lang,
            "media": [
                {"url": f"{base}/media/{m}", "type": "video" if m.endswith(".mp4") else "image",
                 "mime": self.media[m][1]}
                for m in media
            ],
        }

    def search(self, term: str) -> list[tuple]:
        """Posts matching a term, newest first: a hashtag match, or a word of the text."""
        needle = term.strip().lower()
        tag = needle.lstrip("#")
        hits = []
        for row in _POSTS:
            tags = [t.lower() for t in row[5]]
            if tag in tags or (not needle.startswith("#") and needle in row[3].lower()):
                hits.append(row)
        return sorted(hits, key=lambda r: _sort_key(r[4]), reverse=True)


def _sort_key(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class _Handler(BaseHTTPRequestHandler):
    fake: FakePlatform
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive responses would wait ~40 ms on a delayed ACK

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    # -- helpers ------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: object) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _stream_forever(self, chunk: bytes, every_s: float) -> None:
        """Write `chunk` until the client leaves, the fake stops, or HANDLER_MAX_S passes."""
        end = time.monotonic() + HANDLER_MAX_S
        try:
            while time.monotonic() < end and not self.fake._stop.is_set():
                self.wfile.write(chunk)
                self.wfile.flush()
                if every_s:
                    time.sleep(every_s)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    # -- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.fake.hits[self.path] += 1
        if path.startswith("/_test/"):
            return self._hostile(path, query)
        if path == "/api/v1/search":
            return self._api_search(query)
        if path.startswith("/api/v1/posts/"):
            pid = path.rsplit("/", 1)[1]
            row = next((r for r in _POSTS if r[0] == pid), None)
            if row is None:
                return self._json(404, {"error": f"no post {pid}"})
            return self._json(200, self.fake.post_json(row, self._base()))
        if path.startswith("/media/"):
            item = self.fake.media.get(path[len("/media/"):])
            if item is None:
                return self._send(404, b"no such media", "text/plain")
            return self._send(200, item[0], item[1])
        if path == "/search":
            term = query.get("q", [""])[0]
            return self._page(f"Search: {term}", f"/api/v1/search?q={quote(term)}", None)
        if path.startswith("/tag/"):
            tag = path[len("/tag/"):]
            return self._page(f"#{tag}", f"/api/v1/search?q={quote('#' + tag)}", None)
        if path.startswith("/p/"):
            return self._page("Post", None, path[len("/p/"):])
        self._send(404, b"<h1>not found</h1>", "text/html; charset=utf-8")

    def _page(self, heading: str, api: str | None, single: str | None) -> None:
        html = _PAGE.format(
            title=f"Fake platform - {heading}".replace("<", "&lt;"),
            heading=heading.replace("<", "&lt;"),
            api=json.dumps(api),
            single=json.dumps(single),
        )
        self._send(200, html.encode(), "text/html; charset=utf-8")

    def _api_search(self, query: dict[str, list[str]]) -> None:
        term = query.get("q", [""])[0]
        cursor = query.get("cursor", [""])[0]
        try:
            limit = min(int(query.get("limit", [str(self.fake.page_size)])[0]), 100)
            offset = int(cursor[1:]) if cursor else 0
            if (cursor and not cursor.startswith("o")) or offset < 0 or limit < 1:
                raise ValueError
        except ValueError:
            return self._json(400, {"error": f"bad cursor or limit: {cursor!r}"})
        base = self._base()
        if term == "garbage":
            records: list[object] = list(_BAD_RECORDS) + [self.fake.post_json(_POSTS[0], base)]
        else:
            records = [self.fake.post_json(r, base) for r in self.fake.search(term)]
        page = records[offset:offset + limit]
        more = offset + limit < len(records)
        self._json(200, {"posts": page, "next_cursor": f"o{offset + limit}" if more else None})

    def _hostile(self, path: str, query: dict[str, list[str]]) -> None:
        name = path[len("/_test/"):]
        if name == "redirect-loop":
            return self._send(302, b"", "text/plain", {"Location": "/_test/redirect-loop"})
        if name == "redirect":
            return self._send(302, b"", "text/plain", {"Location": query["to"][0]})
        if name.startswith("status/"):
            code = int(name.split("/", 1)[1])
            return self._send(code, f"status {code}".encode(), "text/plain")
        if name == "flaky":
            # First hit per key: 503 asking for a 1 s pause; later hits: the image.
            if self.fake.hits[self.path] == 1:
                return self._send(503, b"busy", "text/plain", {"Retry-After": "1"})
            body, ctype = self.fake.media["rally.png"]
            return self._send(200, body, ctype)
        if name == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            return self._stream_forever(b"\0" * 65536, 0)
        if name == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Connection", "close")  # no length: the body ends when we close
            self.end_headers()
            return self._stream_forever(b"\0" * 65536, 0)
        if name == "drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            return self._stream_forever(b"x", 0.2)
        if name == "stall":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            self.fake._stop.wait(HANDLER_MAX_S)
            self.close_connection = True
            return None
        if name == "empty":
            return self._send(200, b"", "image/png")
        if name == "not-json":
            return self._send(200, b"<html>surprise</html>", "text/html")
        if name.startswith("garbage-api/"):
            return self._send(200, b"<html><body>maintenance</body></html>", "text/html")
        if name.startswith("wrong-shape/"):
            return self._json(200, {"items": [1, 2, 3]})
        self._send(404, b"no such test endpoint", "text/plain")
