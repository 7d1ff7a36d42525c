"""Read side for investigators: filtered evidence lists and one record in full."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import select

from detectors.hashing import hamming
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
        # A re-upload's verdict rests on the detections of the copy that judged it; show both.
        shas = {media.sha256} | ({ev.matched_sha256} if ev.matched_sha256 else set())
        detections = s.exec(select(m.Detection).where(m.Detection.media_sha256.in_(shas))).all()  # type: ignore[union-attr]
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
                    "media_sha256": d.media_sha256,
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


# How strongly a band speaks for "fake": a cluster of near-duplicates takes its strongest member's.
BAND_RANK = {"confirmed_ai": 3, "likely_fake": 2, "needs_review": 1, "no_signal": 0}


def _cluster_judges(s: Any, roots: set[str]) -> dict[str, m.Media]:
    """For each cluster root (a canonical item), the member whose verdict speaks strongest.

    A re-upload may carry less evidence than its original (a C2PA manifest or a watermark does
    not survive a re-encode) or more (the original may be the copy that was crawled second), so
    every member of a cluster is flagged when any of them is. The database picks the member
    (a window over each cluster): a known fake can have thousands of re-uploads, and only one
    row per cluster comes back."""
    if not roots:
        return {}
    root = func.coalesce(m.Media.duplicate_of, m.Media.sha256)
    rank = case(*((m.Media.verdict == band, value) for band, value in BAND_RANK.items()), else_=-1)
    order = (rank.desc(), case((m.Media.duplicate_of.is_(None), 1), else_=0).desc(),  # type: ignore[union-attr]
             func.coalesce(m.Media.score, 0.0).desc(), m.Media.sha256)
    ranked = (
        select(m.Media.sha256.label("sha256"), root.label("root"),
               func.row_number().over(partition_by=root, order_by=order).label("place"))
        .where(or_(m.Media.sha256.in_(roots), m.Media.duplicate_of.in_(roots)))  # type: ignore[union-attr]
        .subquery()
    )
    rows = s.exec(
        select(ranked.c.root, m.Media).join(m.Media, m.Media.sha256 == ranked.c.sha256).where(ranked.c.place == 1)
    ).all()
    return {cluster: media for cluster, media in rows}


def _distance(a: m.Media, b: m.Media) -> float | None:
    if a.phash and b.phash:
        return float(hamming(a.phash, b.phash))
    return b.duplicate_distance if b.duplicate_of == a.sha256 else a.duplicate_distance


def _judged_sightings(s: Any, campaign_id: int, *, after_id: int | None = None,
                      limit: int | None = None) -> list[tuple[m.Sighting, m.Post, m.Media, m.Media]]:
    """Every sighting of the campaign (or a page of them, by sighting id after `after_id`) with
    its media and the cluster member that judges it."""
    query = (
        select(m.Sighting, m.Post, m.Media)
        .join(m.Post, m.Post.id == m.Sighting.post_pk)
        .join(m.Media, m.Media.sha256 == m.Sighting.media_sha256)
        .where(m.Sighting.campaign_id == campaign_id)
    )
    if after_id is not None:
        query = query.where(m.Sighting.id > after_id)
    if limit is not None:
        query = query.order_by(m.Sighting.id).limit(limit)
    rows = s.exec(query).all()
    judges = _cluster_judges(s, {media.duplicate_of or media.sha256 for _, _, media in rows})
    return [(sg, post, media, judges[media.duplicate_of or media.sha256]) for sg, post, media in rows]


def campaign_media_verdicts(store: Store, campaign_id: int) -> dict[str, str | None]:
    """sha256 -> verdict band of every media item the campaign saw (a cluster shares its verdict)."""
    with store.session() as s:
        return {media.sha256: judge.verdict for _sg, _post, media, judge in _judged_sightings(s, campaign_id)}


def campaign_verdict_counts(store: Store, campaign_id: int, page_size: int | None = None) -> dict[str | None, int]:
    """How many distinct media items the campaign saw in each verdict band (a cluster shares its
    verdict), read a page of sightings at a time: memory does not grow with the campaign."""
    page_size = page_size or EVIDENCE_PAGE
    counts: dict[str | None, int] = {}
    earlier = aliased(m.Sighting)
    first_sighting = ~(
        select(earlier.id)
        .where(earlier.campaign_id == campaign_id, earlier.media_sha256 == m.Sighting.media_sha256, earlier.id < m.Sighting.id)
        .exists()
    )
    after = 0
    while True:
        with store.session() as s:
            rows = s.exec(
                select(m.Sighting.id, m.Media)
                .join(m.Media, m.Media.sha256 == m.Sighting.media_sha256)
                .where(m.Sighting.campaign_id == campaign_id, m.Sighting.id > after, first_sighting)
                .order_by(m.Sighting.id)
                .limit(page_size)
            ).all()
            judges = _cluster_judges(s, {media.duplicate_of or media.sha256 for _, media in rows})
            for _, media in rows:
                verdict = judges[media.duplicate_of or media.sha256].verdict
                counts[verdict] = counts.get(verdict, 0) + 1
        if len(rows) < page_size:
            return counts
        after = rows[-1][0]


def campaign_media_urls(store: Store, campaign_id: int) -> dict[str, str]:
    """media URL -> sha256 of every media item the campaign has sighted."""
    with store.session() as s:
        rows = s.exec(select(m.Sighting.media_url, m.Sighting.media_sha256).where(m.Sighting.campaign_id == campaign_id)).all()
    return {url: sha for url, sha in rows}


def flagged_sightings(store: Store, campaign_id: int, bands: tuple[str, ...]) -> list[dict[str, Any]]:
    """Evidence rows to write: one per flagged media item per post it appeared in."""
    rows, after = [], None
    while True:
        page, after = flagged_sightings_page(store, campaign_id, bands, after_id=after)
        rows.extend(page)
        if after is None:
            return rows


EVIDENCE_PAGE = 1000  # sightings read at a time: the evidence phase's memory does not grow with the campaign


def flagged_sightings_page(store: Store, campaign_id: int, bands: tuple[str, ...], *, after_id: int | None = None,
                           page_size: int = EVIDENCE_PAGE) -> tuple[list[dict[str, Any]], int | None]:
    """The evidence rows among the next `page_size` sightings after sighting id `after_id`, and
    the id to continue after (None when this was the last page). A page can hold fewer rows
    than sightings, or none: only flagged ones become evidence."""
    rows = []
    with store.session() as s:
        sightings = _judged_sightings(s, campaign_id, after_id=after_id, limit=page_size)
        last_id = sightings[-1][0].id if len(sightings) == page_size else None
        for sg, post, media, judge in sightings:
            if judge.verdict not in bands:
                continue
            reasons = list(judge.reasons or [])
            matched = judge.sha256 if judge.sha256 != media.sha256 else None
            distance = _distance(media, judge) if matched else None
            if matched:
                reasons.insert(0, f"matches known fake {matched[:12]} at distance {distance:g}")
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
                    verdict=judge.verdict,
                    score=judge.score,
                    reasons=reasons,
                    matched_sha256=matched,
                    match_distance=distance,
                )
            )
    return rows, last_id
