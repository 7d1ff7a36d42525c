"""The fetcher against a deliberately hostile server: every case ends on time and in little memory.

The server speaks raw HTTP/1.1 from a socket (so it can lie about lengths, drip, or say nothing)
and listens on 127.0.0.2; the fetcher allows only 127.0.0.2/32, so 127.0.0.1 is as forbidden as
any private address would be in production. Each test checks its own wall-clock budget, and the
tests that receive bodies check the Python heap peak with tracemalloc.
"""
from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pytest

from agents.base import Drop, MediaRef
from agents.fetch import FetchError, Fetcher, FetchPolicy

HOST = "127.0.0.2"
ONLY_HOST = (f"{HOST}/32",)
HANDLER_MAX_S = 20.0  # a hostile handler gives up on its own after this
GIB = 1 << 30


def _gzip_bomb() -> bytes:
    """~1 MB of gzip that inflates to 1 GiB of zeros (built once, in ~3 s)."""
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(16 << 20)
    return b"".join([z.compress(block) for _ in range(GIB // len(block))] + [z.flush()])


def _png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels: tens of KB on disk, 400 M pixels decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (side + 7) // 8)  # filter byte 0 + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class HostileServer:
    """A threaded raw-socket HTTP server on 127.0.0.2 with one misbehaviour per path."""

    def __init__(self, canary_port: int):
        self.canary_port = canary_port  # a listener on 127.0.0.1 that must never be reached
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()
        self.gzip_bomb = _gzip_bomb()
        self.png_bomb = _png_bomb()
        hostile = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(HANDLER_MAX_S)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        data = self.request.recv(4096)
                        if not data:
                            return
                        head += data
                    target = head.split(b" ", 2)[1].decode()
                    hostile.serve(self.request, target)
                except OSError:
                    pass  # the client went away, as it should when it gives up

        self._server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://{HOST}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def head(sock: socket.socket, status: str, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
        sock.sendall("\r\n".join(lines).encode())

    def answer(self, sock: socket.socket, status: str, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.head(sock, status, {"Content-Type": ctype, "Content-Length": str(len(body)), **(extra or {})})
        sock.sendall(body)

    def serve(self, sock: socket.socket, target: str) -> None:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        self.hits[path] += 1
        if path == "/robots.txt":
            return self.answer(sock, "404 Not Found", b"none", "text/plain")
        if path == "/drip":  # one byte a second of a promised 100 kB
            self.head(sock, "200 OK", {"Content-Type": "image/jpeg", "Content-Length": "100000"})
            while not self.stop.wait(1.0):
                sock.sendall(b"x")
            return None
        if path == "/silent":  # reads the request, then says nothing at all
            self.stop.wait(HANDLER_MAX_S)
            return None
        if path == "/endless-redirect":  # a fresh URL every time, never the same twice
            n = int(query.get("n", ["0"])[0])
            return self.answer(sock, "302 Found", b"", "text/plain", {"Location": f"/endless-redirect?n={n + 1}"})
        if path == "/loop-a":
            return self.answer(sock, "302 Found", b"", "text/plain", {"Location": "/loop-b"})
        if path == "/loop-b":
            return self.answer(sock, "302 Found", b"", "text/plain", {"Location": "/loop-a"})
        if path == "/gzip-bomb":
            return self.answer(sock, "200 OK", self.gzip_bomb, query.get("type", ["image/jpeg"])[0],
                               {"Content-Encoding": "gzip"})
        if path == "/ten-gigabytes":  # promises 10 GB and sends none of it
            self.head(sock, "200 OK", {"Content-Type": "video/mp4", "Content-Length": str(10 * GIB)})
            self.stop.wait(HANDLER_MAX_S)
            return None
        if path == "/photo.jpg":  # a JPEG that is really an HTML error page
            return self.answer(sock, "200 OK", b"<!doctype html><html><body>Login required</body></html>", "image/jpeg")
        if path == "/bomb.png":
            return self.answer(sock, "200 OK", self.png_bomb, "image/png")
        if path == "/to-metadata":
            return self.answer(sock, "302 Found", b"", "text/plain",
                               {"Location": "http://169.254.169.254/latest/meta-data/iam/"})
        if path == "/to-loopback":
            return self.answer(sock, "302 Found", b"", "text/plain",
                               {"Location": f"http://127.0.0.1:{self.canary_port}/admin"})
        if path == "/busy":  # 429 with Retry-After on the first hit, then the goods
            if self.hits[path] == 1:
                return self.answer(sock, "429 Too Many Requests", b"slow down", "text/plain", {"Retry-After": "1"})
            return self.answer(sock, "200 OK", b'{"ok": true}', "application/json")
        return self.answer(sock, "404 Not Found", b"no such hostile endpoint", "text/plain")


@pytest.fixture(scope="module")
def canary():
    """A listener on 127.0.0.1 that counts how many connections reached it (must stay 0)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def canary_connections(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


@pytest.fixture(scope="module")
def hostile(canary):
    server = HostileServer(canary.getsockname()[1])
    yield server
    server.close()


def policy(**overrides) -> FetchPolicy:
    settings = dict(allow_networks=ONLY_HOST, timeout_s=2, total_timeout_s=5, backoff_s=0.05, max_bytes=10_000_000)
    settings.update(overrides)
    return FetchPolicy(**settings)


@contextmanager
def budget(seconds: float, heap_mb: float | None = None):
    """Fails the test if the block runs longer than `seconds` or its heap peak passes `heap_mb`."""
    if heap_mb is not None:
        tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] if heap_mb is not None else 0
        if heap_mb is not None:
            tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s, budget {seconds} s"
    if heap_mb is not None:
        assert peak < heap_mb * 1e6, f"heap peak {peak / 1e6:.1f} MB, budget {heap_mb} MB"


def media(url: str, kind: str = "image") -> MediaRef:
    return MediaRef(url=url, kind=kind)


@pytest.mark.timeout(20)
def test_slow_drip_ends_at_the_total_deadline(hostile):
    # Each byte comes well inside the 2 s read timeout; only the 3 s deadline can stop this.
    with Fetcher(policy(total_timeout_s=3)) as f, budget(3.6):
        drop = f.fetch_media(media(hostile.base_url + "/drip"))
    assert isinstance(drop, Drop) and drop.reason == "timeout"


@pytest.mark.timeout(20)
def test_silent_server_ends_at_the_read_timeout(hostile):
    with Fetcher(policy(timeout_s=1, total_timeout_s=5)) as f, budget(2.0):
        drop = f.fetch_media(media(hostile.base_url + "/silent"))
    assert drop.reason == "timeout"


@pytest.mark.timeout(20)
def test_silent_server_cannot_outlast_a_short_deadline(hostile):
    # The read timeout (5 s) is longer than the whole fetch may take (1 s): the deadline wins.
    with Fetcher(policy(timeout_s=5, total_timeout_s=1)) as f, budget(1.6):
        with pytest.raises(FetchError) as err:
            f.get_json(hostile.base_url + "/silent")
    assert err.value.reason == "timeout"


@pytest.mark.timeout(20)
def test_endless_redirects_stop_at_the_cap(hostile):
    before = hostile.hits["/endless-redirect"]
    with Fetcher(policy(max_redirects=5)) as f, budget(3):
        drop = f.fetch_media(media(hostile.base_url + "/endless-redirect"))
    assert drop.reason == "too many redirects"
    assert hostile.hits["/endless-redirect"] - before == 6  # the first request and five hops


@pytest.mark.timeout(20)
def test_redirect_loop_stops_at_the_cap(hostile):
    with Fetcher(policy(max_redirects=4)) as f, budget(3):
        with pytest.raises(FetchError) as err:
            f.get_document(hostile.base_url + "/loop-a")
    assert err.value.reason == "too many redirects"


@pytest.mark.timeout(60)
def test_gzip_bomb_is_cut_at_the_cap_without_inflating_it(hostile):
    assert len(hostile.gzip_bomb) < 1_200_000  # ~1 MB on the wire, 1 GiB inflated
    with Fetcher(policy(max_bytes=10_000_000)) as f, budget(5, heap_mb=40):
        drop = f.fetch_media(media(hostile.base_url + "/gzip-bomb"))
        received = f.counters["bytes"]
    assert drop.reason == "over size cap"
    assert "decoded (gzip) body passed the cap of 10000000 bytes" in drop.detail
    assert received < 200_000  # stopped after ~10 kB of compressed input, not the whole megabyte


@pytest.mark.timeout(60)
def test_gzip_bomb_as_a_document_is_cut_at_the_json_cap(hostile):
    with Fetcher(policy(max_json_bytes=2_000_000)) as f, budget(5, heap_mb=20):
        with pytest.raises(FetchError) as err:
            f.get_json(hostile.base_url + "/gzip-bomb?type=application/json")
    assert err.value.reason == "over size cap"


@pytest.mark.timeout(20)
def test_ten_gigabyte_content_length_is_refused_before_reading(hostile):
    with Fetcher(policy()) as f, budget(1.5, heap_mb=10):
        drop = f.fetch_media(media(hostile.base_url + "/ten-gigabytes", "video"))
    assert drop.reason == "over size cap"
    assert f"Content-Length {10 * GIB}" in drop.detail


@pytest.mark.timeout(20)
def test_redirect_to_cloud_metadata_is_refused_without_connecting(hostile):
    with Fetcher(policy()) as f, budget(1.0):
        drop = f.fetch_media(media(hostile.base_url + "/to-metadata"))
    assert drop.reason == "blocked address"
    assert "169.254.169.254 is cloud metadata" in drop.detail


@pytest.mark.timeout(20)
def test_redirect_to_forbidden_loopback_never_reaches_it(hostile, canary):
    canary_connections(canary)
    with Fetcher(policy()) as f, budget(1.0):
        drop = f.fetch_media(media(hostile.base_url + "/to-loopback"))
    assert drop.reason == "blocked address"
    assert "127.0.0.1 is loopback" in drop.detail
    assert canary_connections(canary) == 0


@pytest.mark.timeout(20)
def test_429_with_retry_after_is_waited_out_then_fetched(hostile):
    with Fetcher(policy()) as f, budget(3.5):
        started = time.monotonic()
        answer = f.get_json(hostile.base_url + "/busy")
        waited = time.monotonic() - started
    assert answer == {"ok": True}
    assert waited >= 0.95  # the server's 1 s, not the 0.05 s backoff
    assert f.counters["retries"] == 1


@pytest.mark.timeout(20)
def test_429_without_retries_is_a_counted_drop(hostile):
    hostile.hits["/busy"] = 0
    with Fetcher(policy(retries=0)) as f, budget(1.0):
        with pytest.raises(FetchError) as err:
            f.get_json(hostile.base_url + "/busy")
    assert err.value.reason == "HTTP 429"


# The fetch stage (fetch + probe) turns what the fetcher lets through into probe drops.


@pytest.fixture
def fetch_stage(tmp_path):
    from orchestrator.stages import FetchPolicySpec, FetchStage

    stage = FetchStage(FetchPolicySpec(allow_networks=ONLY_HOST, timeout_s=2), str(tmp_path / "blobs"))
    yield stage
    stage.close()


@pytest.mark.timeout(30)
def test_html_served_as_jpeg_becomes_a_probe_drop(hostile, fetch_stage):
    with budget(3):
        [drop] = fetch_stage.run([media(hostile.base_url + "/photo.jpg")])
    assert isinstance(drop, Drop) and drop.stage == "probe"
    assert drop.reason == "not an image: sniffed text/html"
    assert drop.detail.endswith("declared image/jpeg")


@pytest.mark.timeout(30)
def test_png_decompression_bomb_becomes_a_probe_drop(hostile, fetch_stage):
    assert len(hostile.png_bomb) < 100_000  # 400 megapixels in a few tens of KB
    with budget(3, heap_mb=30):
        [drop] = fetch_stage.run([media(hostile.base_url + "/bomb.png")])
    assert isinstance(drop, Drop) and drop.stage == "probe"
    assert drop.reason == "corrupt image: decompression bomb"  # stable: counted as one reason
    assert "400000000 pixels" in drop.detail


@pytest.mark.timeout(30)
def test_probe_media_refuses_the_png_bomb_directly(hostile):
    from detectors.hashing import MediaDecodeError, probe_media

    with budget(2, heap_mb=30), pytest.raises(MediaDecodeError, match="decompression bomb"):
        probe_media(hostile.png_bomb, "image/png")


@pytest.mark.timeout(60)
def test_hostile_fixtures_are_what_they_claim(hostile):
    # The bombs are real: the PNG header says 20000x20000 and its data inflates to 50 MB of
    # rows; the gzip body inflates past 1 GiB.
    png = hostile.png_bomb
    assert png[12:16] == b"IHDR" and struct.unpack(">II", png[16:24]) == (20_000, 20_000)
    idat = png[41:-16]  # after the signature and IHDR, before the IDAT checksum and IEND
    assert inflated_size(zlib.decompressobj(), idat) == 20_000 * 2_501
    assert inflated_size(zlib.decompressobj(zlib.MAX_WBITS | 16), hostile.gzip_bomb) >= GIB


def inflated_size(d, data: bytes) -> int:
    total = 0
    while data and not d.eof:
        total += len(d.decompress(data, 1 << 24))
        data = d.unconsumed_tail
    return total
