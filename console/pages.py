"""The console's HTML pages (server-rendered Jinja2, autoescaped; JavaScript only from /static).

Routes are plain `def`s: FastAPI runs them in its thread pool, so the blocking database, blob
and Chromium work never stalls the event loop. Every page is audited as the contract lists:
views of evidence, blobs and takedowns; searches; reviews; exports; takedown status changes.
"""
from __future__ import annotations

import hmac
import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlmodel import select
from starlette.background import BackgroundTask

from console import actions, charts
from console.actions import ConsoleContext, NotFound, ReviewError, TakedownError
from console.audit import audit, audit_events
from console.auth import authenticate, end_session, has_role, start_session
from console.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    client_ip,
    csrf_protect,
    current,
    require,
    safe_next,
)
from console.throttle import attempt_succeeded, begin_attempt, throttle_name
from console.image_search import SearchRefused
from console.scope import (allowed_names, allowed_takedown, campaign_scope, check_evidence_ids, filter_matches,
                           scope_of)
from console.hardening import SEAL_FAILED, login_token, login_token_ok
from console.gallery import FILTER_FIELDS, VERDICTS, REVIEW_STATES, gallery, parse_filter, campaign_stats
from evidence.takedown import list_takedowns, set_takedown_status
from storage import models as m

SESSION_TTL_S = 8 * 3600
PAGE_SIZE = 48
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Blob types a browser may render inline; anything else (HTML, SVG, archives) downloads.
_INLINE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "video/mp4", "video/webm",
                 "video/quicktime", "video/x-matroska")

public_router = APIRouter()

router = APIRouter(dependencies=[Depends(csrf_protect), Depends(campaign_scope)])  # scope: issue 16


def ctx_of(request: Request) -> ConsoleContext:
    return request.app.state.console


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, base_context(request) | context,
                                                        status_code=status_code)


def base_context(request: Request) -> dict[str, Any]:
    """What the layout needs: the user (for the header), the CSRF token (for every form)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    user = principal.user if principal else None
    return {
        "user": user,
        "csrf_token": principal.csrf_token if principal else "",
        "can_investigate": bool(user) and has_role(user, "investigator"),
        "is_admin": bool(user) and has_role(user, "admin"),
        "path": request.url.path,
    }


def _audit(request: Request, principal: Principal | None, action: str, target: str = "",
           details: dict | None = None) -> None:
    audit(ctx_of(request).store, principal.username if principal else "", action, target, details, client_ip(request))


# -- login, logout, health ----------------------------------------------------------------------
@public_router.get("/healthz", include_in_schema=False)
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@public_router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    # Browsers ask for it on every first visit; bouncing it to /login would only add noise.
    return Response(status_code=204)


def _login_form(request: Request, next_path: str, *, error: str = "", status_code: int = 200,
                username: str = "") -> Response:
    """The login page with a double-submit token: the same random value in a cookie and a hidden
    field. Another site can make a browser post the form but cannot read or set the cookie. A token
    the browser already holds is reused, so a second login page (another tab, a background request
    bounced to /login) does not invalidate the form the person is filling in."""
    held = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    secret = request.app.state.console_secret
    token = held if login_token_ok(secret, held) else login_token(secret)  # only tokens this server signed
    response = render(request, "login.html", {"login_csrf": token, "next": next_path, "error": error,
                                               "username": username}, status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", httponly=True, samesite="strict",
                        secure=ctx_of(request).secure_cookies)
    return response


@public_router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002  (the query's name)
    return _login_form(request, safe_next(next))


@public_router.post("/login", include_in_schema=False)
def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
          next: str = Form("/")) -> Response:  # noqa: A002
    ctx = ctx_of(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if (not expected or not csrf_token or not hmac.compare_digest(expected.encode(), csrf_token.encode())
            or not login_token_ok(request.app.state.console_secret, expected)):
        return _login_form(request, safe_next(next), status_code=403,
                           error="The login form expired or came from another site. Please try again.")
    # Throttle per (account, address) with backoff, counted atomically before the check (issue 16).
    name, ip = throttle_name(username), client_ip(request)
    wait = begin_attempt(ctx.store, name, ip)
    if wait:
        audit(ctx.store, "", "login_throttled", "user:" + name, {"username": name, "wait_s": round(wait, 1)}, ip)
        return _login_form(request, safe_next(next), status_code=429, username=name,
                           error=f"Too many failed logins from here. Wait {max(1, round(wait))} seconds and try again.")
    user = authenticate(ctx.store, name, password)
    if user is None:
        audit(ctx.store, "", "login_failed", "user:" + name, {"username": name}, ip)
        return _login_form(request, safe_next(next), status_code=401, error="Wrong username or password.",
                           username=name)
    attempt_succeeded(ctx.store, name, ip)
    old = request.cookies.get(SESSION_COOKIE)
    if old:  # a fresh session id on every login (no session fixation)
        end_session(ctx.store, old)
    cookie, _csrf = start_session(ctx.store, user, ttl_s=SESSION_TTL_S)
    audit(ctx.store, user.username, "login", "user:" + user.username, {}, client_ip(request))
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_TTL_S, path="/", httponly=True, samesite="strict",
                        secure=ctx.secure_cookies)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", httponly=True, samesite="strict", secure=ctx.secure_cookies)
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, principal: Principal = Depends(current)) -> Response:
    ctx = ctx_of(request)
    end_session(ctx.store, principal.session_cookie)
    _audit(request, principal, "logout", "user:" + principal.username)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=ctx.secure_cookies)
    return response


# -- dashboard ----------------------------------------------------------------------------------
@router.get("/", include_in_schema=False)
def dashboard(request: Request, campaign: str = "", principal: Principal = Depends(current)) -> Response:
    ctx = ctx_of(request)
    names = allowed_names(ctx.store, scope_of(request), actions.campaign_names(ctx.store))
    if campaign and campaign not in names:
        raise HTTPException(404, f"no campaign named {campaign!r}")
    selected = campaign or (names[0] if names else "")
    stats = campaign_stats(ctx.store, selected) if selected else None
    context: dict[str, Any] = {"campaigns": names, "selected": selected, "stats": stats}
    if stats is not None:
        per_platform = sorted(stats["per_platform"].items(), key=lambda kv: (-kv[1], kv[0]))
        context["chart_per_platform"] = charts.horizontal_bars(
            per_platform, testid="chart-per-platform", title="Flagged items per platform")
        context["chart_over_time"] = charts.columns(
            list(stats["flagged_per_day"]), testid="chart-flagged-over-time", title="Flagged items per day (UTC)")
    return render(request, "dashboard.html", context)


# -- gallery ------------------------------------------------------------------------------------
def _platforms(ctx: ConsoleContext) -> list[str]:
    with ctx.store.session() as s:
        return sorted(p for p in s.exec(select(m.Evidence.platform).distinct()).all() if p)


@router.get("/gallery", include_in_schema=False)
def gallery_page(request: Request, principal: Principal = Depends(current)) -> Response:
    ctx = ctx_of(request)
    query = request.query_params
    values = {name: query.get(name, "") for name in FILTER_FIELDS}
    context: dict[str, Any] = {
        "values": values, "campaigns": allowed_names(ctx.store, scope_of(request), actions.campaign_names(ctx.store)),
        "platforms": _platforms(ctx),
        "verdicts": VERDICTS, "review_states": REVIEW_STATES, "items": [], "next_url": None, "error": "",
        "takedown_platforms": [p.name for p in ctx.takedown_config.platforms],
    }
    try:
        f = replace(parse_filter(query), campaign_ids=scope_of(request))
        page = gallery(ctx.store, f, query.get("cursor") or None, PAGE_SIZE)
    except ValueError as exc:
        return render(request, "gallery.html", context | {"error": str(exc)}, status_code=400)
    _audit(request, principal, "search", "/gallery", {k: v for k, v in values.items() if v} |
           ({"cursor": query["cursor"]} if query.get("cursor") else {}) | {"results": len(page.items)})
    if page.next_cursor:
        kept = {k: v for k, v in values.items() if v}
        context["next_url"] = "/gallery?" + urlencode(kept | {"cursor": page.next_cursor})
    return render(request, "gallery.html", context | {"items": page.items})


# -- evidence -----------------------------------------------------------------------------------
@router.get("/evidence/{evidence_id}", include_in_schema=False)
def evidence_page(request: Request, evidence_id: int, principal: Principal = Depends(current)) -> Response:
    try:
        view = actions.evidence_view(ctx_of(request), evidence_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    _audit(request, principal, "view", f"evidence:{evidence_id}")
    return render(request, "evidence.html", {"ev": view, "review_error": SEAL_FAILED if request.query_params.get("error") == "seal" else ""})


@router.post("/evidence/{evidence_id}/review", include_in_schema=False)
def review(request: Request, evidence_id: int, decision: str = Form(""), rationale: str = Form(""),
           case_id: str = Form(""), principal: Principal = Depends(require("investigator"))) -> Response:
    try:
        result = actions.review_and_seal(ctx_of(request), evidence_id, decision, principal.username, rationale, case_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(request, principal, "review", f"evidence:{evidence_id}",
           {"decision": result.decision, "review_id": result.review_id, "sealed": result.seal_sha256 is not None})
    target = f"/evidence/{evidence_id}"
    if result.seal_error:  # the page shows a fixed message, never text from the URL (issue 16)
        _audit(request, principal, "seal_failed", f"evidence:{evidence_id}", {"error": result.seal_error[:500]})
        target += "?error=seal"
    return RedirectResponse(target, status_code=303)


# -- search by image ----------------------------------------------------------------------------
@router.get("/search-image", include_in_schema=False)
def search_image_page(request: Request, principal: Principal = Depends(current)) -> Response:
    return render(request, "search_image.html", {"result": None, "error": ""})


@router.post("/search-image", include_in_schema=False)
def search_image(request: Request, image: UploadFile = File(...), principal: Principal = Depends(current)) -> Response:
    data = image.file.read(actions.MAX_IMAGE_BYTES + 1)
    try:
        with request.app.state.search_limits.slot(principal.username):
            result = filter_matches(ctx_of(request).store, scope_of(request), actions.search_by_image(ctx_of(request), data))
    except SearchRefused as exc:
        return render(request, "search_image.html", {"result": None, "error": str(exc)}, status_code=exc.status)
    except ValueError as exc:
        return render(request, "search_image.html", {"result": None, "error": str(exc)}, status_code=400)
    _audit(request, principal, "search", "/search-image",
           {"filename": (image.filename or "")[:200], "pdq": result["query"]["pdq"],
            "matches": len(result["matches"]), "bank": len(result["bank"])})
    return render(request, "search_image.html", {"result": result, "error": ""})


# -- takedowns ----------------------------------------------------------------------------------
@router.get("/takedowns", include_in_schema=False)
def takedowns_page(request: Request, principal: Principal = Depends(current)) -> Response:
    store, scope = ctx_of(request).store, scope_of(request)
    rows = [actions.takedown_json(r) for r in list_takedowns(store) if allowed_takedown(store, scope, r)]
    return render(request, "takedowns.html", {"rows": list(reversed(rows))})


@router.post("/takedowns", include_in_schema=False)
def build_takedown_page(request: Request, evidence_ids: list[str] = Form([]), platform: str = Form(""),
                        allow_unreviewed: str = Form(""),
                        principal: Principal = Depends(require("investigator"))) -> Response:
    try:
        ids = actions.parse_ids(evidence_ids)
        check_evidence_ids(ctx_of(request).store, scope_of(request), ids)
        row = actions.build_packet(ctx_of(request), ids, platform, principal.username,
                                   allow_unreviewed=allow_unreviewed == "yes")
    except TakedownError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(request, principal, "export", f"takedown:{row.id}",
           {"evidence_ids": list(row.evidence_ids), "platform": row.platform, "packet_sha256": row.packet_sha256})
    return RedirectResponse(f"/takedowns/{row.id}", status_code=303)


@router.get("/takedowns/{request_id}", include_in_schema=False)
def takedown_page(request: Request, request_id: int, principal: Principal = Depends(current)) -> Response:
    try:
        view = actions.takedown_view(ctx_of(request), request_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    _audit(request, principal, "view", f"takedown:{request_id}")
    return render(request, "takedown.html", {"t": view})


def packet_download(request: Request, request_id: int, principal: Principal) -> Response:
    """The packet folder as a zip; shared by the page link and the API."""
    try:
        path, name = actions.packet_zip(ctx_of(request), request_id, principal.username)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    _audit(request, principal, "export", f"takedown:{request_id}", {"download": name})
    return FileResponse(path, media_type="application/zip", filename=name,
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.get("/takedowns/{request_id}/packet.zip", include_in_schema=False)
def takedown_zip(request: Request, request_id: int, principal: Principal = Depends(current)) -> Response:
    return packet_download(request, request_id, principal)


@router.post("/takedowns/{request_id}/status", include_in_schema=False)
def takedown_status(request: Request, request_id: int, status: str = Form(""), note: str = Form(""),
                    principal: Principal = Depends(require("investigator"))) -> Response:
    change_status(request, request_id, status, note, principal)
    return RedirectResponse(f"/takedowns/{request_id}", status_code=303)


def change_status(request: Request, request_id: int, status: str, note: str, principal: Principal) -> m.TakedownRequest:
    ctx = ctx_of(request)
    try:
        actions.takedown_view(ctx, request_id)
        row = set_takedown_status(ctx.store, request_id, status, actor=principal.username, note=note.strip())
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except TakedownError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(request, principal, "takedown_status", f"takedown:{request_id}", {"status": status, "note": note[:500]})
    return row


# -- audit log ----------------------------------------------------------------------------------
@router.get("/admin/audit", include_in_schema=False)
def audit_page(request: Request, username: str = "", action: str = "", before_id: int | None = None,
               principal: Principal = Depends(require("admin"))) -> Response:
    rows = audit_events(ctx_of(request).store, username=username or None, action=action or None, before_id=before_id)
    older = None
    if len(rows) == 200:
        older = "/admin/audit?" + urlencode({k: v for k, v in (("username", username), ("action", action)) if v}
                                             | {"before_id": rows[-1].id})
    return render(request, "audit.html", {"rows": rows, "username": username, "action": action, "older_url": older})


# -- blobs --------------------------------------------------------------------------------------
@router.get("/blob/{sha256}", include_in_schema=False)
def blob(request: Request, sha256: str, principal: Principal = Depends(current)) -> Response:
    """A stored file by sha256. Its type comes from its bytes, never from what a platform said;
    `sandbox` CSP and nosniff keep a hostile file from running anything if opened directly."""
    from detectors.hashing import sniff_mime

    ctx = ctx_of(request)
    if not _SHA256.fullmatch(sha256) or not ctx.blobs.exists(sha256):
        raise HTTPException(404, "no such blob")
    path = ctx.blobs.path(sha256)
    with path.open("rb") as fh:
        mime = sniff_mime(fh.read(1024)) or "application/octet-stream"
    inline = mime in _INLINE_TYPES
    headers = {"content-security-policy": "sandbox", "x-content-type-options": "nosniff",
               "cache-control": "private, max-age=300"}
    if not inline:
        headers["content-disposition"] = f'attachment; filename="{sha256}"'
        actions.log_blob_download(ctx, sha256, principal.username)  # a download is an export
    range_header = request.headers.get("range", "")
    if not range_header or range_header.startswith("bytes=0-"):  # a video's later range requests are one view
        _audit(request, principal, "view", f"blob:{sha256}", {"mime": mime})
    return FileResponse(path, media_type=mime if inline else "application/octet-stream", headers=headers)
