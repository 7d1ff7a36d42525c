"""Alembic migrations: a new database, one made by an earlier deepwatch, and one from the future.

Every test runs on a SQLite file and on a real PostgreSQL database (`store_url`)."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import storage.bank  # noqa: F401  (bank_entry is part of the schema)
import storage.references  # noqa: F401  (the reference library is part of the schema)
import storage.bank_video  # noqa: F401  (bank_video, migration 0011)
import storage.models  # noqa: F401
from agents.base import Post
from storage import migrate
from storage import models as m
from storage.db import Store, StorageError, make_engine

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)
SHA_A = "a" * 64
SHA_B = "b" * 64


def _modelled(obj, name, type_, reflected, compare_to) -> bool:
    """False for what migrations add for reads only and the models leave out: 0005's gallery
    indexes (ix_gallery_*) and SQLite keyword index (gallery_fts and its FTS5 shadow tables)."""
    return not (reflected and compare_to is None and (name or "").startswith(("ix_gallery_", "gallery_fts")))


def _differences(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _modelled})
            return compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()


def _insert(conn, table: str, **values) -> None:
    """A plain SQL INSERT, as a database written by the earlier release holds its rows."""
    params = []
    for name, value in values.items():
        if isinstance(value, datetime):
            params.append(sa.bindparam(name, value, type_=sa.DateTime(timezone=True)))
        elif isinstance(value, (dict, list)):
            params.append(sa.bindparam(name, value, type_=sa.JSON()))
        else:
            params.append(sa.bindparam(name, value))
    columns = ", ".join(f'"{n}"' for n in values)
    marks = ", ".join(f":{n}" for n in values)
    conn.execute(sa.text(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})').bindparams(*params))


def _fill_release_0001(url: str) -> None:
    """One or more rows in every table the first release had, Korean text included. Ids come from
    the database (1 in each new table), as they did in that release."""
    engine = make_engine(url)
    with engine.begin() as conn:
        _insert(conn, "campaign", name="지방선거-2026", spec_yaml="name: 지방선거-2026\n", spec_sha256="c" * 64,
                status="finished", created_at=T0, updated_at=T0, last_report={"posts": 2, "요약": "끝"})
        _insert(conn, "sourcecursor", campaign_id=1, source="demo", term="#선거", cursor="p2",
                last_post_id="99", updated_at=T0)
        _insert(conn, "post", platform="demo", post_id="p1", url="https://demo.example/p/1",
                account="김민준", text="후보 딥페이크 영상 #선거", lang="ko", hashtags=["선거"],
                search_tags=" 선거 ", created_at=T0, first_seen_at=T0, campaign_id=1, source="demo",
                screenshot_sha256=None)
        _insert(conn, "media", sha256=SHA_A, kind="image", mime="image/jpeg", size=1234, width=64, height=48,
                duration_s=None, phash="f" * 16, pdq="0" * 64, pdq_quality=90, frame_hashes=[], vpdq=[],
                first_seen_at=T0, duplicate_of=None, duplicate_distance=None, verdict="likely_fake",
                score=0.97, reasons=["분류기 0.97"], analysed_at=T0, bank_case="NEC-2026-0042")
        _insert(conn, "media", sha256=SHA_B, kind="image", mime="image/png", size=99, width=None, height=None,
                duration_s=None, phash=None, pdq=None, pdq_quality=None, frame_hashes=[], vpdq=[],
                first_seen_at=T0, duplicate_of=SHA_A, duplicate_distance=4.0, verdict=None, score=None,
                reasons=[], analysed_at=None, bank_case=None)
        _insert(conn, "sighting", media_sha256=SHA_A, post_pk=1, campaign_id=1,
                media_url="https://demo.example/m/1.jpg", position=0, seen_at=T0)
        _insert(conn, "detection", media_sha256=SHA_A, detector="classifier", version="1",
                model_key="demo@abc", model_id="demo", model_revision=None, weights_digest="abc",
                outcome="ok", score=0.97, threshold=0.5, reasons=["가짜"], details={"label": "fake"}, created_at=T0)
        _insert(conn, "evidence", campaign_id=1, media_sha256=SHA_A, post_pk=1, platform="demo",
                post_id="p1", post_url="https://demo.example/p/1", account="김민준",
                media_url="https://demo.example/m/1.jpg", captured_at=T0, screenshot_sha256=None,
                capture_html_sha256=None, phash="f" * 16, verdict="likely_fake", score=0.97,
                reasons=["분류기 0.97"], matched_sha256=None, match_distance=None, created_at=T0)
        _insert(conn, "takedownrequest", evidence_id=1, platform="demo", status="sent",
                packet_path="packets/1", packet_sha256="d" * 64, created_at=T0, updated_at=T0, notes="선관위 통보")
        _insert(conn, "bank_entry", signal="sha256", hash_hex=SHA_A, case_id="NEC-2026-0042",
                media_sha256=SHA_A, source="verdict", note="확인된 가짜", added_at=T0)
    engine.dispose()


def _rows(url: str, tables) -> dict[str, list[dict]]:
    """Every row of `tables` as the database hands it back, in key order."""
    engine = make_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in tables:
            key = "sha256" if table == "media" else "id"
            out[table] = [dict(r) for r in conn.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY {key}')).mappings()]
    engine.dispose()
    return out


def _json(value):
    return json.loads(value) if isinstance(value, str) else value  # SQLite hands JSON back as text


def test_migrations_build_exactly_the_models(store_url):
    assert migrate.upgrade(store_url) == migrate.head_revision() == migrate.known_revisions()[-1]
    assert migrate.current_revision(store_url) == migrate.head_revision()
    assert _differences(store_url) == []


def test_comparison_sees_a_schema_that_is_behind(store_url):
    # The check above is only worth something if the comparison notices a difference.
    migrate.upgrade(store_url, "0002_media_task")
    diffs = _differences(store_url)
    added_tables = {d[1].name for d in diffs if d[0] == "add_table"}
    added_columns = {(d[2], d[3].name) for d in diffs if d[0] == "add_column"}
    assert added_tables == {"custodyevent", "review", "seal", "livenesscheck", "user", "apitoken", "websession", "auditevent",
                            "loginthrottle", "campaignmember",
                            "reference", "reference_hash", "bank_video"}
    assert ("evidence", "review_status") in added_columns and ("takedownrequest", "sent_at") in added_columns


def test_upgrade_from_first_release_keeps_every_row(store_url):
    migrate.upgrade(store_url, "0001_initial")
    _fill_release_0001(store_url)
    old_tables = ["campaign", "sourcecursor", "post", "media", "sighting", "detection", "evidence",
                  "takedownrequest", "bank_entry"]
    before = _rows(store_url, old_tables)

    assert migrate.upgrade(store_url) == migrate.head_revision()

    after = _rows(store_url, old_tables)
    for table in old_tables:
        assert len(after[table]) == len(before[table]) > 0, table
        for old, new in zip(before[table], after[table]):
            assert {k: new[k] for k in old} == old, table  # every old value unchanged
    evidence = after["evidence"][0]
    assert evidence["review_status"] == "unreviewed"
    assert evidence["legal_notes"] == ""
    assert _json(evidence["capture_headers"]) == {}
    assert evidence["in_ban_window"] is None and evidence["wacz_sha256"] is None
    # 0006 copied the post's time onto its evidence (the gallery's dated listings read it there).
    post_time = {p["id"]: p["created_at"] for p in after["post"]}[evidence["post_pk"]]
    assert evidence["post_created_at"] == post_time is not None
    takedown = after["takedownrequest"][0]
    assert _json(takedown["evidence_ids"]) == [1]  # the release's notices were about one record each
    assert takedown["sent_at"] is None and takedown["legal_basis"] is None
    assert _rows(store_url, ["mediatask", "custodyevent", "review", "seal", "livenesscheck"]) == {
        "mediatask": [], "custodyevent": [], "review": [], "seal": [], "livenesscheck": []}
    assert _differences(store_url) == []

    # The upgraded database works with the current code.
    store = Store(store_url)
    try:
        pk, created = store.upsert_post(1, Post(platform="demo", post_id="p2", url="https://demo.example/p/2",
                                                account="이서연", text="두 번째 게시물", created_at=T0,
                                                hashtags=("선거",)))
        assert created and pk == 2
        assert store.add_sighting(media_sha256=SHA_B, post_pk=pk, campaign_id=1,
                                  media_url="https://demo.example/m/2.png", position=0)
        with store.session() as s:
            s.add(m.Review(evidence_id=1, decision="confirmed", reviewer="조사관", rationale="합성 흔적"))
            s.commit()
            row = s.get(m.Evidence, 1)
            assert row.review_status == "unreviewed" and row.capture_headers == {} and row.account == "김민준"
            assert s.get(m.Campaign, 1).last_report == {"posts": 2, "요약": "끝"}
    finally:
        store.close()


def test_unversioned_first_release_database_is_stamped_then_upgraded(store_url):
    # What the first release left behind: its tables from create_all, no alembic_version, and
    # bank_entry only if the bank had been opened (here it had not).
    migrate.upgrade(store_url, "0001_initial")
    _fill_release_0001(store_url)
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bank_entry"))
        conn.execute(sa.text("DROP TABLE alembic_version"))
    engine.dispose()
    assert migrate.current_revision(store_url) is None

    assert migrate.upgrade(store_url) == migrate.head_revision()

    assert migrate.current_revision(store_url) == migrate.head_revision()
    rows = _rows(store_url, ["post", "evidence", "bank_entry"])
    assert [r["text"] for r in rows["post"]] == ["후보 딥페이크 영상 #선거"]
    assert rows["evidence"][0]["review_status"] == "unreviewed"
    assert rows["bank_entry"] == []  # made, empty
    assert _differences(store_url) == []


def test_unversioned_database_with_media_task_is_stamped_0002(store_url):
    migrate.upgrade(store_url, "0002_media_task")
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
    engine.dispose()
    # Stamped 0002 (were it taken for 0001, creating mediatask again would fail).
    assert migrate.upgrade(store_url, "0002_media_task") == "0002_media_task"
    assert migrate.current_revision(store_url) == "0002_media_task"
    assert migrate.upgrade(store_url) == migrate.head_revision()


def test_unrecognised_unversioned_schema_is_a_clear_error(store_url):
    migrate.upgrade(store_url, "0001_initial")
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DROP TABLE takedownrequest"))
    engine.dispose()
    with pytest.raises(migrate.MigrationError, match="matches no schema.*closest is 0001_initial: table takedownrequest missing"):
        migrate.upgrade(store_url)
    assert migrate.current_revision(store_url) is None  # nothing stamped


def test_database_from_a_newer_deepwatch_is_refused(store_url):
    migrate.upgrade(store_url)
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(migrate.MigrationError, match="'0099_from_the_future'.*newer deepwatch"):
        migrate.upgrade(store_url)
    with pytest.raises(StorageError, match="newer deepwatch"):
        Store(store_url)


def test_unknown_target_revision_is_refused(store_url):
    with pytest.raises(migrate.MigrationError, match="unknown schema revision 'nope'"):
        migrate.upgrade(store_url, "nope")


def test_concurrent_first_opens_create_the_schema_once(store_url):
    results, errors = [], []

    def open_it():
        try:
            results.append(migrate.upgrade(store_url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == [migrate.head_revision()] * 4
    assert _differences(store_url) == []


def test_audit_log_is_append_only_in_the_database(store_url):
    """No code path can rewrite the audit log: the database itself refuses."""
    import sqlalchemy as sa

    migrate.upgrade(store_url)
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("insert into auditevent (at, username, action, target, details, ip) "
                                 "values (CURRENT_TIMESTAMP, 'kim', 'login', '', '{}', '127.0.0.1')"))
        for statement in ("update auditevent set username = 'lee'", "delete from auditevent"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(sa.text(statement))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select username from auditevent")).scalars().all() == ["kim"]
    finally:
        engine.dispose()
