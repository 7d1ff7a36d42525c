"""The append-only custody log: every event on an evidence item, chained by hash.

Each row's `hash` is the sha256 of its own fields (canonical JSON) and the previous row's hash,
so editing, deleting or re-ordering any row breaks the chain, and `verify_chain` names each
row that no longer fits and how. The chain is one sequence for the whole database (`seq` 1, 2,
3... without gaps), so removing an item's events altogether is visible too.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from storage import models as m
from storage.db import Store, as_utc

GENESIS = "0" * 64
_APPEND_ATTEMPTS = 20  # two writers racing for the same seq: the loser retries on the new tail


def event_hash(seq: int, evidence_id: int | None, action: str, actor: str, at: datetime,
               details: dict[str, Any], prev_hash: str) -> str:
    body = {
        "seq": seq,
        "evidence_id": evidence_id,
        "action": action,
        "actor": actor,
        "at": as_utc(at).isoformat(timespec="microseconds"),
        "details": details,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def add_event(session: Session, evidence_id: int | None, action: str, actor: str,
              details: dict[str, Any] | None = None, *, request_id: str | None = None) -> m.CustodyEvent:
    """Stage one event at the end of the chain in `session`, uncommitted, so a caller can commit
    it together with the change it records (a seal and its "sealed" event land together or not
    at all). A racing writer makes the commit fail on the unique seq: roll back and call again.
    `request_id` names this append for retries (see `event_for_request`)."""
    if not action or not actor:
        raise ValueError("a custody event needs an action and an actor")
    # Round-trip the details through JSON now, so the hash covers exactly what the column keeps.
    details = json.loads(json.dumps(details or {}, default=str))
    tail = chain_tail(session)
    seq = (tail.seq + 1) if tail else 1
    prev = tail.hash if tail else GENESIS
    at = m.utcnow()
    row = m.CustodyEvent(
        seq=seq, evidence_id=evidence_id, action=action, actor=actor, at=at, details=details,
        prev_hash=prev, hash=event_hash(seq, evidence_id, action, actor, at, details, prev), request_id=request_id,
    )
    session.add(row)
    return row


def chain_tail(session: Session) -> m.CustodyEvent | None:
    return session.exec(select(m.CustodyEvent).order_by(m.CustodyEvent.seq.desc()).limit(1)).first()  # type: ignore[attr-defined]


def event_for_request(session: Session, request_id: str | None) -> m.CustodyEvent | None:
    """The event already written under `request_id`, if any."""
    if request_id is None:
        return None
    return session.exec(select(m.CustodyEvent).where(m.CustodyEvent.request_id == request_id)).first()


def append_event(store: Store, evidence_id: int | None, action: str, actor: str,
                 details: dict[str, Any] | None = None, *, request_id: str | None = None) -> m.CustodyEvent:
    """Add one event at the end of the chain and return it.

    With a `request_id`, the append happens at most once: called again (a retry after a lost
    commit acknowledgement, a resumed run), it returns the event written the first time."""
    for _ in range(_APPEND_ATTEMPTS):
        with store.session() as s:
            done = event_for_request(s, request_id)
            if done is not None:
                return done
            row = add_event(s, evidence_id, action, actor, details, request_id=request_id)
            try:
                s.commit()
                return row
            except IntegrityError:
                s.rollback()
    raise RuntimeError(f"could not append to the custody log after {_APPEND_ATTEMPTS} attempts")


def events_for(store: Store, evidence_id: int) -> list[m.CustodyEvent]:
    with store.session() as s:
        return list(s.exec(
            select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == evidence_id).order_by(m.CustodyEvent.seq)
        ).all())


# -- verification ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainProblem:
    seq: int
    evidence_id: int | None  # the evidence item the row is about, when known (not for deleted rows)
    message: str


def verify_chain(store: Store) -> list[ChainProblem]:
    """Walk the log from seq 1 and report every row that no longer fits: a gap (deleted rows), a
    row whose hash no longer matches its fields (edited; a row moved to another place is named
    as such), and a row whose prev_hash does not name the row before it (broken link)."""
    with store.session() as s:
        rows = list(s.exec(select(m.CustodyEvent).order_by(m.CustodyEvent.seq)).all())
    written_at = _written_positions(rows)
    problems: list[ChainProblem] = []
    expected_seq, prev_hash = 1, GENESIS
    for row in rows:
        where = f"custody log row seq {row.seq} ({row.action!r} on evidence {row.evidence_id}, by {row.actor!r})"
        gap = row.seq != expected_seq
        if row.seq > expected_seq:
            missing = f"seq {expected_seq}" if row.seq == expected_seq + 1 else f"seq {expected_seq}..{row.seq - 1}"
            problems.append(ChainProblem(expected_seq, None, f"custody log {missing} is missing (rows deleted)"))
        elif row.seq < expected_seq:  # only possible with a duplicate seq, which the schema forbids
            problems.append(ChainProblem(row.seq, row.evidence_id, f"{where} repeats a sequence number"))
        if _row_hash(row, row.seq) != row.hash:
            problems.append(ChainProblem(row.seq, row.evidence_id, _edit_message(row, where, written_at)))
        elif row.prev_hash != prev_hash and not gap:
            problems.append(ChainProblem(row.seq, row.evidence_id,
                                         f"{where}: link to the previous row is broken (prev_hash {row.prev_hash[:12]}... "
                                         f"but the row before it has hash {prev_hash[:12]}...)"))
        expected_seq, prev_hash = row.seq + 1, row.hash
    return problems


def _row_hash(row: m.CustodyEvent, seq: int) -> str:
    return event_hash(seq, row.evidence_id, row.action, row.actor, as_utc(row.at), dict(row.details or {}), row.prev_hash)


def _written_positions(rows: list[m.CustodyEvent]) -> dict[int, int]:
    """The seq each row was written with (by row id), found by following the stored prev_hash
    links from the genesis: moving a row changes its seq but not the links it was written with."""
    by_prev = {row.prev_hash: row for row in rows}
    positions: dict[int, int] = {}
    link, position = GENESIS, 1
    while link in by_prev and by_prev[link].id not in positions:
        row = by_prev[link]
        positions[row.id] = position
        link, position = row.hash, position + 1
    return positions


def _edit_message(row: m.CustodyEvent, where: str, written_at: dict[int, int]) -> str:
    original = written_at.get(row.id)
    if original is not None and original != row.seq and _row_hash(row, original) == row.hash:
        return f"{where} was moved: it was written as seq {original} (rows re-ordered)"
    return f"{where} was edited: its hash no longer matches its fields"
