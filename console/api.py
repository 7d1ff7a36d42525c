"""The JSON API under /api/v1, for partners' systems (bearer tokens) and scripts.

Same rules as the pages: login required (a bearer token or a session cookie; with a cookie,
state changes need the X-CSRF-Token header), the same roles, the same audit rows. The OpenAPI
document (/api/openapi.json) and its reader (/api/docs) are behind the login too.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from console import actions
from console.actions import NotFound, ReviewError, TakedownError
from console.audit import audit_events
from console.hardening import MAX_ID
from console.image_search import SearchRefused
from console.scope import allowed_takedown, campaign_scope, check_evidence_ids, filter_matches, scope_of
from console.deps import Principal, csrf_protect, current, require
from console.gallery import MAX_LIMIT, campaign_stats, gallery, parse_filter
from console.pages import _audit, change_status, ctx_of, packet_download, render
from evidence.takedown import list_takedowns

router = APIRouter(prefix="/api", dependencies=[Depends(csrf_protect), Depends(campaign_scope)])


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: str = Field(description="confirmed | dismissed")
    rationale: str = Field(description="Why: what you saw, what you checked")
    case_id: Optional[str] = Field(None, description="Case id for the known-fakes bank (confirmations)")


class TakedownBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, description="Evidence records, all on one platform")
    platform: str = Field(description="A platform named in the takedown configuration")
    allow_unreviewed: bool = Field(False, description="Include records no investigator has confirmed; the notice marks them")


class StatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(description="sent | acknowledged | removed | refused")
    note: str = ""


def _json(value: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(actions.jsonable(value), status_code=status_code)


# -- evidence -----------------------------------------------------------------------------------
@router.get("/v1/evidence", summary="Evidence matching the gallery filters, newest first (keyset paged)")
def list_evidence(request: Request,
                  campaign: Optional[str] = None, platform: Optional[str] = None, account: Optional[str] = None,
                  q: Optional[str] = Query(None, description="Keyword in post text or hashtags (any script)"),
                  verdict: Optional[str] = None, min_score: Optional[str] = None,
                  since: Optional[str] = Query(None, description="Post time from (ISO 8601; UTC if no zone)"),
                  until: Optional[str] = Query(None, description="Post time before (ISO 8601)"),
                  review: Optional[str] = None, cursor: Optional[str] = None,
                  limit: int = Query(48, ge=1, le=MAX_LIMIT),
                  principal: Principal = Depends(current)) -> JSONResponse:
    try:
        f = replace(parse_filter(request.query_params), campaign_ids=scope_of(request))
        page = gallery(ctx_of(request).store, f, cursor or None, limit)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    filters = {k: v for k, v in request.query_params.items() if v}
    _audit(request, principal, "search", "/api/v1/evidence", filters | {"results": len(page.items)})
    return _json({"items": page.items, "next_cursor": page.next_cursor})


@router.get("/v1/evidence/{evidence_id}", summary="One evidence record in full, with custody log and reviews")
def get_evidence(request: Request, evidence_id: int, principal: Principal = Depends(current)) -> JSONResponse:
    try:
        view = actions.evidence_view(ctx_of(request), evidence_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    _audit(request, principal, "view", f"evidence:{evidence_id}")
    return _json(view)


@router.post("/v1/evidence/{evidence_id}/review", summary="Confirm or dismiss a record (investigators); re-seals it")
def review_evidence(request: Request, evidence_id: int, body: ReviewBody,
                    principal: Principal = Depends(require("investigator"))) -> JSONResponse:
    try:
        result = actions.review_and_seal(ctx_of(request), evidence_id, body.decision, principal.username,
                                         body.rationale, body.case_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(request, principal, "review", f"evidence:{evidence_id}",
           {"decision": result.decision, "review_id": result.review_id, "sealed": result.seal_sha256 is not None})
    return _json({"evidence_id": evidence_id, "review_status": result.decision, **actions.jsonable(result)})


# -- search by image ----------------------------------------------------------------------------
@router.post("/v1/search/image", summary="Near-duplicates of an uploaded image, and known-fakes bank matches")
def search_image(request: Request, image: UploadFile = File(...), principal: Principal = Depends(current)) -> JSONResponse:
    data = image.file.read(actions.MAX_IMAGE_BYTES + 1)
    try:
        with request.app.state.search_limits.slot(principal.username):
            result = filter_matches(ctx_of(request).store, scope_of(request), actions.search_by_image(ctx_of(request), data))
    except SearchRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(request, principal, "search", "/api/v1/search/image",
           {"filename": (image.filename or "")[:200], "pdq": result["query"]["pdq"],
            "matches": len(result["matches"]), "bank": len(result["bank"])})
    return _json(result)


# -- campaigns ----------------------------------------------------------------------------------
@router.get("/v1/campaigns/{name}/stats", summary="A campaign's stage counts, flagged per day and per platform, top re-uploads")
def stats(request: Request, name: str, principal: Principal = Depends(current)) -> JSONResponse:
    try:
        return _json(campaign_stats(ctx_of(request).store, name))
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None


# -- takedowns ----------------------------------------------------------------------------------
@router.get("/v1/takedowns", summary="Every takedown request, oldest first")
def takedowns(request: Request, principal: Principal = Depends(current)) -> JSONResponse:
    store, scope = ctx_of(request).store, scope_of(request)
    return _json({"items": [actions.takedown_json(r) for r in list_takedowns(store) if allowed_takedown(store, scope, r)]})


@router.post("/v1/takedowns", status_code=201, summary="Build a signed takedown packet (investigators)")
def build_takedown(request: Request, body: TakedownBody,
                   principal: Principal = Depends(require("investigator"))) -> JSONResponse:
    check_evidence_ids(ctx_of(request).store, scope_of(request), body.evidence_ids)
    try:
        row = actions.build_packet(ctx_of(request), body.evidence_ids, body.platform, principal.username,
                                   allow_unreviewed=body.allow_unreviewed)
    except TakedownError as exc:
        raise HTTPException(400, str(exc)) from None
    _audit(request, principal, "export", f"takedown:{row.id}",
           {"evidence_ids": list(row.evidence_ids), "platform": row.platform, "packet_sha256": row.packet_sha256})
    return _json(actions.takedown_json(row), status_code=201)


@router.get("/v1/takedowns/{request_id}", summary="One takedown request and the statuses it can move to")
def takedown(request: Request, request_id: int, principal: Principal = Depends(current)) -> JSONResponse:
    try:
        view = actions.takedown_view(ctx_of(request), request_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    _audit(request, principal, "view", f"takedown:{request_id}")
    return _json(view)


@router.get("/v1/takedowns/{request_id}/packet.zip", summary="The signed packet as a zip",
            response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def takedown_zip(request: Request, request_id: int, principal: Principal = Depends(current)) -> Response:
    return packet_download(request, request_id, principal)


@router.post("/v1/takedowns/{request_id}/status", summary="Record what happened to a request (investigators)")
def takedown_status(request: Request, request_id: int, body: StatusBody,
                    principal: Principal = Depends(require("investigator"))) -> JSONResponse:
    row = change_status(request, request_id, body.status, body.note, principal)
    return _json(actions.takedown_json(row))


# -- audit log ----------------------------------------------------------------------------------
@router.get("/v1/audit", summary="The audit log, newest first (admins)")
def audit_log(request: Request, username: Optional[str] = None, action: Optional[str] = None,
              before_id: Optional[int] = None, limit: int = Query(200, ge=1, le=1000),
              principal: Principal = Depends(require("admin"))) -> JSONResponse:
    rows = audit_events(ctx_of(request).store, username=username, action=action, before_id=before_id, limit=limit)
    items = [{"id": r.id, "at": r.at, "username": r.username, "action": r.action, "target": r.target,
              "details": r.details, "ip": r.ip} for r in rows]
    return _json({"items": items, "next_before_id": rows[-1].id if len(rows) == limit else None})


# -- the API's own description ------------------------------------------------------------------
@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, principal: Principal = Depends(current)) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
def docs(request: Request, principal: Principal = Depends(current)) -> Response:
    """The API described from its OpenAPI document, rendered here (Swagger UI would need inline
    scripts and a CDN, which the console's CSP and offline deployments rule out)."""
    schema = request.app.openapi()
    operations = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = [p.get("name", "") for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {})
            operations.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                               "params": params, "body": ", ".join(body)})
    return render(request, "api_docs.html", {"operations": operations})
