"""Takedown request tracking: drafted -> sent -> acknowledged -> removed | refused.

Holds `STATUSES` / `NEXT_STATUSES`, the recording of a freshly built packet as a drafted request,
and `get_takedown`, `set_takedown_status` and `list_takedowns`; every status move is stamped and
written to the custody log of each record the request covers.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from sqlmodel import select

from evidence.custody import append_event
from evidence.takedown_config import PlatformSettings, Sender, TakedownConfig, TakedownError
from storage import models as m
from storage.db import Store, as_utc

# -- tracking ------------------------------------------------------------------------------

STATUSES = ("drafted", "sent", "acknowledged", "removed", "refused")
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "drafted": ("sent",),
    "sent": ("acknowledged", "removed", "refused"),
    "acknowledged": ("removed", "refused"),
    "removed": (),
    "refused": (),
}
_STAMP = {"sent": "sent_at", "acknowledged": "acknowledged_at", "removed": "resolved_at", "refused": "resolved_at"}


def _record_request(store: Store, ids: list[int], settings: PlatformSettings, config: TakedownConfig,
                    sender: Sender, out: Path, packet_sha256: str) -> m.TakedownRequest:
    with store.session() as s:
        row = m.TakedownRequest(
            evidence_id=ids[0], evidence_ids=list(ids), platform=settings.name, status="drafted",
            packet_path=str(out), packet_sha256=packet_sha256,
            legal_basis=", ".join(b.id for b in config.bases_for(settings)), sender=sender.one_line(),
        )
        s.add(row)
        s.commit()
        return row


def get_takedown(store: Store, request_id: int) -> m.TakedownRequest:
    with store.session() as s:
        row = s.get(m.TakedownRequest, request_id)
    if row is None:
        raise TakedownError(f"no takedown request with id {request_id}")
    return row


def set_takedown_status(store: Store, request_id: int, status: str, *, at: datetime | None = None,
                        actor: str, note: str = "") -> m.TakedownRequest:
    """Move a request to `status`, stamping the date; each of its records gets a custody event."""
    if status not in STATUSES:
        raise TakedownError(f"unknown takedown status {status!r}; expected one of {', '.join(STATUSES)}")
    if not actor or not actor.strip():
        raise TakedownError("a takedown status change needs an actor (who recorded it)")
    if at is not None and at.tzinfo is None:
        raise TakedownError(f"the time of a status change needs a zone, got {at.isoformat()}")
    at = (at or m.utcnow()).astimezone(timezone.utc)
    with store.session() as s:
        # Row lock on PostgreSQL: a liveness check and an investigator moving the same request
        # at once must not both succeed from the same state.
        row = s.exec(select(m.TakedownRequest).where(m.TakedownRequest.id == request_id).with_for_update()).first()
        if row is None:
            raise TakedownError(f"no takedown request with id {request_id}")
        current = row.status
        if status not in NEXT_STATUSES.get(current, ()):
            allowed = NEXT_STATUSES.get(current, ())
            then = f"from '{current}' it can go to {', '.join(repr(x) for x in allowed)}" if allowed else f"'{current}' is final"
            raise TakedownError(f"takedown request {request_id} cannot go from '{current}' to '{status}'; {then}")
        earlier = [as_utc(t) for t in (row.created_at, row.sent_at, row.acknowledged_at) if t is not None]
        latest = max(earlier) if earlier else None
        # Dates may be entered after the fact, but never before the step they follow (a notice
        # cannot be sent before its packet was drafted, nor answered before it was sent).
        if latest is not None and at < latest:
            raise TakedownError(
                f"takedown request {request_id}: '{status}' at {at.isoformat()} would be before its last "
                f"recorded step at {latest.isoformat()}"
            )
        setattr(row, _STAMP[status], at)
        row.status, row.updated_at = status, m.utcnow()
        if note:
            row.notes = (row.notes + "\n" if row.notes else "") + f"{at.isoformat()} {status} ({actor}): {note}"
        s.add(row)
        s.commit()
        evidence_ids = list(row.evidence_ids or [row.evidence_id])
    for evidence_id in evidence_ids:
        append_event(store, evidence_id, f"takedown_{status}", actor, {
            "takedown_request_id": request_id, "from": current, "to": status, "at": at.isoformat(), "note": note,
        })
    return row


def list_takedowns(store: Store, status: Optional[str] = None, *, platform: Optional[str] = None) -> list[m.TakedownRequest]:
    if status is not None and status not in STATUSES:
        raise TakedownError(f"unknown takedown status {status!r}; expected one of {', '.join(STATUSES)}")
    q = select(m.TakedownRequest)
    if status is not None:
        q = q.where(m.TakedownRequest.status == status)
    if platform is not None:
        q = q.where(m.TakedownRequest.platform == platform)
    with store.session() as s:
        return list(s.exec(q.order_by(m.TakedownRequest.id)).all())
