"""Issue 16, finding 1: SSRF through evidence capture. A page on one loopback address iframes,
fetch()es and redirects to another loopback address that is not allowed; the internal page's
secret must never reach Chromium, and a page the guard refuses leaves nothing behind."""
from __future__ import annotations

import http.server
import os
import threading

import pytest

from agents.browser import BrowserAgent
from agents.browser_guard import GuardedProxy, url_refusal, parse_networks
from agents.errors import SourceError
from storage.blobs import BlobStore

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

pytestmark = pytest.mark.timeout(180)
PUBLIC, INTERNAL = "127.0.0.1", "127.0.0.2"  # only the first is in allow_networks
SECRET = "INTERNAL-SECRET-7f3a"


class _Site(http.server.ThreadingHTTPServer):
    """Listens on every loopback address; counts what the internal address was asked for."""

    def __init__(self):
        self.internal_hits: list[str] = []
        super().__init__(("0.0.0.0", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Site

    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_port
        host = self.headers.get("Host", "").split(":")[0]
        if self.connection.getsockname()[0] == INTERNAL or host == INTERNAL:
            self.server.internal_hits.append(self.path)
            return self._send(200, f"<html><body style='background:#f00'><h1>{SECRET}</h1></body></html>")
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://{INTERNAL}:{port}/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        page = (f"<html><head><title>post</title></head><body><article class='post'>a post</article>"
                f"<iframe src='http://{INTERNAL}:{port}/secret' width=600 height=400></iframe>"
                f"<img src='http://{INTERNAL}:{port}/pixel.png'>"
                f"<script>fetch('http://{INTERNAL}:{port}/api').then(r => r.text())"
                f".then(t => document.body.insertAdjacentText('beforeend', t)).catch(() => {{}});</script>"
                f"<div id='end-of-feed'></div></body></html>")
        return self._send(200, page)

    def _send(self, status: int, html: str) -> None:
        body = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site():
    server = _Site()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _red_pixels(png: bytes) -> int:
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    import numpy as np

    px = np.asarray(img)
    return int(((px[..., 0] > 240) & (px[..., 1] < 20) & (px[..., 2] < 20)).sum())


def test_iframe_image_and_fetch_to_a_refused_address_never_load(site, tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    with BrowserAgent("", blobs, allow_networks=(f"{PUBLIC}/32",), render_timeout_s=3) as agent:
        cap = agent.capture(f"http://{PUBLIC}:{site.server_port}/post/1")
    assert site.internal_hits == []  # not one request reached the internal address
    assert SECRET not in blobs.get(cap.html_sha256).decode("utf-8")
    assert _red_pixels(blobs.get(cap.screenshot_sha256)) == 0  # the secret page's red is nowhere


def test_redirect_to_a_refused_address_keeps_nothing(site, tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    with BrowserAgent("", blobs, allow_networks=(f"{PUBLIC}/32",), render_timeout_s=3) as agent:
        with pytest.raises(SourceError) as err:
            agent.capture(f"http://{PUBLIC}:{site.server_port}/redirect")
        assert err.value.reason == "blocked address"
        with pytest.raises(SourceError, match="blocked address"):
            agent.capture(f"http://{INTERNAL}:{site.server_port}/secret")  # straight there
    assert site.internal_hits == []
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))  # no screenshot, no DOM


def test_default_is_deny_and_metadata_is_refused():
    assert "loopback" in url_refusal("http://127.0.0.1/", ())
    assert "cloud metadata" in url_refusal("http://169.254.169.254/latest/meta-data/", parse_networks(["169.254.0.0/16"]))
    assert url_refusal("file:///etc/passwd", ()).startswith("not an http(s) URL")
    guard = GuardedProxy(()).start()
    try:
        assert guard.playwright_proxy()["bypass"] == "<-loopback>"
    finally:
        guard.close()
