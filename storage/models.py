"""The evidence database schema (SQLModel; SQLite by default, PostgreSQL by URL).

Natural keys make every write idempotent: a post is (platform, post_id), a media item is the
sha256 of its bytes, a sighting is (media, post, url), a detection is (media, detector, model,
weights digest), an evidence record is (media, post). Retries and re-runs can therefore never
create duplicates. Times are stored in UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc_column(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Campaign(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    spec_yaml: str = Field(sa_column=Column(Text, nullable=False))
    spec_sha256: str
    status: str = "created"  # created | running | finished | failed
    created_at: datetime = _utc_column(nullable=False, default=utcnow)
    updated_at: datetime = _utc_column(nullable=False, default=utcnow)
    last_report: Optional[dict] = Field(default=None, sa_column=Column(JSON))


class SourceCursor(SQLModel, table=True):
    """Where a source's crawl got to, so a re-run fetches only what is new."""

    __table_args__ = (UniqueConstraint("campaign_id", "source", "term"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    source: str
    term: str
    cursor: Optional[str] = None
    last_post_id: Optional[str] = None
    updated_at: datetime = _utc_column(nullable=False, default=utcnow)


class MediaTask(SQLModel, table=True):
    """A media reference a stored post makes, and whether its fetch is still owed.

    The fetch queue lives here, not only in the driver's memory, so a campaign killed between
    storing a post and fetching its media resumes those fetches instead of losing them.
    state: pending | done (fetched, sighting recorded) | dropped (a counted drop; `reason` says why).
    """

    __table_args__ = (UniqueConstraint("campaign_id", "post_pk", "url"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    post_pk: int = Field(foreign_key="post.id", index=True)
    url: str = Field(index=True)
    kind: str
    position: int = 0
    resolver: Optional[str] = None
    state: str = Field(default="pending", index=True)
    reason: Optional[str] = None
    updated_at: datetime = _utc_column(nullable=False, default=utcnow)


class Post(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("platform", "post_id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    platform: str = Field(index=True)
    post_id: str
    url: str
    account: str = Field(index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    lang: Optional[str] = None
    hashtags: list = Field(default_factory=list, sa_column=Column(JSON))
    # The hashtags as plain text (" tag1 tag2 "): JSON columns escape non-ASCII, so a LIKE search
    # for a Korean hashtag needs this copy.
    search_tags: str = ""
    created_at: datetime = _utc_column(nullable=False)
    first_seen_at: datetime = _utc_column(nullable=False, default=utcnow)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    source: str = ""
    screenshot_sha256: Optional[str] = None


class Media(SQLModel, table=True):
    sha256: str = Field(primary_key=True, max_length=64)
    kind: str  # image | video
    mime: str
    size: int
    width: Optional[int] = None
    height: Optional[int] = None
    duration_s: Optional[float] = None
    phash: Optional[str] = Field(default=None, index=True)
    pdq: Optional[str] = Field(default=None, index=True)  # 64 hex chars, images only
    pdq_quality: Optional[int] = None
    frame_hashes: list = Field(default_factory=list, sa_column=Column(JSON))
    vpdq: list = Field(default_factory=list, sa_column=Column(JSON))  # videos: [[t_s, quality, pdq hex], ...]
    # Images: the picture inside a screenshot or under a caption band, and its hashes
    # ({"box", "phash", "pdq", "pdq_quality"}; detectors/regions.py); None: the whole frame.
    region: Optional[dict] = Field(default=None, sa_column=Column(JSON, nullable=True))
    first_seen_at: datetime = _utc_column(nullable=False, default=utcnow)
    # Near-duplicate of an earlier item: its verdict is reused and no detector runs on this one.
    duplicate_of: Optional[str] = Field(default=None, foreign_key="media.sha256", index=True)
    duplicate_distance: Optional[float] = None
    verdict: Optional[str] = Field(default=None, index=True)  # fusion band
    score: Optional[float] = None
    reasons: list = Field(default_factory=list, sa_column=Column(JSON))
    analysed_at: Optional[datetime] = _utc_column(nullable=True)
    # Set when the item matched the known-fakes bank: judged by that match, no detector ran.
    bank_case: Optional[str] = None


class Sighting(SQLModel, table=True):
    """A media item seen in a post at a time."""

    __table_args__ = (UniqueConstraint("media_sha256", "post_pk", "media_url"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    media_sha256: str = Field(foreign_key="media.sha256", index=True)
    post_pk: int = Field(foreign_key="post.id", index=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    media_url: str
    position: int = 0
    seen_at: datetime = _utc_column(nullable=False, default=utcnow)


class Detection(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("media_sha256", "detector", "model_key"),
        Index("ix_detection_media", "media_sha256"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    media_sha256: str = Field(foreign_key="media.sha256")
    detector: str
    version: str
    # model id + weights digest ("" for detectors without a model): a new model adds a row.
    model_key: str = ""
    model_id: Optional[str] = None
    model_revision: Optional[str] = None
    weights_digest: Optional[str] = None
    outcome: str
    score: Optional[float] = None
    threshold: Optional[float] = None
    reasons: list = Field(default_factory=list, sa_column=Column(JSON))
    details: dict = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = _utc_column(nullable=False, default=utcnow)


class Evidence(SQLModel, table=True):
    """One flagged media item in one post: the unit a takedown request is about."""

    __table_args__ = (UniqueConstraint("media_sha256", "post_pk"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    media_sha256: str = Field(foreign_key="media.sha256", index=True)
    post_pk: int = Field(foreign_key="post.id", index=True)
    platform: str = Field(index=True)
    post_id: str
    post_url: str
    account: str
    media_url: str
    captured_at: datetime = _utc_column(nullable=False, default=utcnow)
    screenshot_sha256: Optional[str] = None
    capture_html_sha256: Optional[str] = None
    phash: Optional[str] = None
    verdict: str = Field(index=True)
    score: Optional[float] = Field(default=None, index=True)
    reasons: list = Field(default_factory=list, sa_column=Column(JSON))
    # Set when the item was flagged as a re-upload of an already judged fake.
    matched_sha256: Optional[str] = None
    match_distance: Optional[float] = None
    created_at: datetime = _utc_column(nullable=False, default=utcnow)
    # When the post was published: a copy of post.created_at (which never changes), so the
    # gallery's dated listings filter and order on one evidence index (migration 0006).
    post_created_at: Optional[datetime] = _utc_column(nullable=True)
    # -- capture (Berkeley Protocol: what, where, when, by whom, with what) --
    wacz_sha256: Optional[str] = None  # the page and its media as WARC records in a WACZ
    working_sha256: Optional[str] = None  # a working copy (preview); media_sha256 stays the untouched original
    capture_ip: Optional[str] = None  # the address the page was fetched from
    capture_tool: Optional[str] = None  # "deepwatch/0.1.0 (Chromium 131; warcio 1.8)"
    capture_operator: Optional[str] = None  # who or what captured it (campaign name or investigator)
    capture_headers: dict = Field(default_factory=dict, sa_column=Column(JSON))  # page response headers
    # -- review and legal assessment --
    review_status: str = Field(default="unreviewed", index=True)  # unreviewed | confirmed | dismissed
    in_ban_window: Optional[bool] = None  # posted inside the election's pre-vote ban window
    ai_label_present: Optional[bool] = None  # did the post say it was AI-made
    campaign_purpose: Optional[bool] = None  # made to influence the election
    legal_notes: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class TakedownRequest(SQLModel, table=True):
    """A notice to a platform about one or more evidence records, tracked to its outcome."""

    id: Optional[int] = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", index=True)  # the first (or only) record
    evidence_ids: list = Field(default_factory=list, sa_column=Column(JSON))  # every record in the notice
    platform: str
    status: str = Field(default="drafted", index=True)  # drafted | sent | acknowledged | removed | refused
    packet_path: Optional[str] = None
    packet_sha256: Optional[str] = None  # sha256 of the packet's MANIFEST.sha256
    legal_basis: Optional[str] = None
    sender: Optional[str] = None
    created_at: datetime = _utc_column(nullable=False, default=utcnow)
    updated_at: datetime = _utc_column(nullable=False, default=utcnow)
    sent_at: Optional[datetime] = _utc_column(nullable=True)
    acknowledged_at: Optional[datetime] = _utc_column(nullable=True)
    resolved_at: Optional[datetime] = _utc_column(nullable=True)  # removed or refused
    notes: str = ""


class CustodyEvent(SQLModel, table=True):
    """One link of the append-only custody log: every event on every evidence item, in order,
    each row's hash covering its fields and the previous row's hash (a hash chain)."""

    __table_args__ = (UniqueConstraint("seq"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    seq: int  # 1, 2, 3... with no gaps: a deleted row breaks the chain
    evidence_id: Optional[int] = Field(default=None, foreign_key="evidence.id", index=True)
    action: str  # captured | analysed | sealed | reviewed | exported | takedown_<status> | liveness_checked | ...
    actor: str  # a user name, "campaign:<name>", or "system"
    at: datetime = _utc_column(nullable=False, default=utcnow)
    details: dict = Field(default_factory=dict, sa_column=Column(JSON))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # The writer's name for this append (e.g. "campaign-3/evidence-17/analysed"): an append
    # retried after its commit went through but the acknowledgement was lost finds its row by
    # this and writes nothing twice. Not part of the hash: it says nothing about the evidence.
    request_id: Optional[str] = Field(default=None, max_length=200, unique=True, index=True)


class Review(SQLModel, table=True):
    """An investigator's decision on an evidence record; every decision is kept (the history)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", index=True)
    decision: str  # confirmed | dismissed
    reviewer: str
    rationale: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = _utc_column(nullable=False, default=utcnow)


class Seal(SQLModel, table=True):
    """An evidence record as it was sealed: its canonical JSON, that JSON's sha256, an Ed25519
    signature over the digest and, when a timestamp authority is configured, an RFC 3161 token.
    `deepwatch evidence verify` recomputes the record and compares field by field."""

    id: Optional[int] = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", index=True)
    record_json: str = Field(sa_column=Column(Text, nullable=False))
    record_sha256: str = Field(max_length=64)
    signature: str  # hex Ed25519 signature over the sha256 digest bytes
    key_id: str  # sha256 of the raw public key, hex
    public_key: str  # hex raw Ed25519 public key (so a packet verifies without the database)
    tsa_url: Optional[str] = None
    tsa_token: Optional[str] = None  # base64 DER TimeStampResp
    sealed_at: datetime = _utc_column(nullable=False, default=utcnow)


class LivenessCheck(SQLModel, table=True):
    """A re-check of whether a flagged post (or its media) is still online."""

    id: Optional[int] = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", index=True)
    url: str
    checked_at: datetime = _utc_column(nullable=False, default=utcnow)
    state: str  # live | gone | error
    http_status: Optional[int] = None
    detail: str = ""


class User(SQLModel, table=True):
    """A person who uses the console or the API. Roles: viewer < investigator < admin."""

    id: Optional[int] = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True)
    password_hash: str  # argon2id, never the password
    role: str = "viewer"  # viewer | investigator | admin
    active: bool = True
    created_at: datetime = _utc_column(nullable=False, default=utcnow)
    password_changed_at: datetime = _utc_column(nullable=False, default=utcnow)


class ApiToken(SQLModel, table=True):
    """A revocable bearer token for partners' systems; only its sha256 is stored."""

    id: Optional[int] = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str
    token_sha256: str = Field(index=True, unique=True, max_length=64)
    created_at: datetime = _utc_column(nullable=False, default=utcnow)
    last_used_at: Optional[datetime] = _utc_column(nullable=True)
    revoked_at: Optional[datetime] = _utc_column(nullable=True)


class WebSession(SQLModel, table=True):
    """A logged-in browser session; the cookie holds a random id whose sha256 is stored here."""

    id: Optional[int] = Field(default=None, primary_key=True)
    session_sha256: str = Field(index=True, unique=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    csrf_token: str  # sent back in every form and in the X-CSRF-Token header
    created_at: datetime = _utc_column(nullable=False, default=utcnow)
    expires_at: datetime = _utc_column(nullable=False)
    revoked_at: Optional[datetime] = _utc_column(nullable=True)


class AuditEvent(SQLModel, table=True):
    """Who did what, when: every view, search, review, export and login. Append-only (the
    database refuses updates and deletes), readable by admins."""

    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = _utc_column(nullable=False, default=utcnow, index=True)
    username: str = Field(index=True)  # "" for an anonymous attempt
    action: str = Field(index=True)  # login | login_failed | logout | view | search | review | export | ...
    target: str = ""  # what it was about: "evidence:12", "/gallery", "user:kim"
    details: dict = Field(default_factory=dict, sa_column=Column(JSON))
    ip: str = ""


class LoginThrottle(SQLModel, table=True):
    """Login attempts per (account, client address) and per address (console.throttle, issue 16).
    Times are epoch seconds so the backoff is one atomic UPDATE on every backend."""

    key: str = Field(primary_key=True, max_length=400)  # "pair:<account>|<ip>" or "ip:<ip>"
    account: str = Field(default="", index=True, max_length=200)  # NFC username; "" for address rows
    attempts: int = 0
    next_allowed: float = 0.0
    last_at: float = 0.0


class CampaignMember(SQLModel, table=True):
    """Who may see a campaign in the console (console.scope). Once any row exists, users other than
    admins see only the campaigns they are members of; with no rows, everyone sees everything."""

    user_id: int = Field(foreign_key="user.id", primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", primary_key=True, index=True)
