"""Console hardening from the outside probe (issue 16): id validation, relative trailing-slash
redirects, signed login CSRF tokens, Cache-Control and HSTS, fixed error messages.

    Hardening(app, secure_cookies=...)     ASGI middleware (ids, slashes, caching headers)
    valid_id(value) -> int | None          an id the database can hold, else None
    login_token(secret) / login_token_ok(secret, token)
    console_secret() -> bytes              DEEPWATCH_CONSOLE_SECRET, or a per-process random one
    SEAL_FAILED                            the one message shown after a failed re-seal
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from typing import Awaitable, Callable
from urllib.parse import parse_qsl

# Every id column is a 32-bit INTEGER on PostgreSQL; SQLite's are 64-bit. Anything above the smaller
# limit cannot name a row, and above 64 bits the drivers raise (a 500 or a dropped connection).
MAX_ID = 2**31 - 1
ID_QUERY_PARAMS = ("before_id",)
# Path segments that are ids: /evidence/N, /takedowns/N and their /api/v1 twins.
_ID_PATH = re.compile(r"^(?:/api/v1)?/(?:evidence|takedowns)/(?P<id>[^/]+)(?:/|$)")

LOGIN_TOKEN_MAX_AGE_S = 3600
MIN_SECRET_CHARS = 32
HSTS = "max-age=31536000; includeSubDomains"
SEAL_FAILED = ("The review was saved, but re-sealing the record failed (e.g. the time-stamp authority "
               "did not answer). An admin can see the cause in the audit log; re-seal later.")

_process_secret: bytes | None = None


def console_secret() -> bytes:
    """The key that signs login CSRF tokens. Set DEEPWATCH_CONSOLE_SECRET (32+ characters) when
    several console processes serve one site, so a token from one is accepted by another."""
    global _process_secret
    configured = os.environ.get("DEEPWATCH_CONSOLE_SECRET", "")
    if configured:
        if len(configured) < MIN_SECRET_CHARS:
            raise ValueError(f"DEEPWATCH_CONSOLE_SECRET is too short: use at least {MIN_SECRET_CHARS} random characters")
        return configured.encode("utf-8")
    if _process_secret is None:
        _process_secret = secrets.token_bytes(32)
    return _process_secret


def valid_id(value: object) -> int | None:
    """`value` as a row id (1..MAX_ID), or None: a non-number, zero, negative or too large."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    else:
        return None
    return number if 1 <= number <= MAX_ID else None


# -- signed login CSRF tokens -------------------------------------------------------------------
def _mac(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode("ascii"), hashlib.sha256).hexdigest()


def login_token(secret: bytes, now: float | None = None) -> str:
    """random.issued-at.hmac: a planted cookie with a field of the same value is refused unless
    this server signed it, and a harvested token stops working after an hour."""
    body = f"{secrets.token_urlsafe(24)}.{int(now if now is not None else time.time())}"
    return f"{body}.{_mac(secret, body)}"


def login_token_ok(secret: bytes, token: str, now: float | None = None) -> bool:
    if not isinstance(token, str) or len(token) > 200 or token.count(".") != 2:
        return False
    nonce, issued, mac = token.split(".")
    if not issued.isdigit() or not hmac.compare_digest(mac, _mac(secret, f"{nonce}.{issued}")):
        return False
    age = (now if now is not None else time.time()) - int(issued)
    return 0 <= age <= LOGIN_TOKEN_MAX_AGE_S


# -- middleware ---------------------------------------------------------------------------------
def bad_id_in(path: str, query: bytes) -> bool:
    """True when the path or a *_id query parameter carries something that is not a row id."""
    found = _ID_PATH.match(path)
    if found and valid_id(found.group("id")) is None:
        return True
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=False):
        if key in ID_QUERY_PARAMS and valid_id(value) is None:
            return True
    return False


def relative_slash_target(path: str, query: bytes) -> str:
    """Where /x/ redirects: a relative path only (never the Host header), and never '//host'."""
    target = "/" + path.rstrip("/").lstrip("/")
    return target + ("?" + query.decode("latin-1") if query else "")


class Hardening:
    """ASGI middleware. Ids that cannot exist are a 404 (pages) or 422 (API) before any handler or
    driver sees them; /x/ redirects to /x by a relative Location; authenticated answers get
    `Cache-Control: no-store` (a shared computer's browser keeps no evidence), and with secure
    cookies every answer gets HSTS."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, secure_cookies: bool = False):
        self.app, self.secure_cookies = app, secure_cookies

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, query = scope["path"], scope.get("query_string", b"")
        if path != "/" and path.endswith("/") and not path.startswith("/static/"):
            await self._answer(send, 308, b"", "text/plain", [(b"location", relative_slash_target(path, query).encode("latin-1"))])
            return
        if bad_id_in(path, query):
            api = path.startswith("/api/")
            body = b'{"detail": "not a valid id: ids are whole numbers from 1 to 2147483647"}' if api else b"not found"
            await self._answer(send, 422 if api else 404, body, "application/json" if api else "text/plain; charset=utf-8", [])
            return
        static = path.startswith("/static/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if static or k.lower() != b"cache-control"]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if self.secure_cookies:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _answer(self, send: Callable, status: int, body: bytes, content_type: str, extra: list) -> None:
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store"), *extra]
        if self.secure_cookies:
            headers.append((b"strict-transport-security", HSTS.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
