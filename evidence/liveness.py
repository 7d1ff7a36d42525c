"""Liveness re-checks: is a flagged post (and its media) still online, and when did it go down?

Each check GETs the URL through the shared, polite `Fetcher` and records a `LivenessCheck` row:
    live   the server answered 2xx (a page that merely *says* the post is gone still counts as
           live, unless the platform's config names that text in `removed_markers`)
    gone   HTTP 404 or 410, or a configured removal marker on the post page
    error  anything else (5xx after retries, timeout, refused address...), with the reason
A custody event "liveness_checked" is appended per record. When every record of a takedown
request that was sent (or acknowledged) is gone, the request moves to "removed", dated by the check.

Only the post URL decides "gone": media URLs on CDNs expire or rotate on their own, so a media
URL that disappears is recorded but not taken as proof that the platform acted.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func
from sqlmodel import select

from agents.errors import FetchError
from agents.fetch import Fetcher
from evidence.custody import append_event
from evidence.takedown import TakedownConfig, TakedownError, set_takedown_status
from storage import models as m
from storage.db import Store, as_utc

GONE_STATUSES = (404, 410)
OPEN_STATUSES = ("sent", "acknowledged")  # requests a removal can still resolve


def check_liveness(store: Store, fetcher: Fetcher, evidence_ids: list[int] | None = None, *, actor: str,
                   config: TakedownConfig | None = None) -> list[m.LivenessCheck]:
    """Check the post URL and media URL of each record (all records when `evidence_ids` is None)."""
    if not actor or not actor.strip():
        raise ValueError("a liveness check needs an actor (a user name or 'system')")
    records = _records(store, evidence_ids)
    checks: list[m.LivenessCheck] = []
    for ev in records:
        markers = _markers(config, ev.platform)
        post_text = _post_text(store, ev.post_pk)
        mine = []
        for url, is_post in _urls(ev):
            state, status, detail = probe(fetcher, url, markers if is_post else (), post_text=post_text if is_post else "")
            mine.append(_save(store, ev.id, url, state, status, detail))
        append_event(store, ev.id, "liveness_checked", actor, {
            "checks": [{"id": c.id, "url": c.url, "state": c.state, "http_status": c.http_status, "detail": c.detail}
                       for c in mine],
        })
        checks.extend(mine)
    _resolve_removed(store, {ev.id for ev in records}, actor)
    return checks


def probe(fetcher: Fetcher, url: str, removed_markers: tuple[str, ...] | list[str] = (), *,
          post_text: str = "") -> tuple[str, int | None, str]:
    """(state, HTTP status when known, detail) for one URL.

    The page is written by the poster too (issue 16): a removal notice counts only when the post's
    own text does not carry it and the post's text is no longer on the page, so a post quoting
    "This post has been removed" does not close its own takedown."""
    state, status, detail = _probe(fetcher, url, removed_markers, post_text)
    return state, status, _clean(detail)


def _probe(fetcher: Fetcher, url: str, removed_markers: tuple[str, ...] | list[str],
           post_text: str) -> tuple[str, int | None, str]:
    try:
        fetched = fetcher.get_document(url, accept="*/*")
    except FetchError as exc:
        status = _status_of(exc.reason)
        if status in GONE_STATUSES:
            return "gone", status, f"HTTP {status}"
        if exc.reason == "over size cap":
            # Only a 2xx answer has its body read: the content is there, it is just large (a video).
            return "live", None, f"answered 2xx with a body over the document cap ({exc.detail})"
        return "error", status, str(exc)
    where = "" if fetched.final_url == url else f", redirected to {fetched.final_url}"
    if removed_markers:
        text = fetched.data.decode("utf-8", errors="replace").casefold()
        own = post_text.casefold()
        snippet = " ".join(own.split())[:80]
        still_shown = len(snippet) >= 20 and snippet in " ".join(text.split())
        for marker in removed_markers:
            if marker.casefold() in text:
                if marker.casefold() in own or still_shown:
                    return "live", None, (f"answered 2xx{where}; the removal notice {marker!r} is on the page but so "
                                          "is the post (the notice may be the poster's own words)")
                return "gone", None, f"answered 2xx{where} with the removal notice {marker!r}"
    return "live", None, f"answered 2xx ({len(fetched.data)} bytes, {fetched.declared_mime}){where}"


def due_for_check(store: Store, every_s: float, *, now: datetime | None = None) -> list[int]:
    """Evidence ids never checked or last checked more than `every_s` seconds ago, stalest first."""
    if every_s <= 0:
        raise ValueError(f"the re-check interval must be positive, got {every_s}")
    now = (now or m.utcnow()).astimezone(timezone.utc)
    last = (
        select(m.LivenessCheck.evidence_id, func.max(m.LivenessCheck.checked_at).label("last"))
        .group_by(m.LivenessCheck.evidence_id).subquery()
    )
    with store.session() as s:
        rows = s.exec(
            select(m.Evidence.id, last.c.last).outerjoin(last, last.c.evidence_id == m.Evidence.id).order_by(m.Evidence.id)
        ).all()
    cutoff = now - timedelta(seconds=every_s)
    due = [(as_utc(at), eid) for eid, at in rows if at is None or as_utc(at) <= cutoff]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return [eid for at, eid in sorted(due, key=lambda pair: (pair[0] or epoch, pair[1]))]


def recheck_due(store: Store, fetcher: Fetcher, every_s: float, *, actor: str,
                config: TakedownConfig | None = None) -> list[m.LivenessCheck]:
    """One pass of the scheduled re-check loop: check every record that is due."""
    due = due_for_check(store, every_s)
    return check_liveness(store, fetcher, due, actor=actor, config=config) if due else []


# -- internals -------------------------------------------------------------------------------


def _records(store: Store, evidence_ids: list[int] | None) -> list[m.Evidence]:
    with store.session() as s:
        if evidence_ids is None:
            return list(s.exec(select(m.Evidence).order_by(m.Evidence.id)).all())
        rows = {r.id: r for r in s.exec(select(m.Evidence).where(m.Evidence.id.in_(evidence_ids))).all()}  # type: ignore[union-attr]
    missing = [str(i) for i in evidence_ids if i not in rows]
    if missing:
        raise ValueError(f"no evidence record with id {', '.join(missing)}")
    return [rows[i] for i in dict.fromkeys(evidence_ids)]


def _urls(ev: m.Evidence) -> list[tuple[str, bool]]:
    urls = [(ev.post_url, True)]
    if ev.media_url and ev.media_url != ev.post_url:
        urls.append((ev.media_url, False))
    return urls


def _markers(config: TakedownConfig | None, platform: str) -> tuple[str, ...]:
    if config is None:
        return ()
    try:
        return tuple(config.platform(platform).removed_markers)
    except TakedownError:
        return ()  # a platform without takedown settings has no markers: 404/410 still count


def _post_text(store: Store, post_pk: int | None) -> str:
    if post_pk is None:
        return ""
    with store.session() as s:
        row = s.get(m.Post, post_pk)
        return row.text if row is not None else ""


def _clean(detail: str) -> str:
    """Server-written text (URLs, content types, error bodies) without control characters, which
    would otherwise reach a terminal or a log as escape sequences."""
    return "".join(c if c.isprintable() else "\ufffd" for c in detail)[:2000]


def _status_of(reason: str) -> int | None:
    head, _, code = reason.partition(" ")
    return int(code) if head == "HTTP" and code.isdigit() else None


def _save(store: Store, evidence_id: int, url: str, state: str, status: int | None, detail: str) -> m.LivenessCheck:
    with store.session() as s:
        row = m.LivenessCheck(evidence_id=evidence_id, url=url, state=state, http_status=status,
                              detail=detail[:2000], checked_at=m.utcnow())
        s.add(row)
        s.commit()
        return row


def _latest_post_checks(store: Store, evidence_ids: set[int]) -> dict[int, m.LivenessCheck]:
    """The newest check of each record's post URL."""
    with store.session() as s:
        rows = s.exec(
            select(m.LivenessCheck, m.Evidence.post_url)
            .join(m.Evidence, m.Evidence.id == m.LivenessCheck.evidence_id)
            .where(m.LivenessCheck.evidence_id.in_(evidence_ids))  # type: ignore[union-attr]
            .order_by(m.LivenessCheck.checked_at, m.LivenessCheck.id)
        ).all()
    latest: dict[int, m.LivenessCheck] = {}
    for check, post_url in rows:
        if check.url == post_url:
            latest[check.evidence_id] = check
    return latest


def _resolve_removed(store: Store, checked: set[int], actor: str) -> list[int]:
    """Move open requests whose every record is now gone to "removed"; returns their ids."""
    with store.session() as s:
        open_requests = s.exec(
            select(m.TakedownRequest).where(m.TakedownRequest.status.in_(OPEN_STATUSES))  # type: ignore[union-attr]
        ).all()
    moved = []
    for request in open_requests:
        ids = set(request.evidence_ids or [request.evidence_id])
        if not ids & checked:
            continue
        latest = _latest_post_checks(store, ids)
        if len(latest) < len(ids) or any(c.state != "gone" for c in latest.values()):
            continue
        at = max(as_utc(c.checked_at) for c in latest.values())
        try:
            set_takedown_status(store, request.id, "removed", at=_not_before(at, request), actor=actor,
                                note=_removal_note(latest))
        except TakedownError:
            continue  # another writer moved it meanwhile (e.g. an investigator recorded "refused")
        moved.append(request.id)
    return moved


def _not_before(at: datetime, request: m.TakedownRequest) -> datetime:
    """A record found gone by a check made before the notice was sent is dated at the send (or
    acknowledgement): the removal is only known to follow it, not when exactly it happened."""
    stamps = [as_utc(t) for t in (request.sent_at, request.acknowledged_at) if t is not None]
    return max([at, *stamps])


def _removal_note(latest: dict[int, m.LivenessCheck]) -> str:
    parts = [f"#{eid}: {c.detail} at {as_utc(c.checked_at).isoformat()}" for eid, c in sorted(latest.items())]
    return "liveness re-check found the content gone (" + "; ".join(parts) + ")"
