"""Read side for investigators: filtered evidence lists and one record in full."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import select

from storage import models as m
from storage.db import Store, as_utc


@dataclass(frozen=True)
class EvidenceFilter:
    campaign: str | None = None
    platform: str | None = None
    keyword: str | None = None  # matched in post text, hashtags and account (any script)
    verdict: str | None = None
    min_score: float | None = None
    since: datetime | None = None  # post time, inclusive
    until: datetime | None = None  # post time, exclusive
    limit: int = 100
    offset: int = 0


def search_evidence(store: Store, f: EvidenceFilter) -> list[dict[str, Any]]:
    """Evidence rows joined with their posts, newest post first. Values are bound parameters,
    so quotes and SQL metacharacters in a filter are plain text."""
    q = select(m.Evidence, m.Post).join(m.Post, m.Post.id == m.Evidence.post_pk)
    if f.campaign:
        q = q.join(m.Campaign, m.Campaign.id == m.Evidence.campaign_id).where(m.Campaign.name == f.campaign)
    if f.platform:
        q = q.where(m.Evidence.platform == f.platform)
    if f.verdict:
        q = q.where(m.Evidence.verdict == f.verdict)
    if f.min_score is not None:
        q = q.where(m.Evidence.score >= f.min_score)
    if f.since:
        q = q.where(m.Post.created_at >= f.since)
    if f.until:
        q = q.where(m.Post.created_at < f.until)
    if f.keyword:
        # Hashtags are matched in Post.search_tags (plain text), not the JSON column, whose
        # escaped non-ASCII would hide Korean tags from LIKE.
        needle = f"%{_escape_like(f.keyword.lstrip('#'))}%"
        q = q.where(
            or_(
                m.Post.text.ilike(needle, escape="\\"),  # type: ignore[union-attr]
                m.Post.account.ilike(needle, escape="\\"),  # type: ignore[union-attr]
                m.Post.search_tags.ilike(needle, escape="\\"),  # type: ignore[union-attr]
            )
        )
    q = q.order_by(m.Post.created_at.desc(), m.Evidence.id).offset(f.offset).limit(f.limit)  # type: ignore[union-attr]
    with store.session() as s:
        return [_row(ev, post) for ev, post in s.exec(q).all()]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _row(ev: m.Evidence, post: m.Post) -> dict[str, Any]:
    return {
        "id": ev.id,
        "verdict": ev.verdict,
        "score": ev.score,
        "platform": ev.platform,
        "post_id": ev.post_id,
        "post_url": ev.post_url,
        "account": ev.account,
        "posted_at": as_utc(post.created_at),
        "text": post.text,
        "media_sha256": ev.media_sha256,
        "media_url": ev.media_url,
        "matched_sha256": ev.matched_sha256,
        "reasons": list(ev.reasons or []),
    }


def evidence_detail(store: Store, evidence_id: int) -> dict[str, Any] | None:
    """One evidence record with its post, media, every sighting of the media and every detection."""
    with store.session() as s:
        ev = s.get(m.Evidence, evidence_id)
        if ev is None:
            return None
        post = s.get(m.Post, ev.post_pk)
        media = s.get(m.Media, ev.media_sha256)
        campaign = s.get(m.Campaign, ev.campaign_id)
        # Detections belong to the canonical item when this one is a re-upload.
        judged_sha = media.duplicate_of or media.sha256
        detections = s.exec(select(m.Detection).where(m.Detection.media_sha256 == judged_sha)).all()
        sightings = s.exec(
            select(m.Sighting, m.Post)
            .join(m.Post, m.Post.id == m.Sighting.post_pk)
            .where(m.Sighting.media_sha256 == ev.media_sha256)
        ).all()
        return {
            "id": ev.id,
            "campaign": campaign.name if campaign else None,
            "verdict": ev.verdict,
            "score": ev.score,
            "reasons": list(ev.reasons or []),
            "captured_at": as_utc(ev.captured_at),
            "screenshot_sha256": ev.screenshot_sha256,
            "capture_html_sha256": ev.capture_html_sha256,
            "matched_sha256": ev.matched_sha256,
            "match_distance": ev.match_distance,
            "post": {
                "platform": post.platform,
                "post_id": post.post_id,
                "url": post.url,
                "account": post.account,
                "text": post.text,
                "lang": post.lang,
                "hashtags": list(post.hashtags or []),
                "created_at": as_utc(post.created_at),
            },
            "media": {
                "sha256": media.sha256,
                "url": ev.media_url,
                "kind": media.kind,
                "mime": media.mime,
                "size": media.size,
                "width": media.width,
                "height": media.height,
                "duration_s": media.duration_s,
                "phash": media.phash,
                "duplicate_of": media.duplicate_of,
            },
            "sightings": [
                {
                    "platform": p.platform,
                    "post_id": p.post_id,
                    "post_url": p.url,
                    "account": p.account,
                    "media_url": sg.media_url,
                    "seen_at": as_utc(sg.seen_at),
                }
                for sg, p in sightings
            ],
            "detections": [
                {
                    "detector": d.detector,
                    "version": d.version,
                    "model_id": d.model_id,
                    "model_revision": d.model_revision,
                    "weights_digest": d.weights_digest,
                    "outcome": d.outcome,
                    "score": d.score,
                    "threshold": d.threshold,
                    "reasons": list(d.reasons or []),
                    "details": dict(d.details or {}),
                }
                for d in detections
            ],
        }


def _effective_verdicts(s: Any, campaign_id: int) -> list[tuple[m.Sighting, m.Post, m.Media, m.Media | None]]:
    """Every sighting of the campaign with its media and, for a re-upload, the item it copies."""
    from sqlalchemy.orm import aliased

    canonical = aliased(m.Media)
    q = (
        select(m.Sighting, m.Post, m.Media, canonical)
        .join(m.Post, m.Post.id == m.Sighting.post_pk)
        .join(m.Media, m.Media.sha256 == m.Sighting.media_sha256)
        .outerjoin(canonical, canonical.sha256 == m.Media.duplicate_of)
        .where(m.Sighting.campaign_id == campaign_id)
    )
    return list(s.exec(q).all())


def campaign_media_verdicts(store: Store, campaign_id: int) -> dict[str, str | None]:
    """sha256 -> verdict band of every media item the campaign saw (re-uploads inherit theirs)."""
    with store.session() as s:
        return {
            media.sha256: (canon.verdict if canon is not None else media.verdict)
            for _sg, _post, media, canon in _effective_verdicts(s, campaign_id)
        }


def flagged_sightings(store: Store, campaign_id: int, bands: tuple[str, ...]) -> list[dict[str, Any]]:
    """Evidence rows to write: one per flagged media item per post it appeared in."""
    rows = []
    with store.session() as s:
        for sg, post, media, canon in _effective_verdicts(s, campaign_id):
            judged = canon if canon is not None else media
            if judged.verdict not in bands:
                continue
            reasons = list(judged.reasons or [])
            if canon is not None:
                reasons.insert(0, f"matches known fake {canon.sha256[:12]} at distance {media.duplicate_distance:g}")
            rows.append(
                dict(
                    campaign_id=campaign_id,
                    media_sha256=media.sha256,
                    post_pk=post.id,
                    platform=post.platform,
                    post_id=post.post_id,
                    post_url=post.url,
                    account=post.account,
                    media_url=sg.media_url,
                    screenshot_sha256=post.screenshot_sha256,
                    phash=media.phash,
                    verdict=judged.verdict,
                    score=judged.score,
                    reasons=reasons,
                    matched_sha256=canon.sha256 if canon is not None else None,
                    match_distance=media.duplicate_distance if canon is not None else None,
                )
            )
    return rows
