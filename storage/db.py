"""Engine set-up and the idempotent writes the pipeline makes.

One `Store` per process. SQLite files get WAL mode so investigators can read while a campaign
writes; PostgreSQL is reached by URL (`postgresql+psycopg://...`). Every write method is keyed by
natural identity and returns whether it created something, so the run report can count new
rows and a retry or a resumed campaign adds nothing twice.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlmodel import Session, create_engine, select

from agents.base import Post as PostRecord
from detectors.base import Detection as DetectionResult
from storage import models as m


class StorageError(RuntimeError):
    pass


KEEP: Any = object()  # "leave this field as it is" for partial updates


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were stored as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and plain SQLite paths as well as full SQLAlchemy URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    try:
        if url.startswith("sqlite"):
            path = url.split("sqlite:///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use database URL {url!r}: {exc}") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Store:
    def __init__(self, url: str, *, create: bool = True):
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        if create:
            # The schema comes from the Alembic migrations (storage/migrations): a new database
            # gets every revision, an older one is upgraded in place keeping its rows, and one
            # made by a newer deepwatch is refused (MigrationError says so).
            from storage import migrate  # imports this module: load it only when needed

            try:
                migrate.upgrade(self.engine)
            except StorageError:
                raise
            except Exception as exc:  # connection refused, bad credentials...
                raise StorageError(f"cannot open database {self.redacted_url}: {exc}") from exc

    @property
    def redacted_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- campaigns -----------------------------------------------------------------------------
    def upsert_campaign(self, name: str, spec_yaml: str) -> int:
        digest = hashlib.sha256(spec_yaml.encode()).hexdigest()
        with self.session() as s:
            row = s.exec(select(m.Campaign).where(m.Campaign.name == name)).first()
            if row is None:
                row = m.Campaign(name=name, spec_yaml=spec_yaml, spec_sha256=digest)
            else:
                row.spec_yaml, row.spec_sha256, row.updated_at = spec_yaml, digest, m.utcnow()
            s.add(row)
            s.commit()
            return row.id

    def get_campaign(self, name: str) -> m.Campaign | None:
        with self.session() as s:
            return s.exec(select(m.Campaign).where(m.Campaign.name == name)).first()

    def set_campaign_status(self, campaign_id: int, status: str, report: dict | None = None) -> None:
        with self.session() as s:
            row = s.get(m.Campaign, campaign_id)
            row.status, row.updated_at = status, m.utcnow()
            if report is not None:
                row.last_report = report
            s.add(row)
            s.commit()

    # -- cursors -------------------------------------------------------------------------------
    @staticmethod
    def _cursor_row(s: Session, campaign_id: int, source: str, term: str) -> m.SourceCursor | None:
        return s.exec(
            select(m.SourceCursor).where(
                m.SourceCursor.campaign_id == campaign_id,
                m.SourceCursor.source == source,
                m.SourceCursor.term == term,
            )
        ).first()

    def get_cursor(self, campaign_id: int, source: str, term: str) -> m.SourceCursor | None:
        with self.session() as s:
            return self._cursor_row(s, campaign_id, source, term)

    def set_cursor(
        self, campaign_id: int, source: str, term: str, cursor: str | None | object = KEEP,
        last_post_id: str | None | object = KEEP,
    ) -> None:
        """Save where a source's crawl got to. `cursor`: the next page of an unfinished backfill
        (None once the source has been read to its end); `last_post_id`: the newest post seen by
        the last completed pass (the high-water mark a re-run stops at). KEEP leaves a field."""
        with self.session() as s:
            row = self._cursor_row(s, campaign_id, source, term) or m.SourceCursor(
                campaign_id=campaign_id, source=source, term=term
            )
            if cursor is not KEEP:
                row.cursor = cursor
            if last_post_id is not KEEP:
                row.last_post_id = last_post_id
            row.updated_at = m.utcnow()
            s.add(row)
            s.commit()

    def post_created_at(self, platform: str, post_id: str) -> datetime | None:
        with self.session() as s:
            row = self._find_post(s, platform, post_id)
            return as_utc(row.created_at) if row is not None else None

    # -- the persisted fetch queue -------------------------------------------------------------
    def ensure_media_tasks(self, campaign_id: int, post_pk: int, refs: list[tuple[str, str, int, str | None]]) -> list[str]:
        """Record the media refs (url, kind, position, resolver) of a stored post; returns each
        ref's state, so the caller fetches only what is still pending."""
        states: list[str] = []
        with self.session() as s:
            existing = {
                t.url: t for t in s.exec(
                    select(m.MediaTask).where(m.MediaTask.campaign_id == campaign_id, m.MediaTask.post_pk == post_pk)
                ).all()
            }
            for url, kind, position, resolver in refs:
                task = existing.get(url)
                if task is None:
                    task = m.MediaTask(campaign_id=campaign_id, post_pk=post_pk, url=url, kind=kind,
                                       position=position, resolver=resolver)
                    existing[url] = task
                    s.add(task)
                states.append(task.state)
            s.commit()
        return states

    def pending_media_tasks(self, campaign_id: int) -> list[m.MediaTask]:
        with self.session() as s:
            return list(s.exec(
                select(m.MediaTask).where(m.MediaTask.campaign_id == campaign_id, m.MediaTask.state == "pending")
                .order_by(m.MediaTask.id)
            ).all())

    def finish_media_tasks(self, campaign_id: int, url: str, state: str, reason: str | None = None) -> int:
        """Close every pending task for `url` in this campaign (one fetch serves them all)."""
        if state not in ("done", "dropped"):
            raise ValueError(f"a media task ends as 'done' or 'dropped', not {state!r}")
        with self.session() as s:
            tasks = s.exec(
                select(m.MediaTask).where(
                    m.MediaTask.campaign_id == campaign_id, m.MediaTask.url == url, m.MediaTask.state == "pending"
                )
            ).all()
            for task in tasks:
                task.state, task.reason, task.updated_at = state, reason, m.utcnow()
                s.add(task)
            s.commit()
            return len(tasks)

    # -- posts, media, sightings ---------------------------------------------------------------
    def upsert_post(self, campaign_id: int, post: PostRecord) -> tuple[int, bool]:
        """Insert a post once per (platform, post_id); returns (primary key, created)."""
        with self.session() as s:
            existing = self._find_post(s, post.platform, post.post_id)
            if existing is not None:
                if post.screenshot_sha256 and not existing.screenshot_sha256:
                    existing.screenshot_sha256 = post.screenshot_sha256
                    s.add(existing)
                    s.commit()
                return existing.id, False
            row = m.Post(
                platform=post.platform,
                post_id=post.post_id,
                url=post.url,
                account=post.account,
                text=post.text,
                lang=post.lang,
                hashtags=list(post.hashtags),
                search_tags=" " + " ".join(t.lstrip("#") for t in post.hashtags) + " ",
                created_at=post.created_at.astimezone(timezone.utc),
                campaign_id=campaign_id,
                source=post.source,
                screenshot_sha256=post.screenshot_sha256,
            )
            s.add(row)
            try:
                s.commit()
                return row.id, True
            except IntegrityError:  # another writer got there first: same natural key
                s.rollback()
                return self._find_post(s, post.platform, post.post_id).id, False

    @staticmethod
    def _find_post(s: Session, platform: str, post_id: str) -> m.Post | None:
        return s.exec(select(m.Post).where(m.Post.platform == platform, m.Post.post_id == post_id)).first()

    def upsert_media(self, **fields: Any) -> bool:
        """Insert a media row keyed by sha256 unless it exists; returns created."""
        with self.session() as s:
            if s.get(m.Media, fields["sha256"]) is not None:
                return False
            s.add(m.Media(**fields))
            try:
                s.commit()
                return True
            except IntegrityError:
                s.rollback()
                return False

    def get_media(self, sha256: str) -> m.Media | None:
        with self.session() as s:
            return s.get(m.Media, sha256)

    def add_sighting(
        self, *, media_sha256: str, post_pk: int, campaign_id: int, media_url: str, position: int
    ) -> bool:
        with self.session() as s:
            found = s.exec(
                select(m.Sighting).where(
                    m.Sighting.media_sha256 == media_sha256,
                    m.Sighting.post_pk == post_pk,
                    m.Sighting.media_url == media_url,
                )
            ).first()
            if found is not None:
                return False
            s.add(
                m.Sighting(
                    media_sha256=media_sha256,
                    post_pk=post_pk,
                    campaign_id=campaign_id,
                    media_url=media_url,
                    position=position,
                )
            )
            try:
                s.commit()
                return True
            except IntegrityError:
                s.rollback()
                return False

    def perceptual_hashes(self) -> tuple[list[tuple[str, str | None, str | None, int | None, dict | None]],
                                         list[tuple[str, list[str], list]]]:
        """(sha256, pHash, PDQ, PDQ quality, content region or None) of every canonical image and
        (sha256, frame pHashes, vPDQ frames) of every canonical video."""
        with self.session() as s:
            rows = s.exec(
                select(m.Media.sha256, m.Media.kind, m.Media.phash, m.Media.pdq, m.Media.pdq_quality,
                       m.Media.frame_hashes, m.Media.vpdq, m.Media.region).where(
                    m.Media.duplicate_of.is_(None)  # type: ignore[union-attr]
                )
            ).all()
        images = [(sha, ph, pdq, q, region) for sha, kind, ph, pdq, q, _, _, region in rows
                  if kind == "image" and (ph or pdq)]
        videos = [(sha, fh or [], vp or []) for sha, kind, _, _, _, fh, vp, _ in rows if kind == "video" and (fh or vp)]
        return images, videos

    def set_bank_case(self, sha256: str, case_id: str) -> None:
        with self.session() as s:
            row = s.get(m.Media, sha256)
            row.bank_case = case_id
            s.add(row)
            s.commit()

    def mark_duplicate(self, sha256: str, of_sha256: str, distance: float) -> None:
        with self.session() as s:
            row = s.get(m.Media, sha256)
            row.duplicate_of, row.duplicate_distance = of_sha256, distance
            s.add(row)
            s.commit()

    def unanalysed_media(self) -> list[m.Media]:
        """Items that no detector has judged yet (what a resumed run must still do)."""
        with self.session() as s:
            return list(s.exec(select(m.Media).where(m.Media.verdict.is_(None))).all())  # type: ignore[union-attr]

    # -- detections and verdicts ---------------------------------------------------------------
    def save_analysis(
        self,
        sha256: str,
        detections: list[DetectionResult],
        band: str,
        score: float | None,
        reasons: list[str],
    ) -> int:
        """Store each detection once per (media, detector, model) and the fused verdict."""
        created = 0
        with self.session() as s:
            for d in detections:
                key = f"{d.model_id or ''}@{d.weights_digest or ''}" if d.model_id else ""
                exists = s.exec(
                    select(m.Detection.id).where(
                        m.Detection.media_sha256 == sha256,
                        m.Detection.detector == d.detector,
                        m.Detection.model_key == key,
                    )
                ).first()
                if exists is not None:
                    continue
                s.add(
                    m.Detection(
                        media_sha256=sha256,
                        detector=d.detector,
                        version=d.version,
                        model_key=key,
                        model_id=d.model_id,
                        model_revision=d.model_revision,
                        weights_digest=d.weights_digest,
                        outcome=d.outcome,
                        score=d.score,
                        threshold=d.threshold,
                        reasons=list(d.reasons),
                        details=_jsonable(d.details),
                    )
                )
                created += 1
            media = s.get(m.Media, sha256)
            media.verdict, media.score, media.reasons = band, score, list(reasons)
            media.analysed_at = m.utcnow()
            s.add(media)
            s.commit()
        return created

    def detections_for(self, sha256: str) -> list[m.Detection]:
        with self.session() as s:
            return list(s.exec(select(m.Detection).where(m.Detection.media_sha256 == sha256)).all())

    # -- evidence ------------------------------------------------------------------------------
    def upsert_evidence(self, **fields: Any) -> tuple[int, bool]:
        with self.session() as s:
            found = s.exec(
                select(m.Evidence).where(
                    m.Evidence.media_sha256 == fields["media_sha256"],
                    m.Evidence.post_pk == fields["post_pk"],
                )
            ).first()
            if found is not None:
                return found.id, False
            if fields.get("post_created_at") is None:
                post = s.get(m.Post, fields["post_pk"])
                fields = {**fields, "post_created_at": post.created_at if post is not None else None}
            row = m.Evidence(**fields)
            s.add(row)
            s.commit()
            return row.id, True

    def update_evidence(self, evidence_id: int, **fields: Any) -> None:
        """Set columns of one evidence record (capture facts, assessments); unknown names are errors."""
        unknown = sorted(set(fields) - set(m.Evidence.model_fields))
        if unknown:
            raise StorageError(f"evidence has no field(s) {', '.join(unknown)}")
        with self.session() as s:
            row = s.get(m.Evidence, evidence_id)
            if row is None:
                raise StorageError(f"no evidence record with id {evidence_id}")
            for name, value in fields.items():
                setattr(row, name, value)
            s.add(row)
            s.commit()

    def get_post(self, post_pk: int) -> m.Post | None:
        with self.session() as s:
            return s.get(m.Post, post_pk)

    def update_evidence_capture(
        self, evidence_id: int, *, screenshot_sha256: str | None, html_sha256: str | None, captured_at: datetime
    ) -> None:
        with self.session() as s:
            row = s.get(m.Evidence, evidence_id)
            row.screenshot_sha256 = screenshot_sha256 or row.screenshot_sha256
            row.capture_html_sha256 = html_sha256 or row.capture_html_sha256
            row.captured_at = captured_at
            s.add(row)
            s.commit()


def _jsonable(value: Any) -> Any:
    """Detector details may hold numpy scalars or tuples; the JSON column wants plain types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
