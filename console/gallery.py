"""The evidence gallery: filtered, keyset-paged lists of evidence for the console and the API,
and the per-campaign figures the dashboard draws.

Order: newest first by (evidence.created_at, evidence.id), i.e. by when deepwatch flagged the item.
That keeps the sort key on the same table as most filters (campaign, platform, account, verdict,
review status), so the composite indexes of migration 0005 ("<filter>, created_at, id") answer a
page by walking one index and stopping after `limit` rows, however deep the page.
since/until are on the post's own time (when it was published, as a ban window is about). A
filter with since or until is therefore listed newest *post* first, (post time, evidence.id):
the window and the order then share one index, where ordering by flag time would mean reading
and sorting every item of the window (seconds at a million rows). The post's time is read from
its copy on evidence (`evidence.post_created_at`, migration 0006), so the window, the order and
the campaign share the index "campaign_id, post_created_at, id". `GalleryPage.order` says which order a page is in.

Keyword search is a case-insensitive substring match on the post text and its hashtags, in any
script. It uses a real text index: on PostgreSQL ILIKE served by pg_trgm GIN indexes, on SQLite
an FTS5 trigram table (`gallery_fts`, kept in sync with `post` by triggers) for keywords of three
characters or more; shorter keywords fall back to LIKE (a trigram index cannot hold them).
LIKE metacharacters and FTS5 syntax in a keyword are always literal text.
"""
from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from storage import models as m
from storage.db import Store, as_utc

# Values the filters accept (fusion bands, review states), so a typo is an error, not an empty page.
VERDICTS = ("confirmed_ai", "likely_fake", "needs_review", "no_signal")
REVIEW_STATES = ("unreviewed", "confirmed", "dismissed")
MAX_LIMIT = 500
MAX_KEYWORD = 200
FTS_TABLE = "gallery_fts"  # SQLite only; made by migration 0005
_TRIGRAM = 3  # the shortest keyword a trigram index can answer
# SQLite: a keyword in this many posts or more is searched by walking the newest evidence
# instead of through the FTS index (see _keyword_clause); measured in bench/console_search.py.
_FTS_COMMON = 2000
# PostgreSQL: a keyword in this many of the newest _PG_SAMPLE posts (0.5 %) is searched by walking
# the newest evidence (a page then costs ~10,000 row checks at most); rarer ones by pg_trgm.
_PG_SAMPLE = 2000
_PG_COMMON_IN_SAMPLE = 10
_CURSOR_VERSION = "g1"
_MAX_ID = 2**31 - 1  # evidence.id is a 32-bit integer on PostgreSQL: a larger one is no cursor of ours
# The query-string names parse_filter reads (the web form uses "q" for the keyword).
FILTER_FIELDS = ("campaign", "platform", "account", "q", "verdict", "min_score", "since", "until", "review")


@dataclass(frozen=True)
class GalleryFilter:
    campaign: str | None = None  # campaign name, exact
    platform: str | None = None  # exact
    account: str | None = None  # exact
    keyword: str | None = None  # substring of post text or hashtags; case-insensitive for Latin
    verdict: str | None = None  # a fusion band
    min_score: float | None = None
    since: datetime | None = None  # post time, inclusive
    until: datetime | None = None  # post time, exclusive
    review: str | None = None  # unreviewed | confirmed | dismissed
    campaign_ids: frozenset[int] | None = None  # the caller's visible campaigns (console.scope); None: all


@dataclass(frozen=True)
class GalleryItem:
    evidence_id: int
    campaign: str
    platform: str
    account: str
    post_url: str
    post_text: str
    post_created_at: datetime
    media_sha256: str
    working_sha256: str | None
    kind: str
    mime: str
    verdict: str
    score: float | None
    reasons: list
    review_status: str
    matched_sha256: str | None


@dataclass(frozen=True)
class GalleryPage:
    items: list[GalleryItem]
    next_cursor: str | None  # pass back to gallery() for the next page; None on the last page
    order: str = "flagged"  # "flagged": newest flagged first; "posted": newest post first (since/until set)


# -- the query -----------------------------------------------------------------------------------

def gallery(store: Store, f: GalleryFilter, cursor: str | None = None, limit: int = 48) -> GalleryPage:
    """One page of evidence matching `f`, newest first, after `cursor` (from the previous page).

    Raises ValueError naming the field for a bad cursor or limit."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")
    order = "posted" if f.since is not None or f.until is not None else "flagged"
    after = decode_cursor(cursor, order) if cursor else None
    ev, post, media, camp = m.Evidence, m.Post, m.Media, m.Campaign
    # The post's time as copied onto evidence (migration 0006), so a dated page is one index walk.
    order_at = ev.post_created_at if order == "posted" else ev.created_at
    q = (
        sa.select(
            ev.id, camp.name, ev.platform, ev.account, ev.post_url, post.text, post.created_at,
            ev.media_sha256, ev.working_sha256, media.kind, media.mime, ev.verdict, ev.score, ev.reasons,
            ev.review_status, ev.matched_sha256, order_at.label("order_at"),
        )
        .select_from(ev)
        .join(post, post.id == ev.post_pk)
        .join(media, media.sha256 == ev.media_sha256)
        .join(camp, camp.id == ev.campaign_id)
    )
    if f.campaign:
        campaign_id = _campaign_id(store, f.campaign)
        if campaign_id is None:
            return GalleryPage([], None, order)
        # An id, not a join condition on the name: the planner then walks (campaign_id, created_at, id).
        q = q.where(ev.campaign_id == campaign_id)
    if f.campaign_ids is not None:
        q = q.where(ev.campaign_id.in_(sorted(f.campaign_ids)))
    if f.platform:
        q = q.where(ev.platform == f.platform)
    if f.account:
        q = q.where(ev.account == f.account)
    if f.verdict:
        q = q.where(ev.verdict == f.verdict)
    if f.review:
        q = q.where(ev.review_status == f.review)
    if f.min_score is not None:
        q = q.where(ev.score >= f.min_score)
    if f.since:
        q = q.where(ev.post_created_at >= _utc(f.since))
    if f.until:
        q = q.where(ev.post_created_at < _utc(f.until))
    keyword = _clean_keyword(f.keyword)
    if keyword:
        q = q.where(_keyword_clause(store, keyword))
    if after is not None:
        at, last_id = after
        # "order_at <= at" is the index range both planners use; the rest breaks ties by id.
        q = q.where(order_at <= at, sa.or_(order_at < at, ev.id < last_id))
    q = q.order_by(order_at.desc(), ev.id.desc()).limit(limit + 1)
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            rare_keyword = len(keyword) >= _TRIGRAM and not _pg_keyword_is_common(store, keyword)
            _pin_plan(conn, walk=not rare_keyword)
        rows = conn.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_item(r) for r in rows]
    next_cursor = encode_cursor(as_utc(rows[-1].order_at), rows[-1].id, order) if more else None
    return GalleryPage(items, next_cursor, order)


def _campaign_id(store: Store, name: str) -> int | None:
    with store.session() as s:
        return s.exec(select(m.Campaign.id).where(m.Campaign.name == name)).first()


def _clean_keyword(keyword: str | None) -> str:
    # Hashtags are stored without their "#": "#선거" finds the tag 선거 (and the text "선거").
    return (keyword or "").strip().lstrip("#").strip()


def _keyword_clause(store: Store, keyword: str) -> Any:
    post = m.Post
    needle = f"%{escape_like(keyword)}%"
    like = sa.or_(post.text.ilike(needle, escape="\\"), post.search_tags.ilike(needle, escape="\\"))
    if len(keyword) < _TRIGRAM:
        return like  # no trigram index can hold it: a check on each row walked
    if store.engine.dialect.name != "sqlite":
        return like  # PostgreSQL: pg_trgm GIN indexes serve it (see _walk_newest for common keywords)
    # A trigram FTS5 phrase is a substring match; quoting makes FTS5 syntax (AND, *, :, ")
    # in the keyword plain text.
    phrase = '"' + keyword.replace('"', '""') + '"'
    if _fts_matches_at_least(store, phrase, _FTS_COMMON):
        # A common keyword: SQLite would read every match out of the index before the first
        # row; walking the newest evidence and checking each post finds a page sooner.
        return like
    matching = sa.text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :phrase").bindparams(phrase=phrase)
    return post.id.in_(matching.columns(sa.column("rowid", sa.Integer)))


def _pin_plan(conn: Any, *, walk: bool) -> None:
    """PostgreSQL: choose the shape of the gallery's plan ourselves, for this transaction only.

    Every filter (and filter + date window) has an index in the gallery's order (migrations
    0005, 0006), so a page is an ordered walk of one index that stops after a page of rows. The
    planner does not always see that: its estimates for ILIKE through pg_trgm can be off 100x
    either way, and which plan won changed from one ANALYZE to the next. At 1M rows a common
    Korean phrase took 0.8 s a page read out of the GIN index and sorted, all nine filters on a
    deep page 0.26 s with a sort, and a word in 0.1 % of posts 1.3 s when the newest items were
    walked (bench/console_search.py); each takes 5-40 ms with the other plan. So: `walk` (every
    query but a rare keyword) turns off sorting and bitmap scans (GIN can only be read by those),
    which leaves the ordered index walks; a rare keyword turns off plain index scans instead,
    which leaves reading its few posts out of the GIN index and sorting their evidence."""
    if walk:
        conn.execute(sa.text("SET LOCAL enable_sort = off"))
        conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
    else:
        conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
    conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
    # A page is a few thousand index probes at most: starting parallel workers costs more.
    conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))


def _pg_keyword_is_common(store: Store, keyword: str) -> bool:
    """Does the keyword occur in at least _PG_COMMON_IN_SAMPLE of the newest _PG_SAMPLE posts?
    The sample is read by primary key: a few milliseconds."""
    needle = f"%{escape_like(keyword)}%"
    probe = sa.text(
        "SELECT count(*) FROM (SELECT text, search_tags FROM post ORDER BY id DESC LIMIT :n) AS newest "
        "WHERE newest.text ILIKE :needle ESCAPE '\\' OR newest.search_tags ILIKE :needle ESCAPE '\\'")
    with store.engine.connect() as conn:
        return conn.execute(probe, {"n": _PG_SAMPLE, "needle": needle}).scalar_one() >= _PG_COMMON_IN_SAMPLE


def _fts_matches_at_least(store: Store, phrase: str, n: int) -> bool:
    probe = sa.text(f"SELECT count(*) FROM (SELECT 1 FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :phrase LIMIT :n)")
    with store.engine.connect() as conn:
        return conn.execute(probe, {"phrase": phrase, "n": n}).scalar_one() >= n


def escape_like(text: str) -> str:
    """`text` as a LIKE pattern that matches only itself (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _item(r: Any) -> GalleryItem:
    return GalleryItem(
        evidence_id=r[0], campaign=r[1], platform=r[2], account=r[3], post_url=r[4], post_text=r[5],
        post_created_at=as_utc(r[6]), media_sha256=r[7], working_sha256=r[8], kind=r[9], mime=r[10],
        verdict=r[11], score=r[12], reasons=list(r[13] or []), review_status=r[14], matched_sha256=r[15],
    )


def _utc(value: datetime) -> datetime:
    # SQLite keeps times as UTC text without a zone: a bound value must be UTC first.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# -- cursors -------------------------------------------------------------------------------------

_ORDERS = {"flagged": "f", "posted": "p"}


def encode_cursor(at: datetime, evidence_id: int, order: str = "flagged") -> str:
    """The position after (time, evidence id) in `order` ("flagged" or "posted")."""
    raw = f"{_CURSOR_VERSION}|{_ORDERS[order]}|{_utc(at).isoformat()}|{evidence_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str = "flagged") -> tuple[datetime, int]:
    """(time, evidence.id) of the last row of the previous page, for a listing in `order`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        version, tag, at_text, id_text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8").split("|")
        if version != _CURSOR_VERSION or not id_text.isascii() or not id_text.isdigit() or int(id_text) > _MAX_ID:
            raise ValueError
        at = _utc(datetime.fromisoformat(at_text))
    except (ValueError, UnicodeError, TypeError):
        raise ValueError("cursor: not a cursor this gallery made (start again from the first page)") from None
    if tag != _ORDERS[order]:
        raise ValueError("cursor: made for a listing with other date filters (start again from the first page)")
    return at, int(id_text)


# -- query strings -------------------------------------------------------------------------------

def parse_filter(query: Mapping[str, str]) -> GalleryFilter:
    """A GalleryFilter from query-string values (FILTER_FIELDS; others, like cursor, are ignored).

    Empty values mean "no filter". Times are ISO 8601 dates or date-times; without a zone they
    are UTC. Raises ValueError naming the field for a bad value."""
    values: dict[str, str | None] = {}
    for name in FILTER_FIELDS:
        raw = query.get(name)
        if raw is None and name == "q":
            raw = query.get("keyword")
        if raw is not None and not isinstance(raw, str):
            raise ValueError(f"{name}: expected text, got {type(raw).__name__}")
        text = (raw or "").strip()
        if "\x00" in text:
            raise ValueError(f"{name}: contains a NUL character")
        values[name] = text or None
    keyword = values["q"]
    if keyword is not None and len(keyword) > MAX_KEYWORD:
        raise ValueError(f"q: keyword longer than {MAX_KEYWORD} characters")
    verdict = values["verdict"]
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    review = values["review"]
    if review is not None and review not in REVIEW_STATES:
        raise ValueError(f"review: {review!r} is not one of {', '.join(REVIEW_STATES)}")
    min_score = _parse_score(values["min_score"])
    since, until = _parse_time("since", values["since"]), _parse_time("until", values["until"])
    if since and until and until <= since:
        raise ValueError(f"until: {until.isoformat()} is not after since ({since.isoformat()})")
    return GalleryFilter(campaign=values["campaign"], platform=values["platform"], account=values["account"],
                         keyword=keyword, verdict=verdict, min_score=min_score, since=since, until=until,
                         review=review)


def _parse_score(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        score = float(text)
    except ValueError:
        raise ValueError(f"min_score: {text!r} is not a number") from None
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"min_score: {text!r} is not between 0 and 1")
    return score


def _parse_time(field: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        if len(text) == 10:  # a date alone: its first instant, UTC
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an ISO 8601 date or date-time (e.g. 2026-05-20 or "
                         "2026-05-20T09:30:00+09:00)") from None


# -- dashboard figures ---------------------------------------------------------------------------

def campaign_stats(store: Store, campaign_name: str, *, top: int = 10) -> dict[str, Any]:
    """Figures for one campaign's dashboard.

    {"campaign", "status", "stage_counts" (the last run report's counts, {} before a finished run),
     "flagged_per_day" [(YYYY-MM-DD, n)] by the day (UTC) evidence was flagged, oldest first,
     "per_platform" {platform: n}, "verdicts" {band: n}, "evidence" (total),
     "top_reuploads" [(media_sha256, working_sha256, copies, platforms)]: the fakes seen in the most
     posts, counting exact copies and items matched to them as re-uploads; copies >= 2, most first}.
    Raises ValueError naming the field when no campaign has that name."""
    campaign = store.get_campaign(campaign_name)
    if campaign is None:
        raise ValueError(f"campaign: no campaign named {campaign_name!r}")
    ev = m.Evidence
    dialect = store.engine.dialect.name
    # SQLite holds UTC text; PostgreSQL's date() of a timestamptz would use the session's zone.
    day = sa.func.date(ev.created_at) if dialect == "sqlite" else sa.func.date(sa.func.timezone("UTC", ev.created_at))
    mine = ev.campaign_id == campaign.id
    root = sa.func.coalesce(ev.matched_sha256, ev.media_sha256)
    with store.engine.connect() as conn:
        per_day = conn.execute(sa.select(day, sa.func.count()).where(mine).group_by(day).order_by(day)).all()
        per_platform = conn.execute(
            sa.select(ev.platform, sa.func.count()).where(mine).group_by(ev.platform).order_by(ev.platform)).all()
        verdicts = conn.execute(sa.select(ev.verdict, sa.func.count()).where(mine).group_by(ev.verdict)).all()
        copies = sa.func.count(sa.distinct(ev.post_pk)).label("copies")
        groups = conn.execute(
            sa.select(root.label("root"), copies, sa.func.max(ev.working_sha256))
            .where(mine).group_by(root).having(copies >= 2)
            .order_by(copies.desc(), root).limit(top)
        ).all()
        platforms: dict[str, list[str]] = {}
        if groups:
            roots = [g[0] for g in groups]
            for sha, platform in conn.execute(
                sa.select(root, ev.platform).distinct().where(mine, root.in_(roots))
            ):
                platforms.setdefault(sha, []).append(platform)
    report = campaign.last_report or {}
    return {
        "campaign": campaign.name,
        "status": campaign.status,
        "stage_counts": dict(report.get("counts") or {}),
        "flagged_per_day": [(str(d), n) for d, n in per_day],
        "per_platform": {p: n for p, n in per_platform},
        "verdicts": {v: n for v, n in verdicts},
        "evidence": sum(n for _, n in per_platform),
        "top_reuploads": [(sha, working, n, sorted(platforms.get(sha, []))) for sha, n, working in groups],
    }
