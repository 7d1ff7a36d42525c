"""A loopback HTTPS server that answers as PeerTube (framatube.org) and Rumble (rumble.com) do.

yt-dlp's extractors only accept their sites' real host names and speak HTTPS to them, so the test
gives those names a loopback address (the `resolve` fixture in test_ytdlp_source.py) and this
server presents a certificate for them, signed by a throwaway CA that the agent is told to trust
(its `ca_file` param). Each route replays the JSON or HTML shape the extractor reads, as seen in
yt-dlp's extractor code (yt_dlp/extractor/peertube.py, rumble.py); the bodies are written for the
tests, not recorded from the live sites.
"""
from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTS = ("framatube.org", "rumble.com", "www.rumble.com")
PEERTUBE_IDS = ("aaaaaaaaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbbbbbbbb2", "ccccccccccccccccccccc3")


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) files, valid for HOSTS."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deepwatch test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _peertube_video(short_uuid: str, index: int) -> dict:
    return {
        "shortUUID": short_uuid,
        "name": f"후보 토론 클립 {index}",
        "description": f"선거 토론 영상 {index} #선거2026",
        "thumbnailPath": f"/lazy-static/thumbnails/{short_uuid}.jpg",
        "publishedAt": f"2026-05-2{index}T03:00:00.000Z",
        "duration": 30,
        "account": {"displayName": "Election Watch", "id": 3, "url": "https://framatube.org/accounts/watch"},
        "channel": {"displayName": "Debates", "id": 7, "url": "https://framatube.org/video-channels/debates"},
        "tags": ["선거", "토론"],
        "files": [{"fileUrl": f"https://framatube.org/static/web-videos/{short_uuid}-360.mp4", "size": 4096,
                   "resolution": {"label": "360p"}, "fps": 25}],
    }


def _answer(host: str, path: str, query: dict[str, list[str]]) -> tuple[int, str, str]:
    """(status, content type, body) for one request."""
    html, js = "text/html; charset=utf-8", "application/json; charset=utf-8"
    if host == "framatube.org":
        if path == "/api/v1/video-channels/debates":
            return 200, js, json.dumps({"displayName": "Debates", "id": 7, "description": "토론",
                                        "ownerAccount": {"name": "watch", "id": 3}})
        if path == "/api/v1/video-channels/debates/videos":
            start, count = int(query["start"][0]), int(query["count"][0])
            data = [{"shortUUID": u, "name": f"clip {i}"} for i, u in enumerate(PEERTUBE_IDS, 1)][start:start + count]
            return 200, js, json.dumps({"total": len(PEERTUBE_IDS), "data": data})
        for index, short_uuid in enumerate(PEERTUBE_IDS, 1):
            if path == f"/api/v1/videos/{short_uuid}":
                if index == 2:  # removed by its uploader
                    return 404, js, json.dumps({"error": "Video not found"})
                return 200, js, json.dumps(_peertube_video(short_uuid, index), ensure_ascii=False)
    if host in ("rumble.com", "www.rumble.com"):
        if path == "/c/ElectionNews":
            if query.get("page") != ["1"]:
                return 404, html, "<h1>404</h1>"
            return 200, html, (
                '<html><body><ol class="videostream-list">'
                '<li><div class="videostream"><a class="videostream__link link" href="/v6abc12-candidate-speech.html">'
                'Candidate speech</a></div></li>'
                '<li><div class="videostream"><a class="videostream__link link" href="/v6def34-region-locked.html">'
                'Region locked</a></div></li>'
                "</ol></body></html>")
        if path == "/v6abc12-candidate-speech.html":
            return 200, html, (
                '<html><head><title>Candidate speech</title></head><body>'
                '<iframe src="https://rumble.com/embed/v6xyz9/" allowfullscreen></iframe>'
                '<div class="media-description">지지 연설 전문 #지방선거</div></body></html>')
        if path == "/v6def34-region-locked.html":
            return 451, html, "<h1>Unavailable in your region</h1>"
        if path == "/embedJS/u3" and query.get("v") == ["v6xyz9"]:
            return 200, js, json.dumps({
                "title": "Candidate speech", "pubDate": "2026-05-24T10:00:00+00:00", "duration": 30, "live": 0,
                "author": {"name": "ElectionNews", "url": "https://rumble.com/c/ElectionNews"},
                "ua": {"mp4": {"360": {"url": "https://rumble.com/video/v6xyz9.mp4", "meta": {"h": 360, "w": 640, "size": 4096}}}},
                "i": "https://rumble.com/thumbs/v6xyz9.jpg",
            })
    return 404, "text/plain", "not found"


class SitesServer:
    """HTTPS on `address`:443 for HOSTS; `requests` logs (host, path, query) of each request."""

    def __init__(self, address: str, cert: Path, key: Path):
        self.requests: list[tuple[str, str, dict]] = []
        log = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)._replace(path=urlsplit(self.path).path.rstrip("/") or "/")
                host = (self.headers.get("Host") or "").split(":")[0]
                query = parse_qs(parts.query)
                log.append((host, parts.path, query))
                status, content_type, body = _answer(host, parts.path, query)
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((address, 443), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "SitesServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
