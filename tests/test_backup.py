"""`db backup` / `restore`: consistent snapshots, verified archives, SQLite <-> PostgreSQL.

The source database is the `store` fixture (SQLite file and real PostgreSQL); restores go into a
new SQLite file and into a second, new PostgreSQL database."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from agents.base import Post
from evidence.custody import append_event
from storage import backup as bk
from storage import migrate
from storage import models as m
from storage.bank import KnownFakesBank
from storage.blobs import BlobStore
from storage.db import Store, as_utc, make_engine

pytestmark = pytest.mark.timeout(180)

T0 = datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture
def other_pg_url():
    """A second new PostgreSQL database (the `store` fixture's may be the first)."""
    admin = os.environ.get("DEEPWATCH_TEST_PG_URL")
    if not admin:
        if os.environ.get("CI"):
            pytest.fail("DEEPWATCH_TEST_PG_URL is not set in CI")
        pytest.skip("PostgreSQL tests need DEEPWATCH_TEST_PG_URL")
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield admin.rsplit("/", 1)[0] + "/" + name
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _post(pid: str, text: str, account: str = "김민준") -> Post:
    return Post(platform="demo", post_id=pid, url=f"https://demo.example/p/{pid}", account=account, text=text,
                created_at=T0, hashtags=("선거2026",), lang="ko", source="demo")


def _fill(store: Store, blobs: BlobStore) -> None:
    """Rows in every table, Korean text, a near-duplicate chain, and blobs."""
    cid = store.upsert_campaign("지방선거-2026", "name: 지방선거-2026\n")
    store.set_campaign_status(cid, "finished", {"posts": 2, "요약": "끝"})
    store.set_cursor(cid, "demo", "#선거", cursor="p2", last_post_id="99")
    original = blobs.put(b"original media bytes \xff\x00")
    reupload = blobs.put(b"re-encoded copy")
    screenshot = blobs.put(b"\x89PNG screenshot")
    p1, _ = store.upsert_post(cid, _post("1", "후보 딥페이크 영상 #선거"))
    p2, _ = store.upsert_post(cid, _post("2", "다시 올린 영상", account="이서연"))
    store.ensure_media_tasks(cid, p1, [("https://demo.example/m/1.jpg", "image", 0, None)])
    store.finish_media_tasks(cid, "https://demo.example/m/1.jpg", "done")
    store.upsert_media(sha256=original, kind="image", mime="image/jpeg", size=22, width=64, height=48,
                       phash="f" * 16, pdq="0" * 64, pdq_quality=90)
    store.upsert_media(sha256=reupload, kind="image", mime="image/jpeg", size=15)
    store.mark_duplicate(reupload, original, 3.0)
    store.add_sighting(media_sha256=original, post_pk=p1, campaign_id=cid, media_url="https://demo.example/m/1.jpg", position=0)
    store.add_sighting(media_sha256=reupload, post_pk=p2, campaign_id=cid, media_url="https://demo.example/m/2.jpg", position=0)
    with store.session() as s:
        s.add(m.Detection(media_sha256=original, detector="classifier", version="1", model_key="demo@abc",
                          outcome="ok", score=0.97, threshold=0.5, reasons=["가짜 0.97"], details={"라벨": "fake"}))
        s.commit()
    store.set_bank_case(original, "NEC-2026-0042")
    KnownFakesBank(store).add("sha256", original, case_id="NEC-2026-0042", source="verdict", media_sha256=original,
                              note="확인된 가짜")
    eid, _ = store.upsert_evidence(campaign_id=cid, media_sha256=original, post_pk=p1, platform="demo", post_id="1",
                                   post_url="https://demo.example/p/1", account="김민준",
                                   media_url="https://demo.example/m/1.jpg", verdict="likely_fake", score=0.97,
                                   reasons=["분류기 0.97"], screenshot_sha256=screenshot,
                                   capture_headers={"content-type": "text/html; charset=utf-8"},
                                   in_ban_window=True, ai_label_present=False, legal_notes="공직선거법 제82조의8")
    with store.session() as s:
        s.add(m.Review(evidence_id=eid, decision="confirmed", reviewer="조사관", rationale="합성 흔적이 뚜렷함"))
        s.add(m.Seal(evidence_id=eid, record_json='{"id": 1, "요약": "가짜"}', record_sha256="e" * 64,
                     signature="5" * 128, key_id="6" * 64, public_key="7" * 64))
        s.add(m.TakedownRequest(evidence_id=eid, evidence_ids=[eid], platform="demo", status="sent",
                                sent_at=T0 + timedelta(hours=1), legal_basis="공직선거법 제82조의8", sender="선관위"))
        s.add(m.LivenessCheck(evidence_id=eid, url="https://demo.example/p/1", state="gone", http_status=404))
        s.commit()
    append_event(store, eid, "captured", "campaign:지방선거-2026", {"screenshot": screenshot})
    append_event(store, eid, "reviewed", "조사관", {"decision": "confirmed"})
    with store.session() as s:  # console accounts and their audit trail
        user = m.User(username="조사관", password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", role="investigator")
        s.add(user)
        s.commit()
        s.add(m.ApiToken(user_id=user.id, name="파트너", token_sha256="a" * 64))
        s.add(m.WebSession(session_sha256="b" * 64, user_id=user.id, csrf_token="c" * 43, expires_at=T0 + timedelta(hours=8)))
        s.add(m.AuditEvent(username="조사관", action="review", target=f"evidence:{eid}", details={"결정": "confirmed"}, ip="127.0.0.1"))
        s.add(m.LoginThrottle(key="pair:조사관|127.0.0.1", account="조사관", attempts=2, next_allowed=0.0, last_at=1.0))
        s.add(m.CampaignMember(user_id=user.id, campaign_id=cid))
        s.commit()
    from storage.bank_video import BankVideo
    from storage.references import Reference, ReferenceHash

    with store.session() as s:  # the reference library and the video bank
        ref = Reference(sha256="d" * 64, kind="image", mime="image/jpeg", owner="후보 공식 채널",
                        source_url="https://demo.example/official/1", note="보도자료", width=640, height=480)
        s.add(ref)
        s.add(BankVideo(case_id="NEC-2026-0042", name="speech", media_sha256=None, source="import", n_frames=2,
                        frames=[[0.0, 100, "f" * 64], [0.5, 90, "e" * 64]]))
        s.commit()
        s.add(ReferenceHash(reference_id=ref.id, region="frame", pdq="a" * 64, quality=100))
        s.commit()


def _all_rows(url: str) -> dict[str, list[dict]]:
    """Every row of every deepwatch table, typed by SQLAlchemy, times in UTC: comparable across
    SQLite and PostgreSQL."""
    engine = make_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            tables = sa.MetaData()
            tables.reflect(conn, only=lambda name, _: not migrate.is_search_index_table(name))
            for table in tables.sorted_tables:
                if table.name == migrate.VERSION_TABLE:
                    continue
                rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).mappings()
                out[table.name] = [
                    {k: as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows
                ]
    finally:
        engine.dispose()
    return out


def _blob_files(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("??/??/*")) if p.is_file()}


def _check_round_trip(store, blobs, tmp_path, target_url):
    _fill(store, blobs)
    info = bk.backup(store, blobs.root, tmp_path / "deepwatch-backup.tar.gz")
    assert info.revision == migrate.head_revision()
    assert info.blobs == 3 and info.damaged_blobs == []
    assert all(info.rows[t] > 0 for t in migrate.known_tables()), info.rows

    restored_blobs = tmp_path / "restored-blobs"
    result = bk.restore(info.path, target_url, restored_blobs)

    assert result.revision == migrate.head_revision() and result.blobs_copied == 3
    assert result.rows == info.rows
    before, after = _all_rows(store.url), _all_rows(target_url)
    assert set(after) == set(before)
    for table in before:
        assert after[table] == before[table], table
    assert _blob_files(restored_blobs) == _blob_files(blobs.root)

    # The restored database takes new rows (PostgreSQL's id sequences were moved on).
    target = Store(target_url)
    try:
        campaign = target.get_campaign("지방선거-2026")
        pk, created = target.upsert_post(campaign.id, _post("3", "복원 후 새 게시물"))
        assert created and pk == 3
        event = append_event(target, 1, "exported", "조사관")
        assert event.seq == 3 and event.id == 3
    finally:
        target.close()


def test_round_trip_into_sqlite(store, blobs, tmp_path):
    # SQLite -> SQLite and PostgreSQL -> SQLite
    _check_round_trip(store, blobs, tmp_path, f"sqlite:///{tmp_path / 'restored.db'}")


def test_round_trip_into_postgresql(store, blobs, tmp_path, other_pg_url):
    # SQLite -> PostgreSQL and PostgreSQL -> PostgreSQL
    _check_round_trip(store, blobs, tmp_path, other_pg_url)


def test_archive_layout_and_manifest(store, blobs, tmp_path):
    _fill(store, blobs)
    info = bk.backup(store, blobs.root, tmp_path / "b.tar")
    with tarfile.open(info.path) as tar:
        names = tar.getnames()
        manifest = tar.extractfile("MANIFEST.sha256").read().decode()
        meta = json.loads(tar.extractfile("backup.json").read())
        posts = [json.loads(line) for line in tar.extractfile("db/post.jsonl").read().decode().splitlines()]
    assert names[-1] == "MANIFEST.sha256" and "db/alembic_version.jsonl" not in names
    assert {line.split("  ", 1)[1] for line in manifest.splitlines()} == set(names) - {"MANIFEST.sha256"}
    assert meta["revision"] == migrate.head_revision() and meta["rows"]["post"] == 2 and meta["blobs"] == 3
    assert meta["source_dialect"] == store.engine.dialect.name
    assert posts[0]["text"] == "후보 딥페이크 영상 #선거" and posts[0]["hashtags"] == ["선거2026"]
    assert posts[0]["created_at"] == "2026-05-01T09:30:00.123456+00:00"
    with pytest.raises(bk.BackupError, match="already exists"):
        bk.backup(store, blobs.root, info.path)


def _rewrite_member(src, dst, name, change):
    """Copy a tar archive, passing one member's bytes through `change` (the manifest is kept)."""
    with tarfile.open(src) as old, tarfile.open(dst, "w") as new:
        for member in old:
            data = old.extractfile(member).read()
            if member.name == name:
                data = change(data)
                member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def test_corrupted_member_is_refused_before_anything_is_written(store, blobs, tmp_path):
    _fill(store, blobs)
    good = bk.backup(store, blobs.root, tmp_path / "good.tar")
    sha = blobs.put(b"original media bytes \xff\x00")
    target_db, target_blobs = tmp_path / "target.db", tmp_path / "target-blobs"

    bad_blob = tmp_path / "bad-blob.tar"
    _rewrite_member(good.path, bad_blob, f"blobs/{sha}", lambda b: b[:-1] + b"!")
    with pytest.raises(bk.BackupError, match=f"member blobs/{sha} was changed"):
        bk.restore(bad_blob, f"sqlite:///{target_db}", target_blobs)

    bad_rows = tmp_path / "bad-rows.tar"
    _rewrite_member(good.path, bad_rows, "db/evidence.jsonl", lambda b: b.replace("likely_fake".encode(), b"authentic!!"))
    with pytest.raises(bk.BackupError, match="member db/evidence.jsonl was changed"):
        bk.restore(bad_rows, f"sqlite:///{target_db}", target_blobs)

    assert not target_db.exists() and not target_blobs.exists()  # nothing was written
    with pytest.raises(bk.BackupError, match="is not a readable tar archive"):
        bk.restore(_truncated(good.path, tmp_path), f"sqlite:///{target_db}", target_blobs)
    assert not target_db.exists()


def _truncated(path, tmp_path):
    out = tmp_path / "truncated.tar"
    out.write_bytes(path.read_bytes()[:700])
    return out


def test_restore_refuses_a_database_holding_rows_unless_forced(store, blobs, tmp_path):
    _fill(store, blobs)
    archive = bk.backup(store, blobs.root, tmp_path / "b.tar").path
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = Store(target_url)
    target.upsert_campaign("다른 캠페인", "name: other\n")
    target.close()

    with pytest.raises(bk.BackupError, match=r"is not empty \(campaign: 1\).*force"):
        bk.restore(archive, target_url, tmp_path / "target-blobs")
    assert [r["name"] for r in _all_rows(target_url)["campaign"]] == ["다른 캠페인"]  # untouched

    bk.restore(archive, target_url, tmp_path / "target-blobs", force=True)
    assert _all_rows(target_url) == _all_rows(store.url)


def _reseal(src, dst, change) -> None:
    """Copy an archive, letting `change` edit its members ({name: bytes}), with a manifest
    rewritten to match: an archive that verifies but holds what a test wants."""
    with tarfile.open(src) as old:
        members = {mbr.name: old.extractfile(mbr).read() for mbr in old}
    change(members)
    members["MANIFEST.sha256"] = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in members.items() if name != "MANIFEST.sha256"
    ).encode()
    with tarfile.open(dst, "w") as new:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))


def test_restore_of_a_backup_from_a_newer_deepwatch_is_refused(store, blobs, tmp_path):
    _fill(store, blobs)
    archive = bk.backup(store, blobs.root, tmp_path / "b.tar").path

    def from_the_future(members):
        meta = json.loads(members["backup.json"])
        meta["revision"] = "0099_from_the_future"
        members["backup.json"] = json.dumps(meta).encode()

    _reseal(archive, tmp_path / "future.tar", from_the_future)
    with pytest.raises(bk.BackupError, match="'0099_from_the_future'.*newer deepwatch"):
        bk.restore(tmp_path / "future.tar", f"sqlite:///{tmp_path / 'target.db'}", tmp_path / "target-blobs")


def test_failed_forced_restore_leaves_the_database_as_it_was(store, blobs, tmp_path, request):
    _fill(store, blobs)
    archive = bk.backup(store, blobs.root, tmp_path / "b.tar").path

    def orphan_sighting(members):
        # A sighting of a post the backup does not hold: the insert fails late, after the old
        # tables were dropped and the new rows of earlier tables went in.
        rows = [json.loads(line) for line in members["db/sighting.jsonl"].decode().splitlines()]
        rows[-1]["post_pk"] = 999_999
        members["db/sighting.jsonl"] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()

    _reseal(archive, tmp_path / "orphan.tar", orphan_sighting)
    # The target is of the store's kind: the restore must be one transaction on both.
    if store.engine.dialect.name == "postgresql":
        target_url = request.getfixturevalue("other_pg_url")
    else:
        target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = Store(target_url)
    target.upsert_campaign("지켜야 할 캠페인", "name: keep\n")
    target.close()
    before = _all_rows(target_url)

    with pytest.raises(bk.BackupError, match="failed and was rolled back"):
        bk.restore(tmp_path / "orphan.tar", target_url, tmp_path / "target-blobs", force=True)

    assert _all_rows(target_url) == before
    assert migrate.current_revision(target_url) == migrate.head_revision()


def test_writes_during_backup_do_not_tear_the_snapshot(store, blobs, tmp_path):
    _fill(store, blobs)
    campaign_id = store.get_campaign("지방선거-2026").id
    media = blobs.put(b"media the writer keeps sighting")
    store.upsert_media(sha256=media, kind="image", mime="image/jpeg", size=31)
    # Enough rows that reading them takes a while, so the writer really runs in between.
    with store.session() as s:
        for i in range(3000):
            s.add(m.Post(platform="bulk", post_id=str(i), url=f"https://demo.example/b/{i}", account="bulk",
                         text="대량 게시물", created_at=T0, campaign_id=campaign_id))
        s.commit()

    stop = threading.Event()
    written = []

    def writer():
        writer_store = Store(store.url, create=False)
        try:
            n = 0
            while not stop.is_set():
                pk, _ = writer_store.upsert_post(campaign_id, _post(f"live-{n}", "실시간 게시물"))
                writer_store.add_sighting(media_sha256=media, post_pk=pk, campaign_id=campaign_id,
                                          media_url=f"https://demo.example/live/{n}.jpg", position=0)
                n += 1
            written.append(n)
        finally:
            writer_store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        info = bk.backup(store, blobs.root, tmp_path / "live.tar")
    finally:
        stop.set()
        thread.join(60)
    assert written and written[0] > 0  # the writer did write while the backup ran

    with tarfile.open(info.path) as tar:
        tables = {
            name: [json.loads(line) for line in tar.extractfile(f"db/{name}.jsonl").read().decode().splitlines()]
            for name in info.rows
        }
        meta = json.loads(tar.extractfile("backup.json").read())
    assert meta["rows"] == {name: len(rows) for name, rows in tables.items()}
    post_ids = {p["id"] for p in tables["post"]}
    assert all(s["post_pk"] in post_ids for s in tables["sighting"])  # no sighting without its post
    live_posts = {p["id"] for p in tables["post"] if p["post_id"].startswith("live-")}
    live_sightings = {s["post_pk"] for s in tables["sighting"] if "/live/" in s["media_url"]}
    # The writer adds a post, then its sighting: a snapshot may catch a post without its sighting
    # yet, never the reverse, and at most one such post (the one being written at that moment).
    assert live_sightings <= live_posts and len(live_posts - live_sightings) <= 1

    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    assert bk.restore(info.path, restored, tmp_path / "restored-blobs").rows == meta["rows"]


def test_bad_paths_and_urls_are_clear_errors(store, blobs, tmp_path):
    with pytest.raises(bk.BackupError, match="blob store .*nowhere does not exist"):
        bk.backup(store, tmp_path / "nowhere", tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()
    with pytest.raises(bk.BackupError, match="backup .*missing.tar does not exist"):
        bk.restore(tmp_path / "missing.tar", f"sqlite:///{tmp_path / 't.db'}", tmp_path / "t-blobs")
    archive = bk.backup(store, blobs.root, tmp_path / "b.tar").path
    # Nothing listens on port 1: the error names the database, not a driver traceback.
    with pytest.raises(bk.BackupError, match=r"cannot open database postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/db"):
        bk.restore(archive, "postgresql+psycopg://u:secret@127.0.0.1:1/db", tmp_path / "t-blobs")
