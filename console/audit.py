"""The audit log: who did what, when, from where.

Rows are append-only (database triggers refuse UPDATE and DELETE). A failed write raises into
the caller on purpose: an action that cannot be audited must not happen.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func
from sqlmodel import select

from storage.db import Store, as_utc
from storage.models import AuditEvent, utcnow

MAX_EVENTS_PER_PAGE = 1000


def audit(store: Store, username: str, action: str, target: str = "", details: dict | None = None,
          ip: str = "") -> None:
    """Record one action. Raises (ValueError for bad arguments, the database's error for a
    failed write) so the caller's request fails instead of going unrecorded."""
    if not isinstance(action, str) or not action.strip():
        raise ValueError("an audit event needs an action (login, view, search, ...)")
    if details is not None and not isinstance(details, dict):
        raise ValueError(f"audit details must be a dict, got {type(details).__name__}")
    row = AuditEvent(at=utcnow(), username=username or "", action=action.strip(), target=target or "",
                     details=dict(details or {}), ip=ip or "")
    with store.session() as s:
        s.add(row)
        s.commit()


def audit_events(store: Store, *, username: str | None = None, action: str | None = None,
                 since: datetime | None = None, limit: int = 200, before_id: int | None = None) -> list[AuditEvent]:
    """Newest first. Page backwards with before_id = the last id of the previous page.
    A naive `since` is taken as UTC."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS_PER_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_EVENTS_PER_PAGE}, got {limit!r}")
    query = select(AuditEvent)
    if username is not None:
        query = query.where(AuditEvent.username == username)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        since = since.replace(tzinfo=timezone.utc) if since.tzinfo is None else since.astimezone(timezone.utc)
        query = query.where(AuditEvent.at >= since)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    with store.session() as s:
        rows = list(s.exec(query.order_by(AuditEvent.id.desc()).limit(limit)))
    for row in rows:  # SQLite hands times back naive: make them UTC-aware on every backend
        row.at = as_utc(row.at)
    return rows


def recent_failures(store: Store, *, target: str, ip: str, window_s: float) -> tuple[int, int]:
    """Failed logins in the last `window_s` seconds for this account (`target`) and from this
    address: what the login throttle counts. Read from the audit log, so every console process and
    restart sees the same history."""
    since = datetime.now(timezone.utc) - timedelta(seconds=window_s)
    with store.session() as s:
        base = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "login_failed", AuditEvent.at >= since)
        for_account = s.exec(base.where(AuditEvent.target == target)).one()
        from_ip = s.exec(base.where(AuditEvent.ip == ip)).one() if ip else 0
    return int(for_account), int(from_ip)
