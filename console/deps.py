"""Who is asking, and may they: the login gate, role checks, CSRF checks and security headers.

Access is denied by default. `LoginGate` (ASGI middleware) runs before routing and before any
request body is read: it resolves the caller from the session cookie (pages and API) or a bearer
token (API only) and refuses everyone else, except on the few public paths (/login, /static,
/healthz). So a route added later is protected without anyone remembering to protect it, and an
anonymous client cannot make the server parse an upload. Routes then ask for a role with
`require(...)`, and every state-changing request made with a session cookie must carry the
session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`); bearer-token calls come
from partners' systems, not browsers, and need none.
"""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

from anyio import to_thread
from fastapi import HTTPException, Request

from console.auth import has_role, session_for, user_for_token
from storage.models import User

SESSION_COOKIE = "dw_session"
LOGIN_CSRF_COOKIE = "dw_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_BYTES = 50 * 1024 * 1024  # an image to search by or a form; nothing bigger is legitimate

# Scripts and styles only from our own /static; media only from our own /blob; no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def is_public(path: str) -> bool:
    """The only paths an anonymous caller may reach."""
    return path in ("/login", "/healthz", "/favicon.ico") or path.startswith("/static/")


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user: User
    via: str  # "session" | "token"
    csrf_token: str = ""  # the session's token; "" for bearer tokens
    session_cookie: str = ""

    @property
    def username(self) -> str:
        return self.user.username


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site ("open redirect")."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in target):  # browsers read "\" as "/" and drop tabs
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def login_url(path: str, query: str) -> str:
    here = path + (f"?{query}" if query else "")
    return "/login?next=" + quote(here, safe="/")


def _principal(store: Any, path: str, headers: dict[str, str], cookies: dict[str, str]) -> Principal | None:
    """Blocking: database lookups. Bearer tokens count on /api only; a bad token is a refusal
    even when a valid session cookie rides along (the caller said who it is)."""
    authorization = headers.get("authorization")
    if is_api(path) and authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        user = user_for_token(store, token.strip())
        return Principal(user, "token") if user is not None else None
    cookie = cookies.get(SESSION_COOKIE)
    found = session_for(store, cookie) if cookie else None
    if found is None:
        return None
    user, session = found
    return Principal(user, "session", session.csrf_token, cookie)


def _cookies(raw: str) -> dict[str, str]:
    from starlette.requests import cookie_parser

    return cookie_parser(raw)


class LoginGate:
    """ASGI middleware: identify the caller; refuse anonymous ones outside the public paths
    (pages: 303 to /login?next=..., API: 401 JSON); cap request bodies."""

    def __init__(self, app: Callable[..., Awaitable[None]], store: Any):
        self.app, self.store = app, store

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await _plain(send, 413, b"request body too large")
            return
        path = scope["path"]
        principal = None
        if path not in ("/healthz",) and not path.startswith("/static/"):  # no database work for assets
            principal = await to_thread.run_sync(_principal, self.store, path, headers, _cookies(headers.get("cookie", "")))
        scope.setdefault("state", {})["principal"] = principal
        if principal is None and not is_public(path):
            if is_api(path):
                body = json.dumps({"detail": "login required: a session cookie or an 'Authorization: Bearer' token"})
                await _send(send, 401, body.encode(), "application/json",
                            [(b"www-authenticate", b'Bearer realm="deepwatch"')])
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                await _send(send, 303, b"", "text/plain", [(b"location", login_url(path, query).encode("latin-1"))])
            return
        await self.app(scope, _capped(receive), send)


def _capped(receive: Callable) -> Callable:
    """Refuse a body that grows past the cap even when no Content-Length announced it."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise HTTPException(413, "request body too large")
        return message

    return wrapped


async def _plain(send: Callable, status: int, body: bytes) -> None:
    await _send(send, status, body, "text/plain; charset=utf-8", [])


async def _send(send: Callable, status: int, body: bytes, content_type: str, extra: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware: the security headers on every response, errors and redirects included.
    A route may set a stricter CSP of its own (blobs: `sandbox`); it is kept."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- dependencies -------------------------------------------------------------------------------
def current(request: Request) -> Principal:
    """The caller LoginGate identified (it let no anonymous request reach a protected route)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:  # only on public paths; a route there must not ask for a user
        raise HTTPException(401, "login required")
    return principal


def require(role: str) -> Callable[[Request], Principal]:
    """A dependency: the caller, if their role is at least `role`; 403 otherwise."""

    def dependency(request: Request) -> Principal:
        principal = current(request)
        if not has_role(principal.user, role):
            raise HTTPException(403, f"this needs the {role} role; you are {principal.user.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


async def csrf_protect(request: Request) -> None:
    """Router-wide dependency: a state-changing request on a session must carry its CSRF token."""
    if request.method in SAFE_METHODS:
        return
    principal = current(request)
    if principal.via != "session":
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and not is_api(request.url.path):
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""
