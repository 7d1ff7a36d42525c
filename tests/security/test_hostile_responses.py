"""Issue 16, finding 10: hostile liveness and RFC 3161 responses. A post quoting the removal notice
must not close its own takedown; server text reaches the record without control characters; a
timestamp authority cannot send an endless or huge answer, nor back-date a seal."""
from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import tests.tsa_server as tsa_server
from evidence.liveness import probe
from evidence.tsa import MAX_RESPONSE_BYTES, TimestampError, timestamp
from tests.replay import Answer, ReplayServer
from tests.tsa_server import TimestampAuthority

pytestmark = pytest.mark.timeout(60)
NOTICE = "This post has been removed"
DIGEST = hashlib.sha256(b"evidence").digest()


def test_a_post_quoting_the_removal_notice_is_still_live(fetcher):
    with ReplayServer() as srv:
        srv.route("/p/1", handler=lambda _r, a=Answer(body=f"<p>Fake news! {NOTICE} they say, but here it is.</p>",
                                        content_type="text/html"): a)
        srv.route("/p/2", handler=lambda _r, a=Answer(body=f"<div>{NOTICE}.</div>", content_type="text/html"): a)
        own_text = f"Fake news! {NOTICE} they say, but here it is."
        state, _, detail = probe(fetcher, srv.base_url + "/p/1", (NOTICE,), post_text=own_text)
        assert state == "live" and "poster's own words" in detail
        state, _, _ = probe(fetcher, srv.base_url + "/p/2", (NOTICE,), post_text="완전히 다른 게시물 본문입니다 투표하세요")
        assert state == "gone"  # a real notice still counts


def test_server_text_in_the_detail_has_no_control_characters(fetcher):
    with ReplayServer() as srv:
        srv.route("/p/1", handler=lambda _r, a=Answer(body="ok", content_type="text/html\x1b]8;;http://evil/\x07"): a)
        _, _, detail = probe(fetcher, srv.base_url + "/p/1")
    assert "\x1b" not in detail and "\x07" not in detail


class _Hostile(BaseHTTPRequestHandler):
    mode = "huge"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        if self.mode == "huge":
            self.end_headers()  # no length: it just keeps sending
            try:
                for _ in range(64):
                    self.wfile.write(b"\x30" * 65536)
            except OSError:
                pass
        else:  # drip: one byte a second
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"\x30")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass


@pytest.mark.parametrize("mode,expected", [("huge", "more than"), ("drip", "did not finish")])
def test_endless_or_dripping_authority_is_cut_off(mode, expected):
    handler = type("H", (_Hostile,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(TimestampError, match=expected):
            timestamp(DIGEST, f"http://127.0.0.1:{server.server_port}/tsa", timeout_s=2)
        assert time.monotonic() - started < 10
    finally:
        server.shutdown()
        server.server_close()
    assert MAX_RESPONSE_BYTES < 64 * 65536


def test_backdated_stamp_is_refused(monkeypatch):
    with TimestampAuthority() as tsa:
        assert timestamp(DIGEST, tsa.url)  # an honest authority is fine

        class _Past(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.now(tz) - timedelta(days=400)

        monkeypatch.setattr(tsa_server, "datetime", _Past)
        with pytest.raises(TimestampError, match="more than 300 s apart"):
            timestamp(DIGEST, tsa.url)
    with pytest.raises(TimestampError, match="not http"):
        timestamp(DIGEST, "file:///etc/passwd")
    assert datetime.now(timezone.utc).year >= 2024
