"""Evidence an outsider can verify (issue 17): the keyring and verification with public keys alone,
key rotation, refusals to build on a record that no longer matches its seal, exports named after
the person exporting, and notices that claim only what holds (independent corroboration, review
state, Korean reasons, legible screenshots, video stills, hashtags once). SQLite and PostgreSQL."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text
from typer.testing import CliRunner

from agents.base import MediaRef, Post
from evidence.custody import events_for
from evidence.keyring import KeyringError, load_keyring, load_trusted
from evidence.notice_facts import crop_to_content, extra_hashtags, localise_reason, localise_reasons, video_stills
from evidence.review import ReviewError, assess_evidence, review_evidence
from evidence.seal import seal_evidence
from evidence.signing import Signer, rotate
from evidence.takedown import TakedownError, build_takedown, explain, load_takedown_config
from evidence.verify import NoSuchEvidence, TamperedError, verify_evidence
from orchestrator.cli import app
from storage import models as m
from storage.bank import KnownFakesBank
from storage.blobs import BlobStore
from storage.db import Store
from storage.packet import export_packet
from tests.evidence_factory import make_evidence

pytestmark = pytest.mark.timeout(180)


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def edit(store, statement: str, **params) -> None:
    """Someone with database access, behind deepwatch's back."""
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.fixture
def signer(tmp_path):
    return Signer.load_or_create(tmp_path / "keys")


# -- keyring and outside verification ---------------------------------------------------------------

def test_keyring_records_every_key_and_exports_public_parts_only(tmp_path):
    first = Signer.load_or_create(tmp_path / "keys")
    assert [k.key_id for k in load_keyring(tmp_path / "keys")] == [first.key_id]
    old, second = rotate(tmp_path / "keys")
    assert old == first.key_id and second.key_id != first.key_id
    keys = load_keyring(tmp_path / "keys")
    assert [k.key_id for k in keys] == [first.key_id, second.key_id]
    assert keys[0].not_after is not None and keys[1].not_after is None and keys[1].not_before is not None
    assert (tmp_path / "keys" / f"retired-{first.key_id[:16]}.pem").exists()
    assert Signer.load_or_create(tmp_path / "keys").key_id == second.key_id  # the new key signs now

    bad = tmp_path / "with-private.json"
    pem = (tmp_path / "keys" / "evidence-ed25519.pem").read_text()
    bad.write_text(json.dumps({"format": "deepwatch-keyring/1", "keys": [], "note": pem}))
    with pytest.raises(KeyringError, match="private key material"):
        load_trusted(bad)
    forged = tmp_path / "forged.json"
    entry = keys[0].to_json() | {"key_id": "0" * 64}
    forged.write_text(json.dumps({"format": "deepwatch-keyring/1", "keys": [entry]}))
    with pytest.raises(KeyringError, match="key_id is not the sha256 of its public key"):
        load_trusted(forged)


@pytest.fixture
def cli_env(tmp_path, monkeypatch, store_url):
    monkeypatch.setenv("DEEPWATCH_DB", store_url)
    monkeypatch.setenv("DEEPWATCH_BLOBS", str(tmp_path / "blobs"))
    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("DEEPWATCH_TSA_URL", raising=False)
    store = Store(store_url)
    blobs = BlobStore(tmp_path / "blobs")
    ids = [make_evidence(store, blobs, seed=n) for n in (1, 2)]
    yield tmp_path, store, ids
    store.close()


def test_outsider_verifies_with_exported_public_keys_across_a_rotation(cli_env, monkeypatch):
    tmp, store, (ev1, ev2) = cli_env
    assert cli("evidence", "seal", str(ev1)).exit_code == 0
    assert cli("keys", "rotate").exit_code == 2  # needs --yes
    rotated = cli("keys", "rotate", "--yes")
    assert rotated.exit_code == 0 and "retired" in rotated.output
    assert cli("evidence", "seal", str(ev2)).exit_code == 0
    listed = cli("keys", "list", "--json")
    assert len(json.loads(listed.output)) == 2

    exported = tmp / "deepwatch-public-keys.json"
    assert cli("keys", "export", str(exported)).exit_code == 0
    body = exported.read_text()
    assert "PRIVATE" not in body and len(json.loads(body)["keys"]) == 2
    assert cli("keys", "export", str(exported)).exit_code == 2  # never overwrites

    # The auditor's machine: no key folder at all, only the exported public keys.
    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp / "auditor-has-no-keys"))
    checked = cli("evidence", "verify", "--all", "--trusted-keys", str(exported))
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(": ok") == 2 and "custody log: intact" in checked.output
    assert not (tmp / "auditor-has-no-keys").exists()  # verifying minted no key

    # A seal by a key outside the trusted set fails.
    seal_evidence(store, ev1, Signer.load_or_create(tmp / "intruder"), check_previous=False)
    outside = cli("evidence", "verify", str(ev1), "--trusted-keys", str(exported))
    assert outside.exit_code == 1 and "signed by an unknown key" in outside.output


def test_a_seal_outside_its_keys_validity_fails(cli_env, signer):
    tmp, store, (ev1, _) = cli_env
    seal_evidence(store, ev1, signer)
    info = load_keyring(signer.folder)[0]
    ended = info.to_json() | {"not_after": (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()}
    trusted = tmp / "trusted.json"
    trusted.write_text(json.dumps({"format": "deepwatch-keyring/1", "keys": [ended]}))
    report = verify_evidence(store, None, ev1, key_ids=load_trusted(trusted))
    assert any("which was valid only from" in p for p in report.problems), report.problems
    assert verify_evidence(store, None, ev1, key_ids={info.key_id: info}).ok


def test_a_record_that_never_existed_is_not_tampered(cli_env):
    missing = cli("evidence", "verify", "99999")
    assert missing.exit_code == 2 and "no such evidence record" in missing.output and "TAMPERED" not in missing.output
    with pytest.raises(NoSuchEvidence):
        verify_evidence(cli_env[1], None, 99999)


# -- nothing builds on an edited record -------------------------------------------------------------

def test_edited_record_is_never_resealed_reviewed_or_sent(store, blobs, tmp_path, signer):
    ev = make_evidence(store, blobs, seed=3)
    seal_evidence(store, ev, signer)
    edit(store, "UPDATE evidence SET score = 0.99 WHERE id = :id", id=ev)
    keys = {signer.key_id}

    with pytest.raises(ReviewError, match="does not match its last seal.*score"):
        review_evidence(store, ev, "confirmed", "lee", "jaw seams", key_ids=keys)
    with pytest.raises(ReviewError, match="does not match its last seal"):
        assess_evidence(store, ev, "lee", campaign_purpose=True, key_ids=keys)
    with pytest.raises(TamperedError, match="score"):
        seal_evidence(store, ev, signer, actor="lee")
    with pytest.raises(TakedownError, match="does not match its last seal"):
        build_takedown(store, blobs, [ev], "demo", tmp_path / "packet", load_takedown_config(), signer,
                       actor="lee", allow_unreviewed=True)
    assert not (tmp_path / "packet").exists()

    refused = [e for e in events_for(store, ev) if e.action == "integrity_refused"]
    assert [(e.actor, e.details["attempted"]) for e in refused] == [
        ("lee", "review"), ("lee", "assess"), ("lee", "seal"), ("lee", "takedown build")]
    with store.session() as s:
        assert s.get(m.Evidence, ev).review_status == "unreviewed"  # the review did not happen
    report = verify_evidence(store, blobs, ev, key_ids=keys)
    assert report.status == "TAMPERED" and any("'score' changed" in p for p in report.problems)


def test_an_intact_record_is_reviewed_and_resealed(store, blobs, signer):
    ev = make_evidence(store, blobs, seed=4)
    seal_evidence(store, ev, signer)
    review_evidence(store, ev, "confirmed", "lee", "jaw seams", key_ids={signer.key_id})
    seal_evidence(store, ev, signer, actor="lee", check_previous=False)
    assert verify_evidence(store, blobs, ev, key_ids={signer.key_id}).ok
    # and a plain re-seal of an unchanged record passes its own check
    seal_evidence(store, ev, signer, actor="lee")


# -- exports name the person -----------------------------------------------------------------------

def test_evidence_export_logs_the_actor_and_its_page_is_locked_down(store, blobs, tmp_path):
    ev = make_evidence(store, blobs, seed=5)
    edit(store, "UPDATE post SET url = 'javascript:alert(1)' WHERE post_id = 'p5'")
    out = export_packet(store, blobs, ev, tmp_path / "export", actor="analyst-kim")
    page = (out / "index.html").read_text("utf-8")
    assert 'href="javascript:' not in page and "<code>javascript:alert(1)</code>" in page
    assert '<a href="https://demo.example/m/5.jpg"' in page  # a real web address stays a link
    assert "Content-Security-Policy" in page and "default-src 'none'" in page and "script-src" not in page
    exported = [e for e in events_for(store, ev) if e.action == "exported"]
    assert len(exported) == 1 and exported[0].actor == "analyst-kim"
    assert exported[0].details["kind"] == "evidence export"
    assert cli("evidence", "export", str(ev), str(tmp_path / "x")).exit_code == 2  # --actor is required


# -- what a notice may claim ----------------------------------------------------------------------

def _copy_on(store, blobs, evidence_id: int, platform: str, post_id: str) -> None:
    """The same file, posted again elsewhere."""
    with store.session() as s:
        ev = s.get(m.Evidence, evidence_id)
    cid = store.upsert_campaign("c", "name: c")
    pk, _ = store.upsert_post(cid, Post(platform=platform, post_id=post_id, url=f"https://{platform}.example/{post_id}",
                                        account="other", text="again", created_at=datetime(2026, 5, 21, tzinfo=timezone.utc),
                                        media=(MediaRef(f"https://{platform}.example/{post_id}.jpg", "image"),)))
    store.add_sighting(media_sha256=ev.media_sha256, post_pk=pk, campaign_id=cid,
                       media_url=f"https://{platform}.example/{post_id}.jpg", position=0)


def test_notice_counts_only_independent_corroboration(store, blobs, tmp_path, signer):
    ev = make_evidence(store, blobs, seed=6)
    with store.session() as s:
        row = s.get(m.Evidence, ev)
        sha = row.media_sha256
    bank = KnownFakesBank(store)
    bank.add("sha256", sha, case_id="SELF-1", source="verdict", media_sha256=sha)  # made from this very file
    _copy_on(store, blobs, ev, "mastodon", "m1")
    _copy_on(store, blobs, ev, "bluesky", "b1")
    review_evidence(store, ev, "confirmed", "lee", "face swap", key_ids={signer.key_id})

    # An altered copy of a banked reference: another file, matched to it by PDQ.
    altered = make_evidence(store, blobs, seed=7)
    with store.session() as s:
        reference_sha = s.get(m.Evidence, ev).media_sha256
        row = s.get(m.Evidence, altered)
        row.matched_sha256, row.match_distance, row.review_status = reference_sha, 12.0, "confirmed"
        s.add(row)
        s.commit()
    bank.add("pdq", "ef" * 32, case_id="NEC-REF-9", source="import", media_sha256=reference_sha)
    edit(store, "UPDATE media SET pdq = :p WHERE sha256 = (SELECT media_sha256 FROM evidence WHERE id = :id)",
         p="ef" * 32, id=altered)

    out = tmp_path / "packet"
    build_takedown(store, blobs, [ev, altered], "demo", out, load_takedown_config(), signer, actor="lee")
    notice = json.loads((out / "notice.json").read_text("utf-8"))
    first, second = notice["items"]
    # Every entry about the first file was made from it (its verdict, its own review, the
    # reference imported from it): none corroborates it; its copies elsewhere do.
    assert first["bank_matches"] == []
    assert {b["case_id"] for b in first["bank_entries_not_independent"]} == {"SELF-1", f"evidence-{ev}", "NEC-REF-9"}
    assert first["other_copies"]["count"] == 2 and first["other_copies"]["platforms"] == ["bluesky", "mastodon"]
    assert "SELF-1" not in first["explanation"]
    assert "bluesky, mastodon에서 발견된 다른 사본 2건과 일치합니다" in first["explanation"]
    # The second is another file, an altered copy of the first: every entry about the first
    # (a different file) corroborates it.
    assert {b["case_id"] for b in second["bank_matches"]} == {"SELF-1", f"evidence-{ev}", "NEC-REF-9"}
    assert {b["kind"] for b in second["bank_matches"]} == {"altered_copy"} and second["bank_entries_not_independent"] == []
    assert "알려진 딥페이크 참조 NEC-REF-9의 변형 사본" in second["explanation"]


def test_korean_notices_carry_korean_reasons():
    ko = localise_reason("classifier demo-detector scored 0.93 >= 0.50 (mean of the top 3 of 8 sampled frames)", "ko")
    assert ko == "분류 모델 demo-detector의 점수 0.93 (>= 기준값 0.50, 표본 프레임 8개 중 상위 3개의 평균)"
    assert localise_reason("frames scoring >= 0.50 at 1.0-2.5 s", "ko") == "점수가 0.50 이상인 프레임 구간: 1.0-2.5 s"
    assert localise_reason("something no table knows", "en") == "something no table knows"
    shown = localise_reasons(["classifier scored 0.93", "something no table knows"], "ko")
    assert shown == ["분류 모델 점수 0.93", "그 밖의 근거 1건은 notice.json에 원문으로 기재되어 있습니다"]

    entry = {
        "media": {"kind": "image", "url": "https://x/m.jpg", "sha256": "ab" * 32},
        "post": {"url": "https://x/p", "account": "a", "posted_at": None},
        "verdict": {"band": "likely_fake", "band_local": "딥페이크 가능성 높음", "score": 0.93, "reasons": ["classifier scored 0.93"],
                    "reasons_local": ["분류 모델 점수 0.93"], "reviewed_by_investigator": False},
        "detections": [{"detector": "classifier", "model_id": None, "weights_digest": None, "score": 0.93, "threshold": 0.5,
                        "outcome": "fake", "outcome_local": "합성(가짜)", "reasons": [], "reasons_local": []}],
        "provenance": [], "bank_matches": [], "reviews": [], "other_copies": {"text": None},
        "legal_assessment": {"in_ban_window": None, "ai_label_present": None, "campaign_purpose": None, "notes": None},
    }
    said = explain(entry, "ko")
    assert said.startswith("검토되지 않음") and "딥페이크 가능성 높음" in said and "합성(가짜)" in said
    assert "classifier scored" not in said and "likely_fake" not in said


def test_hashtags_are_not_printed_twice():
    assert extra_hashtags("가짜 연설 #선거2026 #후보", ["선거2026", "#후보", "투표", "투표"]) == ["#투표"]


def test_screenshot_is_cropped_to_the_post():
    page = Image.new("RGB", (1280, 4000), (255, 255, 255))
    page.paste(Image.new("RGB", (600, 700), (30, 30, 90)), (340, 900))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    crop = Image.open(io.BytesIO(crop_to_content(buf.getvalue())))
    assert crop.size == (632, 732)  # the post and a 16 px margin, at full resolution
    full = io.BytesIO()
    Image.new("RGB", (50, 50), (255, 255, 255)).save(full, "PNG")
    assert crop_to_content(full.getvalue()) is None  # nothing on the page: nothing to crop


def test_video_gets_key_frames_and_suspect_segment_stills():
    from demo_platform.video import encode_mp4

    frames = []
    for i in range(48):  # two shots, 2 s at 24 fps: dark then bright
        frame = np.full((96, 128, 3), 20 if i < 24 else 220, dtype=np.uint8)
        frame[10:30, (i * 2) % 100:(i * 2) % 100 + 20] = 128
        frames.append(frame)
    data = encode_mp4(frames, fps=24)
    stills = video_stills(data, [[1.0, 1.5]], n=3)
    roles = [s["role"] for s in stills]
    assert roles.count("key frame") >= 3 and roles.count("suspect segment frame") == 2
    suspect = [s["t_s"] for s in stills if s["role"] == "suspect segment frame"]
    assert suspect[0] == pytest.approx(1.0, abs=0.05) and suspect[1] == pytest.approx(1.25, abs=0.05)
    assert all(Image.open(io.BytesIO(s["jpeg"])).size == (128, 96) for s in stills)
    assert video_stills(b"not a video", []) == []


def _two_shot_clip() -> bytes:
    from demo_platform.video import encode_mp4

    frames = []
    for i in range(48):
        frame = np.full((96, 128, 3), 20 if i < 24 else 220, dtype=np.uint8)
        frame[10:30, (i * 2) % 100:(i * 2) % 100 + 20] = 128
        frames.append(frame)
    return encode_mp4(frames, fps=24)


def test_video_notice_shows_key_frames_and_suspect_segments(store, blobs, tmp_path, signer):
    from detectors.base import Detection

    data = _two_shot_clip()
    sha = blobs.put(data)
    cid = store.upsert_campaign("v", "name: v")
    post = Post(platform="demo", post_id="v1", url="https://demo.example/p/v1", account="acct", text="영상 #선거",
                created_at=datetime(2026, 5, 20, tzinfo=timezone.utc), media=(MediaRef("https://demo.example/v1.mp4", "video"),),
                hashtags=("선거",))
    pk, _ = store.upsert_post(cid, post)
    store.upsert_media(sha256=sha, kind="video", mime="video/mp4", size=len(data), width=128, height=96, duration_s=2.0)
    store.add_sighting(media_sha256=sha, post_pk=pk, campaign_id=cid, media_url="https://demo.example/v1.mp4", position=0)
    store.save_analysis(sha, [Detection(
        detector="hf-classifier", version="1", outcome="fake", score=0.8, threshold=0.5, model_id="demo",
        reasons=["classifier demo scored 0.80 >= 0.50 (mean of the top 2 of 6 sampled frames)",
                 "frames scoring >= 0.50 at 1.0-1.5 s"],
        details={"segments": [[1.0, 1.5]]})], "likely_fake", 0.8, ["classifier demo scored 0.80 >= 0.50"])
    ev, _ = store.upsert_evidence(campaign_id=cid, media_sha256=sha, post_pk=pk, platform="demo", post_id="v1",
                                  post_url=post.url, account="acct", media_url="https://demo.example/v1.mp4",
                                  phash=None, verdict="likely_fake", score=0.8, reasons=["classifier demo scored 0.80 >= 0.50"])
    review_evidence(store, ev, "confirmed", "lee", "lip sync off", key_ids={signer.key_id})

    out = tmp_path / "packet"
    build_takedown(store, blobs, [ev], "demo", out, load_takedown_config(), signer, actor="lee")
    item = json.loads((out / "notice.json").read_text("utf-8"))["items"][0]
    stills = [f for f in item["files"] if f.get("derived")]
    assert {f["role"] for f in stills} == {"key frame", "suspect segment frame"}
    for f in stills:
        assert (out / f["path"]).read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, listed in the signed manifest
        assert f["path"] in (out / "MANIFEST.sha256").read_text()
    page = (out / "notice.html").read_text("utf-8")
    assert "영상 정지 화면" in page and "의심 구간 프레임" in page
    assert "점수가 0.50 이상인 프레임 구간: 1.0-1.5 s" in page and "classifier demo scored" not in page
    assert "게시물의 영상(" in item["explanation"] and "likely_fake" not in item["explanation"]
    assert page.count("#선거") == 1


def test_takedown_refuses_a_record_whose_custody_log_was_altered(store, blobs, tmp_path, signer):
    ev = make_evidence(store, blobs, seed=8)
    seal_evidence(store, ev, signer)
    review_evidence(store, ev, "confirmed", "lee", "jaw seams", key_ids={signer.key_id})
    seal_evidence(store, ev, signer, actor="lee", check_previous=False)
    edit(store, "UPDATE custodyevent SET actor = 'mallory' WHERE evidence_id = :id AND action = 'reviewed'", id=ev)
    with pytest.raises(TakedownError, match="custody log row .* was edited"):
        build_takedown(store, blobs, [ev], "demo", tmp_path / "p", load_takedown_config(), signer, actor="lee")
    assert not (tmp_path / "p").exists()


def test_a_long_running_signer_follows_a_rotation(store, blobs, tmp_path):
    loaded = Signer.load_or_create(tmp_path / "keys")  # e.g. the console's, loaded at start
    ev = make_evidence(store, blobs, seed=9)
    seal_evidence(store, ev, loaded)
    _, new = rotate(tmp_path / "keys")
    assert loaded.current().key_id == new.key_id
    seal = seal_evidence(store, ev, loaded, actor="lee")  # checked with the keyring, signed with the new key
    assert seal.key_id == new.key_id
    keys = {k.key_id: k for k in load_keyring(tmp_path / "keys")}
    assert verify_evidence(store, blobs, ev, key_ids=keys).ok
