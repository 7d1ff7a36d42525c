"""Per-campaign permissions (issue 16, finding 8): a deployment with several teams lets each
investigator see only the campaigns they belong to; admins see all.

    visible_campaigns(store, user) -> frozenset[int] | None   None: every campaign
    grant(store, username, campaign) / revoke(store, username, campaign)   (`deepwatch user grant`)
    campaign_scope                       router dependency: ids, names and blobs in the path or query
    allowed_names / allowed_takedown / filter_matches   for the listings

Opt-in: with no membership rows at all, everyone sees every campaign (a single-team deployment
keeps working). Once any row exists, a user other than an admin sees only their campaigns; a user
with none sees nothing. Things outside the caller's campaigns answer 404, as if they did not exist.
"""
from __future__ import annotations

from fastapi import HTTPException, Request
from sqlalchemy import func, or_
from sqlmodel import select

from console.auth import AuthError, has_role, normalise_username
from console.hardening import valid_id
from storage import models as m
from storage.db import Store


def visible_campaigns(store: Store, user: m.User) -> frozenset[int] | None:
    if has_role(user, "admin"):
        return None
    with store.session() as s:
        if not s.exec(select(func.count()).select_from(m.CampaignMember)).one():
            return None
        rows = s.exec(select(m.CampaignMember.campaign_id).where(m.CampaignMember.user_id == user.id)).all()
    return frozenset(rows)


def _ids(store: Store, username: str, campaign: str) -> tuple[int, int, str]:
    name = normalise_username(username)
    with store.session() as s:
        user = s.exec(select(m.User).where(m.User.username == name)).first()
        camp = s.exec(select(m.Campaign).where(m.Campaign.name == campaign)).first()
    if user is None:
        raise AuthError(f"no user named {name!r}")
    if camp is None:
        raise AuthError(f"no campaign named {campaign!r}")
    return user.id, camp.id, name


def grant(store: Store, username: str, campaign: str) -> bool:
    """Make `username` a member of `campaign`; False if already one."""
    user_id, campaign_id, _ = _ids(store, username, campaign)
    with store.session() as s:
        if s.get(m.CampaignMember, (user_id, campaign_id)) is not None:
            return False
        s.add(m.CampaignMember(user_id=user_id, campaign_id=campaign_id))
        s.commit()
    return True


def revoke(store: Store, username: str, campaign: str) -> bool:
    user_id, campaign_id, _ = _ids(store, username, campaign)
    with store.session() as s:
        row = s.get(m.CampaignMember, (user_id, campaign_id))
        if row is None:
            return False
        s.delete(row)
        s.commit()
    return True


def _scope(request: Request) -> frozenset[int] | None:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return frozenset()
    cached = getattr(request.state, "campaign_scope", "unset")
    if cached == "unset":
        cached = visible_campaigns(request.app.state.console.store, principal.user)
        request.state.campaign_scope = cached
    return cached


def scope_of(request: Request) -> frozenset[int] | None:
    """The caller's visible campaign ids (None: all), computed once per request."""
    return _scope(request)


def _campaign_id(store: Store, name: str) -> int | None:
    with store.session() as s:
        return s.exec(select(m.Campaign.id).where(m.Campaign.name == name)).first()


def _evidence_campaigns(store: Store, ids: list[int]) -> set[int]:
    with store.session() as s:
        return set(s.exec(select(m.Evidence.campaign_id).where(m.Evidence.id.in_(ids))).all())  # type: ignore[union-attr]


def allowed_takedown(store: Store, scope: frozenset[int] | None, row: m.TakedownRequest) -> bool:
    if scope is None:
        return True
    ids = [i for i in (row.evidence_ids or [row.evidence_id]) if valid_id(i)]
    return bool(ids) and _evidence_campaigns(store, ids) <= scope


def _blob_visible(store: Store, scope: frozenset[int], sha256: str) -> bool:
    ev = m.Evidence
    with store.session() as s:
        hit = s.exec(select(ev.id).where(ev.campaign_id.in_(scope), or_(  # type: ignore[attr-defined]
            ev.media_sha256 == sha256, ev.screenshot_sha256 == sha256, ev.capture_html_sha256 == sha256,
            ev.wacz_sha256 == sha256, ev.working_sha256 == sha256, ev.matched_sha256 == sha256)).limit(1)).first()
        if hit is None:  # a media file seen in one of the caller's campaigns (e.g. a gallery thumbnail)
            hit = s.exec(select(m.Sighting.id).where(m.Sighting.media_sha256 == sha256,
                                                      m.Sighting.campaign_id.in_(scope)).limit(1)).first()  # type: ignore[attr-defined]
    return hit is not None


def campaign_scope(request: Request) -> None:
    """Router-wide dependency: what the path or query names must lie in the caller's campaigns."""
    scope = _scope(request)
    if scope is None:
        return
    store = request.app.state.console.store
    params = request.path_params
    if "evidence_id" in params:
        number = valid_id(str(params["evidence_id"]))
        found = _evidence_campaigns(store, [number]) if number else set()
        if not found or not found <= scope:
            raise HTTPException(404, f"no evidence record with id {params['evidence_id']}")
    if "request_id" in params:
        number = valid_id(str(params["request_id"]))
        with store.session() as s:
            row = s.get(m.TakedownRequest, number) if number else None
        if row is None or not allowed_takedown(store, scope, row):
            raise HTTPException(404, f"no takedown request with id {params['request_id']}")
    if "sha256" in params and not _blob_visible(store, scope, str(params["sha256"])):
        raise HTTPException(404, "no such blob")
    names = [params["name"]] if "name" in params else []
    names += [v for v in request.query_params.getlist("campaign") if v]
    for name in names:
        if _campaign_id(store, name) not in scope:
            raise HTTPException(404, f"no campaign named {name!r}")


def check_evidence_ids(store: Store, scope: frozenset[int] | None, ids: list[int]) -> None:
    """A takedown may name only records the caller can see (404 otherwise, as for one record)."""
    if scope is not None and not _evidence_campaigns(store, ids) <= scope:
        raise HTTPException(404, "no evidence record with one of those ids")


def allowed_names(store: Store, scope: frozenset[int] | None, names: list[str]) -> list[str]:
    if scope is None:
        return names
    with store.session() as s:
        ok = set(s.exec(select(m.Campaign.name).where(m.Campaign.id.in_(scope))).all())  # type: ignore[union-attr]
    return [n for n in names if n in ok]


def filter_matches(store: Store, scope: frozenset[int] | None, result: dict) -> dict:
    """Image-search matches seen only in other teams' campaigns are left out."""
    if scope is None:
        return result
    with store.session() as s:
        seen = set(s.exec(select(m.Sighting.media_sha256).where(
            m.Sighting.media_sha256.in_([x["sha256"] for x in result["matches"]]),  # type: ignore[attr-defined]
            m.Sighting.campaign_id.in_(scope))).all())  # type: ignore[attr-defined]
    return {**result, "matches": [x for x in result["matches"] if x["sha256"] in seen]}
