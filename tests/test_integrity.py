"""Seals, timestamps and custody: a sealed record verifies clean, and every kind of tampering
(a database row, a blob, the custody log, the seal itself, its timestamp) is reported with what
changed. Runs on SQLite and PostgreSQL (the `store` fixture) against a real RFC 3161 authority on
loopback."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlmodel import select

from agents.base import MediaRef, Post
from detectors.base import Detection
from evidence.custody import GENESIS, append_event, event_hash, events_for, verify_chain
from evidence.review import review_evidence
from evidence.seal import canonical_json, canonical_record, latest_seal, seal_evidence
from evidence.signing import Signer
from evidence.tsa import TimestampError, timestamp, verify_token
from evidence.verify import verify_all, verify_evidence
from storage import models as m
from tests.tsa_server import TimestampAuthority

pytestmark = pytest.mark.timeout(120)

POSTED = datetime(2026, 5, 20, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def tsa():
    with TimestampAuthority() as authority:
        yield authority


@pytest.fixture
def signer(tmp_path):
    return Signer.load_or_create(tmp_path / "keys")


def make_record(store, blobs) -> tuple[int, dict[str, str]]:
    """One flagged image in one post with every capture file; returns (evidence id, blob shas)."""
    files = {
        "media": blobs.put(b"\xff\xd8\xff\xe0 original jpeg bytes of the flagged image"),
        "working": blobs.put(b"\x89PNG working copy (preview)"),
        "screenshot": blobs.put(b"\x89PNG full-page screenshot"),
        "html": blobs.put("<html><body>후보 합성 영상</body></html>".encode()),
        "wacz": blobs.put(b"PK\x03\x04 wacz archive bytes"),
    }
    cid = store.upsert_campaign("integrity", "name: integrity")
    post = Post(platform="demo", post_id="p1", url="https://demo.example/p/1", account="acct1",
                text="후보 합성 영상 #선거", created_at=POSTED, media=(MediaRef("https://demo.example/m/1.jpg", "image"),),
                source="src", screenshot_sha256=files["screenshot"])
    post_pk, _ = store.upsert_post(cid, post)
    store.upsert_media(sha256=files["media"], kind="image", mime="image/jpeg", size=47, width=320, height=240,
                       phash="8f373714acfcf4d0", pdq="ab" * 32, pdq_quality=90)
    store.add_sighting(media_sha256=files["media"], post_pk=post_pk, campaign_id=cid,
                       media_url="https://demo.example/m/1.jpg", position=0)
    store.save_analysis(files["media"], [
        Detection(detector="classifier", version="1", outcome="fake", score=0.97, threshold=0.5,
                  reasons=["classifier scored 0.97 >= 0.5"], model_id="demo-detector", weights_digest="abc123"),
        Detection(detector="c2pa", version="2", outcome="absent", reasons=["no manifest"]),
    ], "likely_fake", 0.91, ["classifier scored 0.97"])
    ev_id, _ = store.upsert_evidence(
        campaign_id=cid, media_sha256=files["media"], post_pk=post_pk, platform="demo", post_id="p1",
        post_url=post.url, account="acct1", media_url="https://demo.example/m/1.jpg", phash="8f373714acfcf4d0",
        verdict="likely_fake", score=0.91, reasons=["classifier scored 0.97"],
        screenshot_sha256=files["screenshot"], capture_html_sha256=files["html"], wacz_sha256=files["wacz"],
        working_sha256=files["working"], capture_ip="127.0.0.1", capture_tool="deepwatch/test",
        capture_operator="campaign:integrity", capture_headers={"content-type": "text/html"},
    )
    append_event(store, ev_id, "captured", "campaign:integrity", {"wacz": files["wacz"]})
    append_event(store, ev_id, "analysed", "campaign:integrity", {"verdict": "likely_fake"})
    return ev_id, files


def sealed(store, blobs, signer, tsa) -> tuple[int, dict[str, str]]:
    ev_id, files = make_record(store, blobs)
    seal_evidence(store, ev_id, signer, tsa_url=tsa.url, tsa_cert=tsa.ca_cert_pem + tsa.tsa_cert_pem)
    return ev_id, files


def check(store, blobs, ev_id, signer, tsa=None):
    return verify_evidence(store, blobs, ev_id, key_ids={signer.key_id},
                           tsa_cert=(tsa.ca_cert_pem + tsa.tsa_cert_pem) if tsa else None)


def sql(store, statement: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_sealed_record_verifies_clean(store, blobs, signer, tsa):
    ev_id, _ = sealed(store, blobs, signer, tsa)

    report = check(store, blobs, ev_id, signer, tsa)
    assert report.problems == [] and report.status == "ok"
    assert report.timestamp is not None and report.timestamp.tsa_name and "deepwatch test TSA" in report.timestamp.tsa_name
    seal = latest_seal(store, ev_id)
    assert seal.tsa_url == tsa.url and seal.key_id == signer.key_id
    assert json.loads(seal.record_json)["record"] == canonical_record(store, ev_id)
    assert [e.action for e in events_for(store, ev_id)] == ["captured", "analysed", "sealed"]
    assert verify_chain(store) == []
    assert [r.evidence_id for r in verify_all(store, blobs, key_ids={signer.key_id})] == [ev_id]


def test_unsealed_record_is_a_warning_not_tampering(store, blobs, signer):
    ev_id, _ = make_record(store, blobs)
    report = check(store, blobs, ev_id, signer)
    assert report.ok and report.status == "not sealed"
    assert any("not sealed" in w for w in report.warnings)


def test_database_edits_are_reported_with_field_and_values(store, blobs, signer, tsa):
    ev_id, files = sealed(store, blobs, signer, tsa)
    sql(store, "UPDATE evidence SET score = 0.5 WHERE id = :id", id=ev_id)
    sql(store, "UPDATE detection SET score = 0.2 WHERE detector = 'classifier'")
    sql(store, "UPDATE post SET text = 'harmless text' WHERE post_id = 'p1'")
    sql(store, "DELETE FROM sighting")

    problems = check(store, blobs, ev_id, signer, tsa).problems
    assert f"evidence {ev_id}: field 'score' changed: 0.91 -> 0.5" in problems
    assert any("detection classifier (model demo-detector@abc123)" in p and "score changed: 0.97 -> 0.2" in p
               for p in problems)
    assert f'evidence {ev_id}: post field \'text\' changed: "후보 합성 영상 #선거" -> "harmless text"' in problems
    assert any("sighting of https://demo.example/m/1.jpg in post demo/p1 was removed" in p for p in problems)
    assert len(problems) == 4, problems  # the seal itself is intact: only the changes are reported


def test_changed_blob_files_are_reported(store, blobs, signer, tsa):
    ev_id, files = sealed(store, blobs, signer, tsa)
    screenshot = blobs.path(files["screenshot"])
    os.chmod(screenshot, 0o644)  # blob files may be kept read-only
    screenshot.write_bytes(b"\x89PNG a different picture")
    blobs.path(files["wacz"]).unlink()

    problems = check(store, blobs, ev_id, signer, tsa).problems
    assert f"evidence {ev_id}: blob {files['screenshot']} (screenshot) was altered: its bytes no longer hash to its name" in problems
    assert f"evidence {ev_id}: blob {files['wacz']} (WACZ) is missing" in problems
    assert len(problems) == 2, problems


@pytest.mark.parametrize("tamper", ["delete", "edit", "reorder"])
def test_custody_log_tampering_is_reported(store, blobs, signer, tsa, tamper):
    ev_id, _ = sealed(store, blobs, signer, tsa)
    append_event(store, ev_id, "exported", "alice", {"to": "packets/1"})  # seq 4, after the seal
    if tamper == "delete":
        sql(store, "DELETE FROM custodyevent WHERE seq = 2")
        expected = "custody log seq 2 is missing (rows deleted)"
    elif tamper == "edit":
        sql(store, "UPDATE custodyevent SET actor = 'mallory' WHERE seq = 2")
        expected = f"custody log row seq 2 ('analysed' on evidence {ev_id}, by 'mallory') was edited"
    else:  # swap rows 1 and 2 (through a free seq: seq is unique)
        sql(store, "UPDATE custodyevent SET seq = 1000 WHERE seq = 1")
        sql(store, "UPDATE custodyevent SET seq = 1 WHERE seq = 2")
        sql(store, "UPDATE custodyevent SET seq = 2 WHERE seq = 1000")
        expected = f"custody log row seq 1 ('analysed' on evidence {ev_id}, by 'campaign:integrity') was moved: it was written as seq 2"

    chain = [p.message for p in verify_chain(store)]
    assert any(expected in p for p in chain), chain
    report = check(store, blobs, ev_id, signer, tsa)
    assert not report.ok
    if tamper != "delete":  # a deleted row no longer says which record it was about
        assert any(expected in p for p in report.problems), report.problems
    if tamper == "reorder":
        assert any("seq 3" in p and "link to the previous row is broken" in p for p in chain), chain


def test_log_rewritten_with_fresh_hashes_is_caught_by_the_seal_anchor(store, blobs, signer, tsa):
    """Someone who knows the hash recipe edits a row and recomputes every later hash: the chain
    is self-consistent again, but the seal anchored the old tail."""
    ev_id, _ = sealed(store, blobs, signer, tsa)
    with store.session() as s:
        rows = list(s.exec(select(m.CustodyEvent).order_by(m.CustodyEvent.seq)).all())
    prev = GENESIS
    for row in rows:
        actor = "mallory" if row.seq == 1 else row.actor
        new_hash = event_hash(row.seq, row.evidence_id, row.action, actor, row.at, dict(row.details), prev)
        sql(store, "UPDATE custodyevent SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s",
            a=actor, p=prev, h=new_hash, s=row.seq)
        prev = new_hash
    assert verify_chain(store) == []

    problems = check(store, blobs, ev_id, signer, tsa).problems
    anchor = json.loads(latest_seal(store, ev_id).record_json)["custody_anchor"]["seq"]
    assert any(f"custody log row seq {anchor} differs from the one the seal anchored" in p for p in problems), problems


def test_seal_resigned_with_another_key_is_reported(store, blobs, signer, tsa, tmp_path):
    ev_id, _ = sealed(store, blobs, signer, tsa)
    # The forger changes the score and re-seals with their own key: the JSON, digest and
    # signature agree with each other, but the key is not the deployment's and the
    # timestamp no longer covers the digest.
    sql(store, "UPDATE evidence SET score = 0.2 WHERE id = :id", id=ev_id)
    seal = latest_seal(store, ev_id)
    document = json.loads(seal.record_json)
    document["record"] = canonical_record(store, ev_id)
    forged_json = canonical_json(document)
    digest = hashlib.sha256(forged_json.encode()).digest()
    forger = Signer.load_or_create(tmp_path / "forger")
    sql(store, "UPDATE seal SET record_json = :j, record_sha256 = :d, signature = :s, key_id = :k, public_key = :p WHERE id = :id",
        j=forged_json, d=digest.hex(), s=forger.sign(digest), k=forger.key_id, p=forger.public_key_hex, id=seal.id)

    problems = check(store, blobs, ev_id, signer, tsa).problems
    assert any(f"signed by an unknown key {forger.key_id[:16]}" in p for p in problems), problems
    assert any("timestamp token" in p and f"does not cover digest {digest.hex()}" in p for p in problems), problems
    assert not any("field 'score'" in p for p in problems)  # the record matches the forged seal


def test_edited_seal_row_is_reported(store, blobs, signer, tsa):
    ev_id, _ = sealed(store, blobs, signer, tsa)
    seal = latest_seal(store, ev_id)
    sql(store, "UPDATE seal SET record_json = :j WHERE id = :id", j=seal.record_json.replace("0.91", "0.5"), id=seal.id)
    problems = check(store, blobs, ev_id, signer, tsa).problems
    assert any("no longer hashes to its digest" in p for p in problems), problems
    assert f"evidence {ev_id}: field 'score' changed: 0.5 -> 0.91" in problems


def test_timestamp_token_for_another_digest_is_reported(store, blobs, signer, tsa):
    ev_id, _ = sealed(store, blobs, signer, tsa)
    other = timestamp(hashlib.sha256(b"some other record").digest(), tsa.url)
    sql(store, "UPDATE seal SET tsa_token = :t", t=base64.b64encode(other).decode())
    seal = latest_seal(store, ev_id)
    problems = check(store, blobs, ev_id, signer, tsa).problems
    assert problems == [f"evidence {ev_id}: seal {seal.id}: timestamp token: the timestamp token does not cover digest "
                        f"{seal.record_sha256} (it stamps imprint "
                        f"{hashlib.sha256(hashlib.sha256(b'some other record').digest()).hexdigest()})"]


def test_tsa_rejection_is_a_clear_error_and_seals_nothing(store, blobs, signer, tsa):
    ev_id, _ = make_record(store, blobs)
    tsa.reject = True
    with pytest.raises(TimestampError, match="refused: status rejection .*refusing requests"):
        seal_evidence(store, ev_id, signer, tsa_url=tsa.url)
    assert tsa.requests == 1
    assert latest_seal(store, ev_id) is None
    assert [e.action for e in events_for(store, ev_id)] == ["captured", "analysed"]
    assert check(store, blobs, ev_id, signer).status == "not sealed"


def test_stored_token_verifies_against_the_authority_certificate(store, blobs, signer, tsa):
    ev_id, _ = sealed(store, blobs, signer, tsa)
    seal = latest_seal(store, ev_id)
    token, digest = base64.b64decode(seal.tsa_token), bytes.fromhex(seal.record_sha256)

    info = verify_token(token, digest, tsa.ca_cert_pem + tsa.tsa_cert_pem)
    assert info.serial >= 1 and info.gen_time.tzinfo is not None
    assert abs((info.gen_time - seal.sealed_at.replace(tzinfo=timezone.utc)).total_seconds()) < 60
    assert verify_token(token, digest, tsa.ca_cert_pem).serial == info.serial  # the root alone suffices
    with pytest.raises(TimestampError, match="does not cover digest"):
        verify_token(token, hashlib.sha256(b"another record").digest(), tsa.ca_cert_pem)
    with TimestampAuthority() as stranger:
        with pytest.raises(TimestampError, match="signature does not verify"):
            verify_token(token, digest, stranger.ca_cert_pem)
        # Pinning another authority's certificate under our root is refused too.
        with pytest.raises(TimestampError, match="signature does not verify"):
            verify_token(token, digest, tsa.ca_cert_pem + stranger.tsa_cert_pem)
    with pytest.raises(TimestampError, match="no self-signed root"):
        verify_token(token, digest, tsa.tsa_cert_pem)


def test_reseal_after_a_legitimate_change_uses_the_latest_seal(store, blobs, signer, tsa):
    ev_id, _ = sealed(store, blobs, signer, tsa)
    review_evidence(store, ev_id, "confirmed", "alice", "face swap visible", key_ids={signer.key_id})

    report = check(store, blobs, ev_id, signer, tsa)
    assert f"evidence {ev_id}: field 'review_status' changed: \"unreviewed\" -> \"confirmed\"" in report.problems
    assert any("reviewed (seq 4, by alice)" in w and "re-sealed" in w for w in report.warnings), report.warnings

    # The review checked the record before changing it; the re-seal that follows it need not.
    seal_evidence(store, ev_id, signer, tsa_url=tsa.url, actor="alice", check_previous=False)
    report = check(store, blobs, ev_id, signer, tsa)
    assert report.ok, report.problems
    assert report.seal_id == latest_seal(store, ev_id).id
    assert [e.action for e in events_for(store, ev_id)][-2:] == ["reviewed", "sealed"]


def test_verify_uses_the_deployment_key_from_the_key_folder(store, blobs, tsa, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "deployment-keys"))
    deployment = Signer.load_or_create()
    ev_id, _ = make_record(store, blobs)
    seal_evidence(store, ev_id, deployment, tsa_url=tsa.url)
    assert verify_all(store, blobs)[0].ok

    other_ev = make_record_for_other_post(store, blobs)
    seal_evidence(store, other_ev, Signer.load_or_create(tmp_path / "someone-else"))
    reports = {r.evidence_id: r for r in verify_all(store, blobs)}
    assert reports[ev_id].ok
    assert any("signed by an unknown key" in p for p in reports[other_ev].problems)


def make_record_for_other_post(store, blobs) -> int:
    sha = blobs.put(b"another flagged image")
    cid = store.upsert_campaign("integrity", "name: integrity")
    post_pk, _ = store.upsert_post(cid, Post(platform="demo", post_id="p2", url="https://demo.example/p/2",
                                             account="acct2", text="second", created_at=POSTED, media=(), source="src"))
    store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=21)
    ev_id, _ = store.upsert_evidence(campaign_id=cid, media_sha256=sha, post_pk=post_pk, platform="demo", post_id="p2",
                                     post_url="https://demo.example/p/2", account="acct2",
                                     media_url="https://demo.example/m/2.jpg", verdict="likely_fake", score=0.8)
    return ev_id


def _seen_again(store, files: dict[str, str], n: int) -> None:
    """The record's media item re-posted in `n` more posts of the same campaign."""
    cid = store.upsert_campaign("integrity", "name: integrity")
    for i in range(n):
        post = Post(platform="other", post_id=f"r{i}", url=f"https://other.example/p/{i}", account=f"reposter{i}",
                    text="again", created_at=POSTED, media=(MediaRef(f"https://other.example/m/{i}.jpg", "image"),), source="src")
        pk, _ = store.upsert_post(cid, post)
        store.add_sighting(media_sha256=files["media"], post_pk=pk, campaign_id=cid,
                           media_url=f"https://other.example/m/{i}.jpg", position=0)


def test_a_seal_covers_its_own_post_not_the_items_whole_spread(store, blobs, signer):
    """An item seen in many posts has one record per post; each seal holds that post's sighting
    only, so sealing all of them costs linear work, and a later re-post is no change to it."""
    ev_id, files = make_record(store, blobs)
    _seen_again(store, files, 5)
    seal = seal_evidence(store, ev_id, signer)
    sealed_doc = json.loads(seal.record_json)
    assert sealed_doc["format"] == "deepwatch-seal/2"
    assert [s["post_id"] for s in sealed_doc["record"]["sightings"]] == ["p1"]
    _seen_again(store, files, 8)  # more re-posts after sealing
    report = check(store, blobs, ev_id, signer)
    assert report.status == "ok" and report.problems == [] and not any("sighting" in w for w in report.warnings)


def test_a_format_1_seal_is_still_verified_as_written(store, blobs, signer):
    """Seals written before format 2 sealed every sighting of the item: they are rebuilt and
    compared that way (new re-posts are warnings, a removed sighting is a problem)."""
    ev_id, files = make_record(store, blobs)
    _seen_again(store, files, 2)
    seal = seal_evidence(store, ev_id, signer)
    document = json.loads(seal.record_json)
    document["format"] = "deepwatch-seal/1"
    document["record"] = canonical_record(store, ev_id, "deepwatch-seal/1")
    assert len(document["record"]["sightings"]) == 3
    legacy_json = canonical_json(document)
    digest = hashlib.sha256(legacy_json.encode()).digest()
    sql(store, "UPDATE seal SET record_json = :j, record_sha256 = :d, signature = :s WHERE id = :id",
        j=legacy_json, d=digest.hex(), s=signer.sign(digest), id=seal.id)
    assert check(store, blobs, ev_id, signer).problems == []
    _seen_again(store, files, 3)
    report = check(store, blobs, ev_id, signer)
    assert report.problems == [] and any("was added since the seal" in w for w in report.warnings)
    sql(store, "DELETE FROM sighting WHERE media_url = 'https://other.example/m/0.jpg'")
    assert any("sighting" in p and "was removed" in p for p in check(store, blobs, ev_id, signer).problems)
