"""What the console's pages and its JSON API both do, written once: read an evidence record in
full, review and re-seal it, search by image, build and zip takedown packets.

Every function here is blocking (database, blob store, Chromium for the PDF); FastAPI runs the
plain `def` routes that call them in its thread pool.
"""
from __future__ import annotations

import os
import secrets
import tempfile
import zipfile
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import or_
from sqlmodel import select

from console.hardening import MAX_ID, valid_id
from evidence.custody import append_event, events_for
from evidence.review import ReviewError, review_evidence, review_history
from evidence.seal import SealError, latest_seal, seal_evidence, signer_keys
from evidence.signing import Signer
from evidence.takedown import (
    NEXT_STATUSES,
    PROVENANCE_DETECTORS,
    TakedownConfig,
    TakedownError,
    build_takedown,
    get_takedown,
)
from evidence.tsa import TimestampError
from evidence.verify import trusted_keys
from storage import models as m
from storage.blobs import BlobStore
from storage.db import Store, as_utc
from storage.queries import evidence_detail

MAX_IMAGE_BYTES = 25 * 1024 * 1024


@dataclass
class ConsoleContext:
    """Everything a request handler needs, made once per app."""

    store: Store
    blobs: BlobStore
    packets_root: Path
    takedown_config: TakedownConfig
    secure_cookies: bool = False
    key_dir: Path | None = None
    tsa_url: str | None = None
    _signer: Signer | None = field(default=None, repr=False)

    def signer(self) -> Signer:
        """The deployment's Ed25519 key (made on first use, kept outside the database)."""
        if self._signer is None:
            self._signer = Signer.load_or_create(self.key_dir)
        return self._signer


class NotFound(LookupError):
    """The thing asked for does not exist; the message names it."""


# -- reading ------------------------------------------------------------------------------------
def evidence_view(ctx: ConsoleContext, evidence_id: int) -> dict[str, Any]:
    """One record as the evidence page and GET /api/v1/evidence/{id} show it."""
    detail = evidence_detail(ctx.store, evidence_id)
    if detail is None:
        raise NotFound(f"no evidence record with id {evidence_id}")
    with ctx.store.session() as s:
        ev = s.get(m.Evidence, evidence_id)
    segments: list[dict[str, float]] = []
    for d in detail["detections"]:
        for span in (d.get("details") or {}).get("segments") or []:
            if isinstance(span, (list, tuple)) and len(span) == 2:
                segments.append({"start": float(span[0]), "end": float(span[1]), "detector": d["detector"]})
    seal = latest_seal(ctx.store, evidence_id)
    return detail | {
        "review_status": ev.review_status,
        "working_sha256": ev.working_sha256,
        "display_sha256": ev.working_sha256 or ev.media_sha256,
        "capture": {
            "captured_at": as_utc(ev.captured_at), "tool": ev.capture_tool, "operator": ev.capture_operator,
            "ip": ev.capture_ip, "headers": dict(ev.capture_headers or {}), "wacz_sha256": ev.wacz_sha256,
            "screenshot_sha256": ev.screenshot_sha256, "html_sha256": ev.capture_html_sha256,
        },
        "legal": {"in_ban_window": ev.in_ban_window, "ai_label_present": ev.ai_label_present,
                  "campaign_purpose": ev.campaign_purpose, "notes": ev.legal_notes},
        "provenance": [d for d in detail["detections"] if d["detector"] in PROVENANCE_DETECTORS],
        "segments": sorted(segments, key=lambda x: x["start"]),
        "reviews": [{"decision": r.decision, "reviewer": r.reviewer, "rationale": r.rationale, "at": as_utc(r.at)}
                    for r in review_history(ctx.store, evidence_id)],
        "custody": [{"seq": e.seq, "at": as_utc(e.at), "action": e.action, "actor": e.actor,
                     "details": dict(e.details or {}), "hash": e.hash}
                    for e in events_for(ctx.store, evidence_id)],
        "seal": None if seal is None else {
            "record_sha256": seal.record_sha256, "key_id": seal.key_id, "sealed_at": as_utc(seal.sealed_at),
            "timestamped": bool(seal.tsa_token), "tsa_url": seal.tsa_url,
        },
    }


def campaign_names(store: Store) -> list[str]:
    """Every campaign, newest first (the dashboard's default is the first)."""
    with store.session() as s:
        return list(s.exec(select(m.Campaign.name).order_by(m.Campaign.created_at.desc(), m.Campaign.id.desc())).all())


# -- review -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewResult:
    decision: str
    review_id: int
    banked: int
    unbanked: int
    seal_sha256: str | None
    seal_error: str | None  # the review stands; only the re-seal failed (e.g. the TSA was down)


def review_and_seal(ctx: ConsoleContext, evidence_id: int, decision: str, reviewer: str, rationale: str,
                    case_id: str | None = None) -> ReviewResult:
    """Record the decision (custody event, bank) and re-seal the record, as `deepwatch evidence
    review` does. Raises ReviewError (bad decision, empty rationale) and NotFound."""
    with ctx.store.session() as s:
        if s.get(m.Evidence, evidence_id) is None:
            raise NotFound(f"no evidence record with id {evidence_id}")
    signer = ctx.signer()
    # The record is checked against its last seal (with this console's keyring) before the
    # decision changes it; a record that no longer matches is refused (ReviewError).
    outcome = review_evidence(ctx.store, evidence_id, decision, reviewer, rationale,
                              case_id=(case_id or "").strip() or None, key_ids=signer_keys(signer, trusted_keys))
    try:
        seal = seal_evidence(ctx.store, evidence_id, signer, tsa_url=ctx.tsa_url, actor=reviewer, check_previous=False)
        sealed, problem = seal.record_sha256, None
    except (SealError, TimestampError) as exc:
        sealed, problem = None, f"recorded, but not re-sealed: {exc}"
    return ReviewResult(outcome.review.decision, outcome.review.id, outcome.banked, outcome.unbanked, sealed, problem)


# -- search by image ----------------------------------------------------------------------------
def search_by_image(ctx: ConsoleContext, data: bytes, limit: int = 20) -> dict[str, Any]:
    """{"query": hashes of the upload, "matches": near-duplicates seen, "bank": known-fake hits}.
    ValueError with a clear message for an empty, oversized or undecodable upload."""
    from console.image_search import hash_upload
    from detectors.hashing import MediaDecodeError, sniff_mime
    from storage.similar import similar_images

    if not data:
        raise ValueError("the uploaded image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"the uploaded image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    if (sniff_mime(data) or "").startswith("video/"):
        return search_by_video(ctx, data, limit)
    try:
        phash, pdq, quality = hash_upload(data)  # one decode at hashing size (issue 16)
    except MediaDecodeError as exc:
        raise ValueError(f"the upload is not an image deepwatch can read: {exc}") from None
    found = similar_images(ctx.store, phash=phash, pdq=pdq, limit=limit)
    return {"query": {"phash": phash, "pdq": pdq, "pdq_quality": quality}, **found}


def search_by_video(ctx: ConsoleContext, data: bytes, limit: int = 20) -> dict[str, Any]:
    """Videos seen before and banked fakes matching an uploaded video, each with where they align."""
    from detectors.hashing import MediaDecodeError
    from detectors.vpdq_sampling import dense_vpdq
    from storage.similar_video import similar_videos

    try:
        frames = dense_vpdq(data)
    except MediaDecodeError as exc:
        raise ValueError(f"the upload is not a video deepwatch can read: {exc}") from None
    plain = [f for f in frames if not f.cropped]
    query = {"kind": "video", "frames": len(plain), "good_frames": sum(f.quality >= 50 for f in plain),
             "bars_cut": len(plain) < len(frames), "duration_s": plain[-1].t_s, "pdq": None, "phash": None,
             "pdq_quality": None}
    return {"query": query, **similar_videos(ctx.store, frames, limit=limit)}


# -- takedowns ----------------------------------------------------------------------------------
def parse_ids(values: list[str] | list[int]) -> list[int]:
    ids: list[int] = []
    for value in values:
        number = valid_id(value if isinstance(value, int) else str(value).strip())
        if number is None:  # also ids past what the database holds (a driver error otherwise)
            raise TakedownError(f"evidence_ids: {str(value)[:30]!r} is not an evidence id (a whole number from 1 to {MAX_ID})")
        ids.append(number)
    if not ids:
        raise TakedownError("evidence_ids: select at least one evidence record")
    return ids


def build_packet(ctx: ConsoleContext, evidence_ids: list[int], platform: str, actor: str, *,
                 allow_unreviewed: bool = False) -> m.TakedownRequest:
    """Build a signed packet in a fresh folder under packets_root; record it as drafted, with
    `actor` (the logged-in user) named in each record's custody log."""
    platform = (platform or "").strip()
    if not platform:
        raise TakedownError("platform: choose the platform the notice goes to")
    ctx.takedown_config.platform(platform)  # an unknown platform is refused, naming the known ones
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # The folder name is ours alone (a configured platform name is not trusted as a path part).
    out = ctx.packets_root / f"takedown-{stamp}-{secrets.token_hex(6)}"
    return build_takedown(ctx.store, ctx.blobs, evidence_ids, platform, out, ctx.takedown_config, ctx.signer(),
                          actor=actor, allow_unreviewed=allow_unreviewed)


def takedown_view(ctx: ConsoleContext, request_id: int) -> dict[str, Any]:
    try:
        row = get_takedown(ctx.store, request_id)
    except TakedownError as exc:
        raise NotFound(str(exc)) from None
    return takedown_json(row) | {"next_statuses": list(NEXT_STATUSES.get(row.status, ()))}


def takedown_json(row: m.TakedownRequest) -> dict[str, Any]:
    return {
        "id": row.id, "platform": row.platform, "status": row.status,
        "evidence_ids": list(row.evidence_ids or [row.evidence_id]),
        "packet_sha256": row.packet_sha256, "legal_basis": row.legal_basis, "sender": row.sender,
        "created_at": as_utc(row.created_at), "updated_at": as_utc(row.updated_at),
        "sent_at": as_utc(row.sent_at), "acknowledged_at": as_utc(row.acknowledged_at),
        "resolved_at": as_utc(row.resolved_at), "notes": row.notes,
    }


def packet_zip(ctx: ConsoleContext, request_id: int, actor: str) -> tuple[Path, str]:
    """The packet folder as a zip in a temporary file (the caller deletes it) and a download name.
    The download is an export: each record's custody log names `actor` (the logged-in user)."""
    try:
        row = get_takedown(ctx.store, request_id)
    except TakedownError as exc:
        raise NotFound(str(exc)) from None
    folder = Path(row.packet_path or "")
    if not row.packet_path or not folder.is_dir():
        raise NotFound(f"the packet folder of takedown request {request_id} is missing ({row.packet_path})")
    fd, tmp = tempfile.mkstemp(prefix="deepwatch-packet-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
                zf.write(path, f"takedown-{request_id}/{path.relative_to(folder).as_posix()}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for evidence_id in row.evidence_ids or [row.evidence_id]:
        append_event(ctx.store, evidence_id, "exported", actor, {
            "kind": "console download", "takedown_request_id": request_id, "packet_sha256": row.packet_sha256})
    return Path(tmp), f"takedown-{request_id}.zip"


def log_blob_download(ctx: ConsoleContext, sha256: str, actor: str) -> None:
    """A file downloaded from the console leaves deepwatch: an "exported" custody event, naming
    the logged-in user, on every record that rests on it."""
    columns = (m.Evidence.media_sha256, m.Evidence.wacz_sha256, m.Evidence.capture_html_sha256,
               m.Evidence.screenshot_sha256, m.Evidence.working_sha256)
    with ctx.store.session() as s:
        ids = s.exec(select(m.Evidence.id).where(or_(*(c == sha256 for c in columns))).order_by(m.Evidence.id)).all()
    for evidence_id in ids:
        append_event(ctx.store, evidence_id, "exported", actor, {"kind": "console download", "sha256": sha256})


# -- JSON ---------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Dataclasses, rows and times as plain JSON values (times in ISO 8601 UTC)."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    return value


__all__ = [
    "ConsoleContext", "NotFound", "ReviewError", "ReviewResult", "TakedownError", "build_packet", "campaign_names",
    "evidence_view", "jsonable", "packet_zip", "parse_ids", "review_and_seal", "search_by_image", "search_by_video", "takedown_json",
    "takedown_view",
]
