"""Evidence capture as a signed WACZ, against a local HTTP server on 127.0.0.1 only.

The server serves a post page (gzip-encoded, with its own headers), an image with EXIF, an H.264
video, a media URL that redirects to the image and one that is gone (404). Every check reads the
archive back with warcio and zipfile, the way a court's expert would.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import socketserver
import struct
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image
from warcio.archiveiterator import ArchiveIterator

from agents.fetch import FetchError, Fetcher, FetchPolicy
from demo_platform.video import encode_mp4
from evidence.capture import capture_post, make_working_copy
from evidence.signing import Signer
from evidence.wacz import DATAPACKAGE, DIGEST_FILE, INDEX_PATH, PAGES_PATH, WARC_PATH, verify_wacz
from tests.replay import ReplayServer

pytestmark = pytest.mark.timeout(60)

PAGE_HTML = (
    "<!doctype html><html><head><title>Candidate   Kim concedes (leaked video)</title></head><body>"
    "<p>Shared 2 hours ago</p><img src='/media/photo.jpg'><video src='/media/clip.mp4'></video>"
    "</body></html>"
).encode("utf-8")
PAGE_GZIP = gzip.compress(PAGE_HTML, mtime=0)  # the page as the server sends it
PAGE_HEADERS = {"Content-Encoding": "gzip", "X-Served-By": "replay-edge-7", "ETag": '"post-42-v1"'}


def _photo_with_exif() -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, size=(1200, 1600, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "DeepwatchTestCam"  # Make
    exif[0x0110] = "Model-X"  # Model
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def _clip() -> bytes:
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 255, size=(288, 384, 3), dtype=np.uint8) for _ in range(4)]
    return encode_mp4(frames, fps=4)


def _png(width: int = 640, height: int = 2000) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (240, 240, 250)).save(out, format="PNG")
    return out.getvalue()


PHOTO = _photo_with_exif()
CLIP = _clip()
SCREENSHOT = _png()


@pytest.fixture(scope="module")
def site():
    with ReplayServer() as srv:
        srv.route("/post/42", body=PAGE_GZIP, content_type="text/html; charset=utf-8",
                  headers=PAGE_HEADERS)
        srv.route("/media/photo.jpg", body=PHOTO, content_type="image/jpeg")
        srv.route("/media/clip.mp4", body=CLIP, content_type="video/mp4")
        srv.route("/m/photo", status=302, body=b"moved", content_type="text/plain",
                  headers={"Location": "/media/photo.jpg"})
        yield srv


@pytest.fixture
def signer(tmp_path):
    return Signer.load_or_create(tmp_path / "keys")


@pytest.fixture
def captured(site, fetcher, blobs, signer):
    """(CaptureRecord, WACZ bytes) for the post with its image, video, redirect and a gone URL."""
    media = [site.base_url + "/media/photo.jpg", site.base_url + "/media/clip.mp4",
             site.base_url + "/m/photo", site.base_url + "/media/gone.jpg"]
    record = capture_post(site.base_url + "/post/42", media, fetcher, blobs, screenshot_png=SCREENSHOT,
                          operator="campaign:test-election", signer=signer, browser_version="131.0.6778.85")
    return record, blobs.get(record.wacz_sha256)


def _records(wacz: bytes) -> list[dict]:
    """Every WARC record as a dict of its headers, http headers and content (Content-Encoding kept)."""
    warc = zipfile.ZipFile(io.BytesIO(wacz)).read(WARC_PATH)
    out = []
    for record in ArchiveIterator(io.BytesIO(warc)):
        out.append({
            "type": record.rec_type,
            "warc": record.rec_headers,
            "http": record.http_headers,
            "payload": record.raw_stream.read(),
        })
    return out


def _repack(wacz: bytes, **replaced: bytes) -> bytes:
    """The same WACZ with some members replaced by other bytes (as a careful forger would do it)."""
    names = {"warc": WARC_PATH, "datapackage": DATAPACKAGE, "digest": DIGEST_FILE, "index": INDEX_PATH}
    replaced = {names[k]: v for k, v in replaced.items()}
    source = zipfile.ZipFile(io.BytesIO(wacz))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            target.writestr(info, replaced.get(info.filename, source.read(info)))
    return out.getvalue()


# -- the fetcher's archive view ------------------------------------------------------------


def test_archive_get_keeps_each_hop_raw_and_the_final_body_decoded(site, fetcher):
    got = fetcher.archive_get(site.base_url + "/m/photo")
    assert [e.status for e in got.exchanges] == [302, 200]
    hop, final = got.exchanges
    assert ("Location", "/media/photo.jpg") in hop.headers
    assert hop.body == b"moved" and hop.body_complete
    assert final.url == site.base_url + "/media/photo.jpg" == got.final_url
    assert all(e.peer_ip == "127.0.0.1" for e in got.exchanges)
    assert got.body == PHOTO == final.body
    assert dict(final.request_headers)["User-Agent"].startswith("deepwatch/")
    assert final.started_at.tzinfo is not None and hop.started_at <= final.started_at

    page = fetcher.archive_get(site.base_url + "/post/42", accept="text/html")
    # The record keeps the body as sent (gzip); the caller also gets it decoded.
    assert page.final.body == PAGE_GZIP
    assert page.body == PAGE_HTML
    names = [name for name, _ in page.final.headers]
    assert names.index("Content-Type") < names.index("Content-Encoding") < names.index("X-Served-By")
    assert ("X-Served-By", "replay-edge-7") in page.final.headers
    assert page.final.http_version.startswith("HTTP/1.") and page.final.reason == "OK"


def test_archive_get_refuses_like_the_other_methods(site):
    before = len(site.requests)
    with Fetcher(FetchPolicy(timeout_s=2, total_timeout_s=5)) as guarded:  # loopback not allowed
        with pytest.raises(FetchError) as err:
            guarded.archive_get(site.base_url + "/post/42")
    assert err.value.reason == "blocked address"
    assert len(site.requests) == before  # refused before connecting: the server saw nothing


# -- the capture and its WACZ --------------------------------------------------------------


def test_capture_record_names_address_headers_tool_and_operator(captured, site, blobs):
    record, _ = captured
    assert record.page_ip == "127.0.0.1"
    assert record.page_headers["X-Served-By"] == "replay-edge-7"
    assert record.page_headers["ETag"] == '"post-42-v1"'
    assert record.page_title == "Candidate Kim concedes (leaked video)"
    assert record.captured_at.utcoffset().total_seconds() == 0
    assert record.capture_tool.startswith("deepwatch/0.1.0 (warcio ")
    assert "Chromium 131.0.6778.85" in record.capture_tool
    assert record.operator == "campaign:test-election"
    by_url = {m.url.rsplit("/", 1)[1]: m for m in record.media}
    assert by_url["photo.jpg"] == (site.base_url + "/media/photo.jpg", 200, hashlib.sha256(PHOTO).hexdigest(), None)
    assert by_url["clip.mp4"].sha256 == hashlib.sha256(CLIP).hexdigest()
    assert by_url["photo"].status == 200 and by_url["photo"].sha256 == hashlib.sha256(PHOTO).hexdigest()
    gone = by_url["gone.jpg"]
    assert (gone.status, gone.sha256) == (404, None) and gone.error.startswith("HTTP 404")
    # The untouched media bytes are kept by sha256 next to the WACZ.
    assert blobs.get(by_url["clip.mp4"].sha256) == CLIP
    assert blobs.verify(record.wacz_sha256)


def test_wacz_holds_the_required_files_with_matching_digests(captured):
    _, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    assert set(zf.namelist()) == {WARC_PATH, INDEX_PATH, PAGES_PATH, DATAPACKAGE, DIGEST_FILE}
    assert zf.getinfo(WARC_PATH).compress_type == zipfile.ZIP_STORED  # seekable inside the zip
    package = json.loads(zf.read(DATAPACKAGE))
    assert package["profile"] == "data-package" and package["wacz_version"] == "1.1.1"
    assert package["software"].startswith("deepwatch ") and package["created"].endswith("Z")
    assert {r["path"] for r in package["resources"]} == {WARC_PATH, INDEX_PATH, PAGES_PATH}
    for resource in package["resources"]:
        data = zf.read(resource["path"])
        assert resource["hash"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert resource["bytes"] == len(data)
        assert resource["name"] == resource["path"].rsplit("/", 1)[1]
    digest = json.loads(zf.read(DIGEST_FILE))
    assert digest["path"] == DATAPACKAGE
    assert digest["hash"] == "sha256:" + hashlib.sha256(zf.read(DATAPACKAGE)).hexdigest()
    assert digest["signedData"]["algorithm"] == "Ed25519" and digest["signedData"]["hash"] == digest["hash"]


def test_fresh_wacz_verifies_clean(captured, signer, tmp_path):
    _, wacz = captured
    assert verify_wacz(wacz) == []
    path = tmp_path / "capture.wacz"
    path.write_bytes(wacz)
    assert verify_wacz(path, expected_public_key=signer.public_key_hex) == []
    assert verify_wacz(str(path)) == []


def test_a_flipped_byte_inside_the_zipped_warc_is_named(captured):
    _, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    info = zf.getinfo(WARC_PATH)
    name_len, extra_len = struct.unpack("<HH", wacz[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    target = start + info.file_size // 2
    tampered = wacz[:target] + bytes([wacz[target] ^ 0x01]) + wacz[target + 1:]
    problems = verify_wacz(tampered)
    assert problems[0].startswith(f"{WARC_PATH}: the stored bytes fail the zip's check")
    # The bytes are still checked past the failed CRC, so the report also gives the new hash.
    assert any(p.startswith(f"{WARC_PATH}: sha256 is") and "datapackage.json says" in p for p in problems)


def test_a_rewritten_warc_record_is_named_by_hash_and_by_record_digest(captured):
    """A forger who edits one record and re-gzips it (valid gzip, valid zip) is still caught."""
    _, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    warc = zf.read(WARC_PATH)
    line = next(l for l in zf.read(INDEX_PATH).decode().splitlines() if "/media/photo.jpg" in l)
    entry = json.loads(line.split(" ", 2)[2])
    offset, length = entry["offset"], entry["length"]
    member = bytearray(gzip.decompress(warc[offset:offset + length]))
    member[-100] ^= 0xFF  # a byte of the JPEG payload, before the record's closing CRLFs
    forged = warc[:offset] + gzip.compress(bytes(member)) + warc[offset + length:]
    problems = verify_wacz(_repack(wacz, warc=forged))
    assert any(p.startswith(f"{WARC_PATH}: sha256 is") for p in problems)
    altered = [p for p in problems if "digest failed" in p]
    assert len(altered) == 1 and "/media/photo.jpg" in altered[0] and "response" in altered[0]


def test_an_edited_datapackage_is_named(captured):
    _, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    package = json.loads(zf.read(DATAPACKAGE))
    package["created"] = "2020-01-01T00:00:00.000Z"  # back-dating the capture
    problems = verify_wacz(_repack(wacz, datapackage=json.dumps(package).encode()))
    assert len(problems) == 1
    assert problems[0].startswith(f"{DATAPACKAGE}: sha256 is") and "edited" in problems[0]


def test_a_replaced_signature_is_named(captured):
    _, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    digest = json.loads(zf.read(DIGEST_FILE))
    signature = bytearray(bytes.fromhex(digest["signedData"]["signature"]))
    signature[0] ^= 0x01
    digest["signedData"]["signature"] = signature.hex()
    problems = verify_wacz(_repack(wacz, digest=json.dumps(digest).encode()))
    assert problems == [f"{DIGEST_FILE}: the Ed25519 signature does not verify with the public key it names"]


def test_a_package_re_signed_with_another_key_fails_the_expected_key(captured, signer, tmp_path):
    _, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    digest = json.loads(zf.read(DIGEST_FILE))
    forger = Signer.load_or_create(tmp_path / "forger")
    digest["signedData"].update(publicKey=forger.public_key_hex, signature=forger.sign(digest["hash"].encode()))
    forged = _repack(wacz, digest=json.dumps(digest).encode())
    assert verify_wacz(forged) == []  # self-consistent: only the key says who signed
    problems = verify_wacz(forged, expected_public_key=signer.public_key_hex)
    assert len(problems) == 1 and forger.public_key_hex in problems[0]


def test_verify_names_a_file_that_is_not_a_wacz():
    assert verify_wacz(b"PK\x03\x04 not really a zip")[0].startswith("not a readable WACZ")
    stray = io.BytesIO()
    with zipfile.ZipFile(stray, "w") as zf:
        zf.writestr("hello.txt", "hi")
    problems = verify_wacz(stray.getvalue())
    assert f"{WARC_PATH}: missing from the WACZ" in problems and f"{DATAPACKAGE}: missing from the WACZ" in problems


# -- what the WARC says --------------------------------------------------------------------


def test_warc_holds_request_response_pairs_with_address_and_server_headers(captured, site):
    _, wacz = captured
    records = _records(wacz)
    assert records[0]["type"] == "warcinfo"
    info = records[0]["payload"].decode()
    assert "software: deepwatch 0.1.0" in info and "operator: campaign:test-election" in info
    responses = [r for r in records if r["type"] == "response"]
    requests = {r["warc"].get_header("WARC-Concurrent-To"): r for r in records if r["type"] == "request"}
    assert len(responses) == len(requests) == 5  # page, photo, clip, redirect hop, its target
    for response in responses:
        assert response["warc"].get_header("WARC-IP-Address") == "127.0.0.1"
        request = requests[response["warc"].get_header("WARC-Record-ID")]
        assert request["warc"].get_header("WARC-Target-URI") == response["warc"].get_header("WARC-Target-URI")
        assert request["warc"].get_header("WARC-IP-Address") == "127.0.0.1"
        assert request["http"].get_header("User-Agent").startswith("deepwatch/")
        assert request["http"].protocol == "GET"
    page = next(r for r in responses if r["warc"].get_header("WARC-Target-URI") == site.base_url + "/post/42")
    assert page["http"].get_statuscode() == "200"
    for name, value in PAGE_HEADERS.items():
        assert page["http"].get_header(name) == value
    assert page["payload"] == PAGE_GZIP  # as sent: still gzip-encoded


def test_warc_archives_the_redirect_hop_and_the_original_media_bytes(captured, site):
    _, wacz = captured
    by_uri: dict[str, list[dict]] = {}
    for record in _records(wacz):
        by_uri.setdefault(record["warc"].get_header("WARC-Target-URI"), []).append(record)
    hop = next(r for r in by_uri[site.base_url + "/m/photo"] if r["type"] == "response")
    assert hop["http"].get_statuscode() == "302"
    assert hop["http"].get_header("Location") == "/media/photo.jpg"
    photos = [r for r in by_uri[site.base_url + "/media/photo.jpg"] if r["type"] == "response"]
    assert len(photos) == 2 and all(r["payload"] == PHOTO for r in photos)  # direct and via the redirect
    clip = next(r for r in by_uri[site.base_url + "/media/clip.mp4"] if r["type"] == "response")
    assert clip["payload"] == CLIP
    assert site.base_url + "/media/gone.jpg" not in by_uri  # a failed fetch is a fact, not a record


def test_warc_holds_the_screenshot_and_the_capture_facts(captured, site):
    record, wacz = captured
    records = _records(wacz)
    page_url = site.base_url + "/post/42"
    shot = next(r for r in records if r["type"] == "resource")
    assert shot["warc"].get_header("WARC-Target-URI") == "urn:deepwatch:screenshot:" + page_url
    assert shot["warc"].get_header("Content-Type") == "image/png"
    assert shot["payload"] == SCREENSHOT
    meta = next(r for r in records if r["type"] == "metadata")
    assert meta["warc"].get_header("Content-Type") == "application/json"
    facts = json.loads(meta["payload"])
    assert facts["operator"] == "campaign:test-election"
    assert facts["capture_tool"] == record.capture_tool
    assert facts["browser"] == "131.0.6778.85"
    assert facts["page"]["resolved_ip"] == "127.0.0.1"
    assert facts["captured_at"] == record.captured_at.isoformat()
    assert facts["software"]["warcio"] and facts["software"]["deepwatch"] == "0.1.0"
    assert facts["screenshot"]["sha256"] == hashlib.sha256(SCREENSHOT).hexdigest()
    gone = next(m for m in facts["media"] if m["url"].endswith("/gone.jpg"))
    assert (gone["outcome"], gone["reason"]) == ("failed", "HTTP 404")
    redirected = next(m for m in facts["media"] if m["url"].endswith("/m/photo"))
    assert redirected["redirects"] == 1 and redirected["final_url"].endswith("/media/photo.jpg")


def test_every_record_reads_back_with_its_digests_checked(captured):
    _, wacz = captured
    warc = zipfile.ZipFile(io.BytesIO(wacz)).read(WARC_PATH)
    types = []
    for record in ArchiveIterator(io.BytesIO(warc), check_digests=True):
        record.content_stream().read()  # de-chunked and Content-Encoding undone, as a replayer reads it
        types.append(record.rec_type)
        if record.rec_type != "warcinfo":
            assert record.rec_headers.get_header("WARC-Payload-Digest").startswith("sha256:")
            assert record.digest_checker.passed is True, record.digest_checker.problems
    assert types.count("response") == types.count("request") == 5
    assert types[-2:] == ["resource", "metadata"]


def test_pages_jsonl_and_the_cdxj_index_are_valid(captured, site):
    record, wacz = captured
    zf = zipfile.ZipFile(io.BytesIO(wacz))
    header, *pages = [json.loads(line) for line in zf.read(PAGES_PATH).decode().splitlines()]
    assert header["format"] == "json-pages-1.0"
    assert len(pages) == 1
    assert pages[0]["url"] == site.base_url + "/post/42"
    assert pages[0]["title"] == record.page_title
    assert pages[0]["ts"].startswith(record.captured_at.strftime("%Y-%m-%dT%H:%M")) and pages[0]["ts"].endswith("Z")
    lines = zf.read(INDEX_PATH).decode().splitlines()
    assert lines == sorted(lines) and len(lines) == 7  # 5 responses, the screenshot, the facts
    warc = zf.read(WARC_PATH)
    for line in lines:
        key, stamp, block = line.split(" ", 2)
        entry = json.loads(block)
        assert len(stamp) == 14 and stamp.isdigit()
        if entry["url"].startswith("http"):
            assert key.startswith("1,0,0,127:") and ")/" in key
        one = next(iter(ArchiveIterator(io.BytesIO(warc[entry["offset"]:entry["offset"] + entry["length"]]))))
        assert one.rec_headers.get_header("WARC-Target-URI") == entry["url"]
        assert one.rec_headers.get_header("WARC-Payload-Digest") == entry["digest"]


class _ChunkedPage(socketserver.StreamRequestHandler):
    """Answers HTTP/1.1 with Transfer-Encoding: chunked (the replay server only speaks HTTP/1.0)."""

    parts = (b"<html><head><title>chunked</title></head>", b"<body>sent in pieces</body></html>")

    def handle(self) -> None:
        request_line = self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        if b" /robots.txt " in request_line:
            self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n")
        for part in self.parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")


def test_a_chunked_answer_is_stored_de_chunked_with_its_header_renamed(fetcher, blobs, signer):
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ChunkedPage) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/post/7"
            record = capture_post(url, [], fetcher, blobs, screenshot_png=None, operator="x", signer=signer)
        finally:
            server.shutdown()
    wacz = blobs.get(record.wacz_sha256)
    assert verify_wacz(wacz) == []
    response = next(r for r in _records(wacz) if r["type"] == "response")
    assert response["http"].get_header("Transfer-Encoding") is None  # a replayer must not de-chunk again
    assert response["http"].get_header("X-Archive-Orig-Transfer-Encoding") == "chunked"
    assert response["payload"] == b"".join(_ChunkedPage.parts)
    assert record.page_headers["Transfer-Encoding"] == "chunked"  # the record of what was sent
    assert record.page_title == "chunked"


# -- refusals and bad input ----------------------------------------------------------------


def test_capture_of_a_refused_address_raises_and_stores_nothing(site, blobs, signer):
    with Fetcher(FetchPolicy(timeout_s=2, total_timeout_s=5)) as guarded:  # loopback not allowed
        with pytest.raises(FetchError) as err:
            capture_post(site.base_url + "/post/42", [site.base_url + "/media/photo.jpg"], guarded, blobs,
                         screenshot_png=SCREENSHOT, operator="investigator:lee", signer=signer)
    assert err.value.reason == "blocked address" and "loopback" in err.value.detail
    assert [p for p in blobs.root.rglob("*") if p.is_file()] == []


def test_capture_rejects_bad_arguments_by_name(site, fetcher, blobs, signer):
    url = site.base_url + "/post/42"
    with pytest.raises(ValueError, match="operator"):
        capture_post(url, [], fetcher, blobs, screenshot_png=None, operator=" ", signer=signer)
    with pytest.raises(ValueError, match="not a PNG"):
        capture_post(url, [], fetcher, blobs, screenshot_png=b"GIF89a...", operator="x", signer=signer)
    with pytest.raises(ValueError, match="media_urls"):
        capture_post(url, url, fetcher, blobs, screenshot_png=None, operator="x", signer=signer)


def test_capture_without_screenshot_or_media_still_verifies(site, fetcher, blobs, signer):
    record = capture_post(site.base_url + "/post/42", [], fetcher, blobs, screenshot_png=None,
                          operator="investigator:lee", signer=signer)
    wacz = blobs.get(record.wacz_sha256)
    assert verify_wacz(wacz, expected_public_key=signer.public_key_hex) == []
    assert [r["type"] for r in _records(wacz)] == ["warcinfo", "response", "request", "metadata"]
    assert record.media == () and record.capture_tool.endswith(")") and "Chromium" not in record.capture_tool


# -- working copies ------------------------------------------------------------------------


def test_image_working_copy_is_a_small_jpeg_without_exif():
    original = bytes(PHOTO)
    assert Image.open(io.BytesIO(original)).getexif()[0x010F] == "DeepwatchTestCam"
    copy = make_working_copy(original, "image/jpeg")
    assert original == PHOTO  # never modified
    assert copy is not None and copy != original
    preview = Image.open(io.BytesIO(copy))
    assert preview.format == "JPEG"
    assert max(preview.size) == 1024 and preview.size == (1024, 768)
    assert len(preview.getexif()) == 0 and "exif" not in preview.info


def test_video_working_copy_is_a_poster_frame_jpeg():
    copy = make_working_copy(CLIP, "video/mp4")
    assert copy is not None
    poster = Image.open(io.BytesIO(copy))
    assert poster.format == "JPEG" and poster.size == (384, 288)


def test_working_copy_of_undecodable_bytes_is_none():
    assert make_working_copy(b"<html>not media</html>", "image/jpeg") is None
    assert make_working_copy(PHOTO[:200], "image/jpeg") is None  # truncated header
    assert make_working_copy(b"\x00" * 1000, "video/mp4") is None
    with pytest.raises(TypeError):
        make_working_copy("a string", "image/png")  # type: ignore[arg-type]
