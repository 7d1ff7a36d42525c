"""A captured page and its media as a signed WACZ (Web Archive Collection Zipped, version 1.1.1).

Layout of the zip (every member stored uncompressed, so a reader can seek into the WARC):

    archive/data.warc.gz        the WARC records, one gzip member each (written with warcio)
    indexes/index.cdx           CDXJ: one sorted line per response/resource/metadata record,
                                with the record's offset and length inside data.warc.gz
    pages/pages.jsonl           a header line, then the captured page (url, ts, title)
    datapackage.json            every member above with its sha256 and size
    datapackage-digest.json     the sha256 of datapackage.json, signed with Ed25519

WARC records: a `warcinfo` (software, operator, format); per HTTP exchange a `response` and a
`request` record sharing the capture time and the peer address (`WARC-IP-Address`), the request
pointing at its response by `WARC-Concurrent-To`; the full-page screenshot as a `resource`
record (`urn:deepwatch:screenshot:<page url>`); the capture facts as a JSON `metadata` record.
Record digests are sha256 (warcio's default is sha1; sha256 is what the other hashes here use).

Signing follows the spirit of the WACZ signing recommendation (an "anonymous" signature: the
public key travels in `signedData` and the signature covers the hash string "sha256:<hex>" of
datapackage.json), with Ed25519 in place of ECDSA. A self-consistent signature only proves
integrity since signing; `verify_wacz(..., expected_public_key=...)` also checks whose key it is.
"""
from __future__ import annotations

import hashlib
import io
import json
import struct
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.utils import Digester
from warcio.warcwriter import WARCWriter

from agents.fetch import Exchange
from evidence.signing import Signer, verify_signature

WACZ_VERSION = "1.1.1"
WARC_PATH = "archive/data.warc.gz"
WARC_NAME = "data.warc.gz"
INDEX_PATH = "indexes/index.cdx"
PAGES_PATH = "pages/pages.jsonl"
DATAPACKAGE = "datapackage.json"
DIGEST_FILE = "datapackage-digest.json"
PACKAGED = (PAGES_PATH, WARC_PATH, INDEX_PATH)  # the members datapackage.json lists
SCREENSHOT_URN = "urn:deepwatch:screenshot:"
CAPTURE_URN = "urn:deepwatch:capture:"
SIGNATURE_ALGORITHM = "Ed25519"


class WaczError(ValueError):
    """Input that cannot be packaged (no exchanges, a screenshot that is not a PNG...)."""


@dataclass(frozen=True)
class CapturedPage:
    """Everything one WACZ holds: the exchanges in capture order (page hops first) and the facts."""

    page_url: str  # as asked for; pages.jsonl names the page by this URL
    title: str
    captured_at: datetime  # UTC
    exchanges: Sequence[Exchange]
    operator: str
    software: str  # "deepwatch 0.1.0"
    facts: Mapping[str, Any]  # the metadata record (JSON-serialisable)
    screenshot_png: bytes | None = None


# -- building ---------------------------------------------------------------------------------


class _Sha256WARCWriter(WARCWriter):
    """warcio's writer with sha256 block and payload digests instead of sha1."""

    @staticmethod
    def _create_digester() -> Digester:
        return Digester("sha256")


def build_wacz(page: CapturedPage, signer: Signer) -> bytes:
    """The WACZ file for one captured page, as bytes (it is content-addressed by the caller)."""
    if not page.exchanges:
        raise WaczError("a WACZ needs at least one HTTP exchange (the page itself)")
    if page.screenshot_png is not None and not page.screenshot_png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise WaczError("the screenshot is not a PNG (no PNG signature at the start)")
    created = _utc(page.captured_at)
    warc, index_lines = _write_warc(page)
    members = {
        PAGES_PATH: _pages_jsonl(page),
        WARC_PATH: warc,
        INDEX_PATH: "".join(line + "\n" for line in sorted(index_lines)).encode("utf-8"),
    }
    datapackage = _json_bytes({
        "profile": "data-package",
        "resources": [
            {"name": Path(path).name, "path": path, "hash": _sha256_tag(data), "bytes": len(data)}
            for path, data in members.items()
        ],
        "wacz_version": WACZ_VERSION,
        "software": page.software,
        "created": _iso(created),
        "title": page.title or page.page_url,
        "mainPageUrl": page.page_url,
        "mainPageDate": _iso(created),
    })
    members[DATAPACKAGE] = datapackage
    members[DIGEST_FILE] = _json_bytes(_signed_digest(datapackage, signer, page.software))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        stamp = created.timetuple()[:6]
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, data)
    return out.getvalue()


def _write_warc(page: CapturedPage) -> tuple[bytes, list[str]]:
    """The WARC file and its CDXJ lines (unsorted)."""
    out = io.BytesIO()
    writer = _Sha256WARCWriter(out, gzip=True, warc_version="1.1")
    index: list[str] = []

    def write(record) -> tuple[int, int]:
        start = out.tell()
        writer.write_record(record)
        return start, out.tell() - start

    write(writer.create_warcinfo_record(WARC_NAME, {
        "software": page.software,
        "operator": page.operator,
        "format": "WARC File Format 1.1",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        "description": f"deepwatch evidence capture of {page.page_url}",
    }))
    page_response_id = None
    for exchange in page.exchanges:
        response = _response_record(writer, exchange)
        offset, length = write(response)
        response_id = response.rec_headers.get_header("WARC-Record-ID")
        page_response_id = page_response_id or response_id
        index.append(_cdxj_line(exchange.url, exchange.started_at, {
            "url": exchange.url,
            "mime": _mime(exchange.headers),
            "status": str(exchange.status),
            "digest": response.rec_headers.get_header("WARC-Payload-Digest"),
            "length": length, "offset": offset, "filename": WARC_NAME,
        }))
        write(_request_record(writer, exchange, response_id))
    when = {"WARC-Date": _warc_date(page.captured_at), "WARC-Concurrent-To": page_response_id}
    if page.screenshot_png is not None:
        uri = SCREENSHOT_URN + page.page_url
        record = writer.create_warc_record(
            uri, "resource", payload=io.BytesIO(page.screenshot_png), length=len(page.screenshot_png),
            warc_content_type="image/png", warc_headers_dict=dict(when),
        )
        offset, length = write(record)
        index.append(_cdxj_line(uri, page.captured_at, {
            "url": uri, "mime": "image/png", "digest": record.rec_headers.get_header("WARC-Payload-Digest"),
            "length": length, "offset": offset, "filename": WARC_NAME,
        }))
    facts = _json_bytes(dict(page.facts))
    uri = CAPTURE_URN + page.page_url
    record = writer.create_warc_record(
        uri, "metadata", payload=io.BytesIO(facts), length=len(facts),
        warc_content_type="application/json", warc_headers_dict=dict(when),
    )
    offset, length = write(record)
    index.append(_cdxj_line(uri, page.captured_at, {
        "url": uri, "mime": "application/json", "digest": record.rec_headers.get_header("WARC-Payload-Digest"),
        "length": length, "offset": offset, "filename": WARC_NAME,
    }))
    return out.getvalue(), index


def _response_record(writer: WARCWriter, exchange: Exchange):
    headers = list(exchange.headers)
    if exchange.chunked:
        # The body is stored with the chunked framing already removed, so a reader must not try
        # to de-chunk it again; the header is kept under another name, not dropped.
        headers = [("X-Archive-Orig-" + n, v) if n.lower() == "transfer-encoding" else (n, v) for n, v in headers]
    http_headers = StatusAndHeaders(f"{exchange.status} {exchange.reason}".rstrip(), headers,
                                    protocol=exchange.http_version)
    warc_headers = {"WARC-Date": _warc_date(exchange.started_at)}
    if exchange.peer_ip:
        warc_headers["WARC-IP-Address"] = exchange.peer_ip
    if not exchange.body_complete:
        warc_headers["WARC-Truncated"] = "length"
    return writer.create_warc_record(
        exchange.url, "response", payload=io.BytesIO(exchange.body), length=len(exchange.body),
        http_headers=http_headers, warc_headers_dict=warc_headers,
    )


def _request_record(writer: WARCWriter, exchange: Exchange, response_id: str):
    parts = urlsplit(exchange.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # The client speaks HTTP/1.1 whatever the server answers with (an HTTP/1.0 reply included).
    version = "HTTP/1.1" if exchange.http_version in ("HTTP/1.0", "HTTP/1.1") else exchange.http_version
    http_headers = StatusAndHeaders(f"{exchange.method} {target} {version}",
                                    list(exchange.request_headers), is_http_request=True)
    warc_headers = {"WARC-Date": _warc_date(exchange.started_at), "WARC-Concurrent-To": response_id}
    if exchange.peer_ip:
        warc_headers["WARC-IP-Address"] = exchange.peer_ip
    return writer.create_warc_record(exchange.url, "request", payload=io.BytesIO(b""), length=0,
                                     http_headers=http_headers, warc_headers_dict=warc_headers)


def _pages_jsonl(page: CapturedPage) -> bytes:
    header = {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}
    entry = {"id": uuid.uuid4().hex, "url": page.page_url, "ts": _iso(page.captured_at), "title": page.title}
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in (header, entry)).encode("utf-8")


def _signed_digest(datapackage: bytes, signer: Signer, software: str) -> dict[str, Any]:
    digest = _sha256_tag(datapackage)
    return {
        "path": DATAPACKAGE,
        "hash": digest,
        "signedData": {
            "hash": digest,
            "created": _iso(datetime.now(timezone.utc)),
            "software": software,
            "algorithm": SIGNATURE_ALGORITHM,
            "publicKey": signer.public_key_hex,
            "keyId": signer.key_id,
            "signature": signer.sign(digest.encode("ascii")),
        },
    }


# -- verifying --------------------------------------------------------------------------------


def verify_wacz(source: str | Path | bytes, *, expected_public_key: str | None = None) -> list[str]:
    """Every problem found in a WACZ, each naming the member and what is wrong; [] = intact.

    Re-hashes every member against datapackage.json, checks datapackage-digest.json and its
    signature (and, when `expected_public_key` is given, that this key made it), reads every WARC
    record with warcio checking its block and payload digests, and checks that pages.jsonl and
    the CDXJ index parse and that each index line points at the record it names.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"not a readable WACZ (zip) file: {exc}"]
    problems: list[str] = []
    with zf:
        members = _read_members(zf, problems)
    for path in (*PACKAGED, DATAPACKAGE, DIGEST_FILE):
        if path not in members and not any(p.startswith(path + ":") for p in problems):
            problems.append(f"{path}: missing from the WACZ")
    datapackage = _check_datapackage(members, problems)
    _check_digest_file(members, datapackage, problems, expected_public_key)
    warc = members.get(WARC_PATH)
    if warc is not None:
        _check_warc(warc, problems)
        if INDEX_PATH in members:
            _check_index(members[INDEX_PATH], warc, problems)
    if PAGES_PATH in members:
        _check_pages(members[PAGES_PATH], problems)
    return problems


def _read_members(zf: zipfile.ZipFile, problems: list[str]) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        try:
            members[info.filename] = zf.read(info)
        except zipfile.BadZipFile as exc:  # the zip's own CRC-32: bytes changed after packaging
            problems.append(f"{info.filename}: the stored bytes fail the zip's check ({exc}); the file was altered")
            altered = _stored_member(zf, info)
            if altered is not None:  # still checked below, so the report says which record changed
                members[info.filename] = altered
        except (zlib.error, OSError, NotImplementedError) as exc:
            problems.append(f"{info.filename}: cannot be read from the zip: {exc}")
    return members


def _stored_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """An uncompressed member's bytes read straight from its local header, past a failed CRC."""
    if info.compress_type != zipfile.ZIP_STORED or zf.fp is None:
        return None
    try:
        zf.fp.seek(info.header_offset)
        header = zf.fp.read(30)  # the fixed part of a local file header (APPNOTE 4.3.7)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        zf.fp.seek(info.header_offset + 30 + name_length + extra_length)
        data = zf.fp.read(info.compress_size)
    except OSError:
        return None
    return data if len(data) == info.compress_size else None


def _check_datapackage(members: dict[str, bytes], problems: list[str]) -> dict[str, Any] | None:
    raw = members.get(DATAPACKAGE)
    if raw is None:
        return None
    try:
        datapackage = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{DATAPACKAGE}: not valid JSON: {exc}")
        return None
    if not isinstance(datapackage, dict):
        problems.append(f"{DATAPACKAGE}: not a JSON object")
        return None
    if datapackage.get("profile") != "data-package":
        problems.append(f"{DATAPACKAGE}: profile is {datapackage.get('profile')!r}, not 'data-package'")
    if datapackage.get("wacz_version") != WACZ_VERSION:
        problems.append(f"{DATAPACKAGE}: wacz_version is {datapackage.get('wacz_version')!r}, not {WACZ_VERSION!r}")
    resources = datapackage.get("resources")
    if not isinstance(resources, list):
        problems.append(f"{DATAPACKAGE}: has no resources list")
        return datapackage
    listed = set()
    for resource in resources:
        if not isinstance(resource, dict) or not isinstance(resource.get("path"), str):
            problems.append(f"{DATAPACKAGE}: a resource entry has no path: {resource!r}")
            continue
        path = resource["path"]
        listed.add(path)
        data = members.get(path)
        if data is None:
            if not any(p.startswith(path + ":") for p in problems):  # not already reported
                problems.append(f"{path}: listed in {DATAPACKAGE} but missing from the WACZ")
            continue
        actual = _sha256_tag(data)
        if resource.get("hash") != actual:
            problems.append(f"{path}: sha256 is {actual}, but {DATAPACKAGE} says {resource.get('hash')}")
        if resource.get("bytes") != len(data):
            problems.append(f"{path}: is {len(data)} bytes, but {DATAPACKAGE} says {resource.get('bytes')}")
    for path in PACKAGED:
        if path not in listed:
            problems.append(f"{DATAPACKAGE}: does not list {path}")
    for path in sorted(set(members) - listed - {DATAPACKAGE, DIGEST_FILE}):
        problems.append(f"{path}: in the WACZ but not listed in {DATAPACKAGE} (added after packaging)")
    return datapackage


def _check_digest_file(members: dict[str, bytes], datapackage: dict | None, problems: list[str],
                       expected_public_key: str | None) -> None:
    raw = members.get(DIGEST_FILE)
    if raw is None:
        return
    try:
        digest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{DIGEST_FILE}: not valid JSON: {exc}")
        return
    if not isinstance(digest, dict):
        problems.append(f"{DIGEST_FILE}: not a JSON object")
        return
    if digest.get("path") != DATAPACKAGE:
        problems.append(f"{DIGEST_FILE}: path is {digest.get('path')!r}, not {DATAPACKAGE!r}")
    if DATAPACKAGE in members:
        actual = _sha256_tag(members[DATAPACKAGE])
        if digest.get("hash") != actual:
            problems.append(f"{DATAPACKAGE}: sha256 is {actual}, but {DIGEST_FILE} says {digest.get('hash')} "
                            "(datapackage.json was edited)")
    signed = digest.get("signedData")
    if not isinstance(signed, dict):
        problems.append(f"{DIGEST_FILE}: no signedData (the package is not signed)")
        return
    if signed.get("hash") != digest.get("hash"):
        problems.append(f"{DIGEST_FILE}: signedData.hash {signed.get('hash')} differs from hash {digest.get('hash')}")
    if signed.get("algorithm") != SIGNATURE_ALGORITHM:
        problems.append(f"{DIGEST_FILE}: signature algorithm {signed.get('algorithm')!r} is not {SIGNATURE_ALGORITHM}")
        return
    key, signature, signed_hash = signed.get("publicKey"), signed.get("signature"), signed.get("hash")
    if not all(isinstance(v, str) for v in (key, signature, signed_hash)):
        problems.append(f"{DIGEST_FILE}: signedData lacks publicKey, signature or hash")
        return
    if not verify_signature(key, signature, signed_hash.encode("utf-8")):
        problems.append(f"{DIGEST_FILE}: the Ed25519 signature does not verify with the public key it names")
    if expected_public_key is not None and key != expected_public_key:
        problems.append(f"{DIGEST_FILE}: signed with public key {key}, not the expected {expected_public_key}")


def _check_warc(data: bytes, problems: list[str]) -> None:
    count = 0
    where = f"{WARC_PATH}: the start of the file"
    try:
        for record in ArchiveIterator(io.BytesIO(data), check_digests=True):
            _drain(record.raw_stream)
            count += 1
            uri = record.rec_headers.get_header("WARC-Target-URI") or "no URI"
            where = f"{WARC_PATH}: record {count} ({record.rec_type}, {uri})"
            checker = record.digest_checker
            if checker.passed is False:
                problems.append(f"{where}: {'; '.join(checker.problems)} (the record was altered)")
            elif checker.passed is None and record.rec_type != "warcinfo":
                problems.append(f"{where}: carries no digest to check")
    except Exception as exc:  # noqa: BLE001 - any parse failure of a tampered file is a finding, not a crash
        problems.append(f"{WARC_PATH}: unreadable after {where.split(': ', 1)[1]}: {_short(exc)} "
                        "(a record was altered or cut)")
        return
    if count == 0:
        problems.append(f"{WARC_PATH}: holds no WARC records")


def _check_index(index: bytes, warc: bytes, problems: list[str]) -> None:
    try:
        lines = index.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        problems.append(f"{INDEX_PATH}: not UTF-8: {exc}")
        return
    if lines != sorted(lines):
        problems.append(f"{INDEX_PATH}: lines are not sorted")
    for number, line in enumerate(lines, 1):
        where = f"{INDEX_PATH}: line {number}"
        parts = line.split(" ", 2)
        if len(parts) != 3 or len(parts[1]) != 14 or not parts[1].isdigit():
            problems.append(f"{where}: not '<key> <14-digit timestamp> <json>'")
            continue
        try:
            entry = json.loads(parts[2])
            offset, length, url = int(entry["offset"]), int(entry["length"]), entry["url"]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{where}: bad JSON block: {exc}")
            continue
        if offset < 0 or length <= 0 or offset + length > len(warc):
            problems.append(f"{where}: offset {offset} + length {length} is outside {WARC_PATH}")
            continue
        try:
            record = next(iter(ArchiveIterator(io.BytesIO(warc[offset:offset + length]))))
            found = record.rec_headers.get_header("WARC-Target-URI")
        except Exception as exc:  # noqa: BLE001 - a bad offset is a finding, whatever warcio raises
            problems.append(f"{where}: no readable WARC record at offset {offset} ({url}): {_short(exc)}")
            continue
        if found != url:
            problems.append(f"{where}: offset {offset} holds a record for {found!r}, not {url!r}")


def _check_pages(data: bytes, problems: list[str]) -> None:
    try:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{PAGES_PATH}: a line is not JSON: {exc}")
        return
    if not rows or not isinstance(rows[0], dict) or rows[0].get("format") != "json-pages-1.0":
        problems.append(f"{PAGES_PATH}: the first line is not a json-pages-1.0 header")
        return
    pages = rows[1:]
    if not pages:
        problems.append(f"{PAGES_PATH}: lists no page")
    for page in pages:
        if not isinstance(page, dict) or not page.get("url") or not page.get("ts"):
            problems.append(f"{PAGES_PATH}: a page entry lacks url or ts: {page!r}")


# -- small helpers ----------------------------------------------------------------------------


def surt(url: str) -> str:
    """The sort-friendly URL key CDXJ indexes use ("org,example)/path?a=1&b=2").

    The common canonical form: host lower-cased, reversed, a leading "www." dropped, default port
    dropped, path and query lower-cased, query arguments sorted, fragment dropped. Non-HTTP URIs
    (urn:...) are kept as they are.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return url
    host = parts.hostname.lower()
    if host.startswith("www."):
        host = host[4:]
    key = ",".join(reversed(host.split(".")))
    default_port = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and port != default_port:
        key += f":{port}"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return (key + ")" + (parts.path or "/") + (f"?{query}" if query else "")).lower()


def _cdxj_line(url: str, when: datetime, block: dict[str, Any]) -> str:
    stamp = _utc(when).strftime("%Y%m%d%H%M%S")
    return f"{surt(url)} {stamp} {json.dumps(block, ensure_ascii=False, separators=(', ', ': '))}"


def _mime(headers: Sequence[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return "unk"


def _short(exc: Exception) -> str:
    """An exception as one short printable line (warcio quotes raw binary in its messages)."""
    text = (str(exc).splitlines() or [""])[0].split(", first line")[0]
    text = "".join(c if c.isprintable() and ord(c) < 128 else "?" for c in text)
    return f"{type(exc).__name__}: {text[:100]}{'...' if len(text) > 100 else ''}"


def _drain(stream) -> None:
    while stream.read(64 * 1024):
        pass


def _sha256_tag(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise WaczError(f"capture times must carry a time zone, got naive {when.isoformat()}")
    return when.astimezone(timezone.utc)


def _iso(when: datetime) -> str:
    return _utc(when).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _warc_date(when: datetime) -> str:
    return datetime_to_iso_date(_utc(when).replace(tzinfo=None), use_micros=True)
