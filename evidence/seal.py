"""Sealing an evidence record: its canonical form, signed and (optionally) timestamped.

A seal freezes what a record said when it was sealed: the evidence row, its media's identity
and hashes, every detection behind the verdict, every sighting, the post, the review history and
the hashes of every file it rests on. The canonical JSON (sorted keys, ISO UTC times, stable list
order) is hashed; the Ed25519 key outside the database signs the digest; a configured RFC 3161
authority stamps it. The sealed document also anchors the custody log (the seq and hash of its
last row at sealing), so even a log rewritten with recomputed hashes is caught up to that row.

A record may be sealed again after a legitimate change (a review): verification uses the latest
seal, and each sealing is a custody event.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from evidence.custody import add_event, chain_tail, event_for_request
from evidence.signing import Signer
from evidence.tsa import timestamp, verify_token
from storage import models as m
from storage.db import Store, as_utc

SEAL_FORMAT = "deepwatch-seal/2"
# Format 1 sealed every sighting of the media, in every post: a record about one post then
# grew with the item's spread, and sealing all k records of an item seen k times cost k^2
# rows. Format 2 seals the sightings in the record's own post; the spread stays a live query
# (`evidence show`, the takedown packet). Seals of format 1 are still read and verified as such.
LEGACY_SEAL_FORMAT = "deepwatch-seal/1"
_ATTEMPTS = 20  # racing custody writers: retry the seal's commit on the new chain tail


class SealError(RuntimeError):
    pass


def canonical_record(store: Store, evidence_id: int, seal_format: str = SEAL_FORMAT) -> dict[str, Any]:
    """The fields of one evidence record that a seal of `seal_format` vouches for, as plain
    JSON values."""
    with store.session() as s:
        ev = s.get(m.Evidence, evidence_id)
        if ev is None:
            raise SealError(f"no evidence record with id {evidence_id}")
        post = s.get(m.Post, ev.post_pk)
        media = s.get(m.Media, ev.media_sha256)
        campaign = s.get(m.Campaign, ev.campaign_id)
        # A re-upload's verdict rests on the detections of the copy that judged it: seal both.
        shas = sorted({ev.media_sha256} | ({ev.matched_sha256} if ev.matched_sha256 else set()))
        detections = s.exec(select(m.Detection).where(m.Detection.media_sha256.in_(shas))).all()  # type: ignore[union-attr]
        where = [m.Sighting.media_sha256 == ev.media_sha256]
        if seal_format != LEGACY_SEAL_FORMAT:
            where.append(m.Sighting.post_pk == ev.post_pk)
        sightings = s.exec(select(m.Sighting, m.Post).join(m.Post, m.Post.id == m.Sighting.post_pk).where(*where)).all()
        reviews = s.exec(select(m.Review).where(m.Review.evidence_id == evidence_id)).all()
    return {
        "evidence": {
            "id": ev.id,
            "campaign": campaign.name if campaign else None,
            "platform": ev.platform,
            "post_id": ev.post_id,
            "post_url": ev.post_url,
            "account": ev.account,
            "media_sha256": ev.media_sha256,
            "media_url": ev.media_url,
            "verdict": ev.verdict,
            "score": ev.score,
            "reasons": list(ev.reasons or []),
            "matched_sha256": ev.matched_sha256,
            "match_distance": ev.match_distance,
            "phash": ev.phash,
            "created_at": _time(ev.created_at),
            "captured_at": _time(ev.captured_at),
            "screenshot_sha256": ev.screenshot_sha256,
            "capture_html_sha256": ev.capture_html_sha256,
            "wacz_sha256": ev.wacz_sha256,
            "working_sha256": ev.working_sha256,
            "capture_ip": ev.capture_ip,
            "capture_tool": ev.capture_tool,
            "capture_operator": ev.capture_operator,
            "capture_headers": dict(ev.capture_headers or {}),
            "review_status": ev.review_status,
            "in_ban_window": ev.in_ban_window,
            "ai_label_present": ev.ai_label_present,
            "campaign_purpose": ev.campaign_purpose,
            "legal_notes": ev.legal_notes,
        },
        "media": {
            "sha256": media.sha256,
            "kind": media.kind,
            "mime": media.mime,
            "size": media.size,
            "phash": media.phash,
            "pdq": media.pdq,
            "duplicate_of": media.duplicate_of,
        },
        "post": {
            "platform": post.platform,
            "post_id": post.post_id,
            "url": post.url,
            "account": post.account,
            "text": post.text,
            "created_at": _time(post.created_at),
            "screenshot_sha256": post.screenshot_sha256,
        },
        "detections": sorted(
            ({
                "media_sha256": d.media_sha256,
                "detector": d.detector,
                "version": d.version,
                "model_key": d.model_key,
                "outcome": d.outcome,
                "score": d.score,
                "threshold": d.threshold,
                "reasons": list(d.reasons or []),
            } for d in detections),
            key=detection_key,
        ),
        "sightings": sorted(
            ({
                "platform": p.platform,
                "post_id": p.post_id,
                "post_url": p.url,
                "media_url": sg.media_url,
            } for sg, p in sightings),
            key=sighting_key,
        ),
        "reviews": [
            {"decision": r.decision, "reviewer": r.reviewer, "rationale": r.rationale, "at": _time(r.at)}
            for r in sorted(reviews, key=lambda r: (as_utc(r.at), r.id))
        ],
    }


def detection_key(d: dict[str, Any]) -> tuple[str, str, str]:
    return (d["media_sha256"], d["detector"], d["model_key"])


def sighting_key(sg: dict[str, Any]) -> tuple[str, str, str]:
    return (sg["platform"], sg["post_id"], sg["media_url"])


def canonical_json(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def seal_evidence(store: Store, evidence_id: int, signer: Signer, *, tsa_url: str | None = None,
                  tsa_cert: bytes | None = None, actor: str = "system", tsa_timeout_s: float = 10.0,
                  request_id: str | None = None, check_previous: bool = True) -> m.Seal:
    """Seal the record as it is now; store the seal and a "sealed" custody event together.

    The authority is asked before anything is written, so a refusal (TimestampError) leaves no
    seal and no event behind. `tsa_cert` (PEM) makes the fresh token be checked against the
    authority's certificate before it is kept. With a `request_id` the seal is made at most
    once: a retry (the first commit went through, its acknowledgement was lost) returns it.

    A record sealed before must still match that seal (verify.ensure_intact), else TamperedError:
    re-sealing an edited row would launder the edit. `check_previous=False` is for callers that
    ran that check themselves just before making a change of their own (review, assessment)."""
    done = _seal_of_request(store, request_id)
    if done is not None:
        return done
    signer = signer.current()  # a key rotated while this process ran: sign with the new one
    if check_previous:
        from evidence.verify import ensure_intact, trusted_keys

        ensure_intact(store, evidence_id, actor=actor, action="seal", key_ids=signer_keys(signer, trusted_keys))
    record = canonical_record(store, evidence_id)
    with store.session() as s:
        tail = chain_tail(s)
    document = {
        "format": SEAL_FORMAT,
        "evidence_id": evidence_id,
        "record": record,
        "custody_anchor": {"seq": tail.seq, "hash": tail.hash} if tail else None,
    }
    record_json = canonical_json(document)
    digest = hashlib.sha256(record_json.encode("utf-8")).digest()
    token = None
    if tsa_url:
        token = timestamp(digest, tsa_url, timeout_s=tsa_timeout_s)
        if tsa_cert is not None:
            verify_token(token, digest, tsa_cert)
    signature = signer.sign(digest)
    for _ in range(_ATTEMPTS):
        with store.session() as s:
            seal = m.Seal(
                evidence_id=evidence_id, record_json=record_json, record_sha256=digest.hex(),
                signature=signature, key_id=signer.key_id, public_key=signer.public_key_hex,
                tsa_url=tsa_url if token else None,
                tsa_token=base64.b64encode(token).decode("ascii") if token else None,
            )
            s.add(seal)
            s.flush()  # the seal's id, for the custody event
            add_event(s, evidence_id, "sealed", actor, {
                "seal_id": seal.id, "record_sha256": digest.hex(), "key_id": signer.key_id,
                "timestamped": token is not None,
            }, request_id=request_id)
            try:
                s.commit()
                return seal
            except IntegrityError:
                s.rollback()
        done = _seal_of_request(store, request_id)  # a racing writer made this very seal
        if done is not None:
            return done
    raise SealError(f"could not store the seal of evidence {evidence_id}: the custody log kept moving")


def signer_keys(signer: Signer, trusted_keys) -> dict:
    """The keys a re-seal trusts: every key in the signer's own keyring (older seals were made
    with keys rotated out since), and the signer's key itself."""
    keys = trusted_keys(folder=signer.folder) if signer.folder is not None else {}
    keys.setdefault(signer.key_id, None)
    return keys


def _seal_of_request(store: Store, request_id: str | None) -> m.Seal | None:
    if request_id is None:
        return None
    with store.session() as s:
        event = event_for_request(s, request_id)
        return s.get(m.Seal, event.details["seal_id"]) if event is not None else None


def latest_seal(store: Store, evidence_id: int) -> m.Seal | None:
    with store.session() as s:
        return s.exec(
            select(m.Seal).where(m.Seal.evidence_id == evidence_id).order_by(m.Seal.id.desc()).limit(1)  # type: ignore[union-attr]
        ).first()


def _time(value: datetime | None) -> str | None:
    return as_utc(value).isoformat(timespec="microseconds") if value is not None else None
