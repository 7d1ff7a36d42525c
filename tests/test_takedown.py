"""Takedown packets (JSON, HTML, PDF, evidence files, signed manifest) and request tracking,
on SQLite and on PostgreSQL, with real Chromium, real Ed25519 and real blob copies."""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from sqlmodel import select

from agents.base import MediaRef, Post
from detectors.base import Detection
from evidence.custody import events_for
from evidence.signing import Signer, verify_signature
from evidence.takedown import (
    TakedownError,
    build_takedown,
    list_takedowns,
    load_takedown_config,
    parse_takedown_config,
    set_takedown_status,
    verify_takedown_packet,
    verify_takedown_request,
)
from storage import models as m
from storage.bank import KnownFakesBank
from storage.queries import flagged_sightings

T0 = datetime(2026, 5, 20, 9, 0, tzinfo=timezone.utc)
XSS_TEXT = "<script>alert(1)</script> Kim's \"speech\" & more"
XSS_ACCOUNT = 'eve"><img src=x onerror=alert(2)>'
KOREAN_TEXT = "김민준 후보의 가짜 연설 영상 #선거2026"
SPEC = "name: c6\nwindow:\n  timezone: Asia/Seoul\n"

pytestmark = pytest.mark.timeout(120)


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (96, 64), color)
    for x in range(0, 96, 8):
        for y in range(64):
            img.putpixel((x, y), (255 - color[0], 40, 90))
    img.save(buf, "JPEG")
    return buf.getvalue()


def _png() -> bytes:
    """A page screenshot: a plain background with one post card on it."""
    buf = io.BytesIO()
    page = Image.new("RGB", (400, 900), (240, 240, 250))
    page.paste(Image.new("RGB", (200, 150), (20, 60, 120)), (100, 300))
    page.save(buf, "PNG")
    return buf.getvalue()


def _wacz() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("datapackage.json", json.dumps({"profile": "data-package", "resources": []}))
    return buf.getvalue()


def make_records(store, blobs, base: str = "http://demo.test", platform: str = "demo") -> list[int]:
    """Two flagged records on `platform`: a hostile English post and a Korean one. Returns their ids."""
    cid = store.upsert_campaign("c6", SPEC)
    posts = [
        ("p1", XSS_TEXT, XSS_ACCOUNT, (200, 30, 30)),
        ("p2", KOREAN_TEXT, "선거지킴이", (30, 30, 200)),
    ]
    for pid, text, account, color in posts:
        data = _jpeg(color)
        sha = blobs.put(data)
        media_url = f"{base}/media/{pid}.jpg" + ('?x="><script>alert(4)</script>' if pid == "p1" else "")
        pk, _ = store.upsert_post(cid, Post(
            platform=platform, post_id=pid, url=f"{base}/p/{pid}", account=account, text=text, created_at=T0,
            hashtags=("선거2026",), media=(MediaRef(media_url, "image"),), lang="ko",
        ))
        store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=len(data), width=96, height=64,
                           phash="8f373714acfcf4d0", pdq="ab" * 32 if pid == "p1" else "cd" * 32)
        store.add_sighting(media_sha256=sha, post_pk=pk, campaign_id=cid, media_url=media_url, position=0)
        store.save_analysis(sha, [
            Detection(detector="hf-classifier", version="1", outcome="fake", score=0.93, threshold=0.5,
                      model_id="var/models/demo", weights_digest="ef" * 32, reasons=["scored 0.93 >= 0.50"]),
            Detection(detector="c2pa", version="2", outcome="fake",
                      reasons=["C2PA manifest declares trainedAlgorithmicMedia"], details={"generator": "DALL-E"}),
        ], "likely_fake", 0.93, ["classifier scored 0.93 >= 0.50", "C2PA declares generative AI"])
    for row in flagged_sightings(store, cid, ("likely_fake",)):
        store.upsert_evidence(**row)
    with store.session() as s:
        rows = list(s.exec(select(m.Evidence).order_by(m.Evidence.post_id)).all())
    shot, wacz = blobs.put(_png()), blobs.put(_wacz())
    for ev in rows:
        store.update_evidence_capture(ev.id, screenshot_sha256=shot, html_sha256=None, captured_at=T0 + timedelta(hours=1))
    with store.session() as s:  # review and legal assessment, as an investigator would record them
        first = s.get(m.Evidence, rows[0].id)
        first.wacz_sha256, first.review_status = wacz, "confirmed"
        first.in_ban_window, first.ai_label_present, first.campaign_purpose = True, False, True
        first.legal_notes = "Posted 12 days before election day."
        first.capture_ip, first.capture_tool, first.capture_operator = "127.0.0.1", "deepwatch/test", "campaign:c6"
        s.add(first)
        s.add(m.Review(evidence_id=first.id, decision="confirmed", reviewer="analyst-lee",
                       rationale="Lip movement does not match the audio <b>at all</b>.", at=T0 + timedelta(hours=2)))
        s.commit()
    KnownFakesBank(store).add("sha256", rows[0].media_sha256, case_id="NEC-2026-0042", source="review",
                              media_sha256=rows[0].media_sha256)
    return [ev.id for ev in rows]


@pytest.fixture
def signer(tmp_path):
    return Signer.load_or_create(tmp_path / "keys")


@pytest.fixture
def config():
    return load_takedown_config()


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def test_packet_holds_every_notice_element_and_verifies(store, blobs, tmp_path, signer, config):
    ids = make_records(store, blobs)
    out = tmp_path / "packet"
    request = build_takedown(store, blobs, ids, "demo", out, config, signer, actor="analyst-kim", allow_unreviewed=True)

    # The row: drafted, every record, the manifest's digest.
    assert request.status == "drafted" and request.evidence_ids == ids and request.evidence_id == ids[0]
    manifest = (out / "MANIFEST.sha256").read_bytes()
    assert request.packet_sha256 == hashlib.sha256(manifest).hexdigest()
    assert request.legal_basis == "kr-pofa-82-8" and "takedown@example.org" in request.sender
    assert Path(request.packet_path) == out.resolve()

    # Files: notice in three forms, each record's evidence, signed manifest.
    for name in ("notice.json", "notice.html", "notice.pdf", "MANIFEST.sig", "public_key.hex",
                 f"evidence/{ids[0]}/original.jpg", f"evidence/{ids[0]}/screenshot.png",
                 f"evidence/{ids[0]}/capture.wacz", f"evidence/{ids[1]}/original.jpg"):
        assert (out / name).is_file(), name
    assert not (out / f"evidence/{ids[1]}/capture.wacz").exists()  # only when the record has one
    listed = {line.split("  ", 1)[1] for line in manifest.decode().splitlines()}
    assert listed == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {
        "MANIFEST.sha256", "MANIFEST.sig", "public_key.hex"}
    with store.session() as s:
        original_sha = s.get(m.Evidence, ids[0]).media_sha256
    assert hashlib.sha256((out / f"evidence/{ids[0]}/original.jpg").read_bytes()).hexdigest() == original_sha
    assert verify_takedown_packet(out) == []
    assert verify_takedown_packet(out, trusted_public_key=signer.public_key_hex) == []
    assert verify_takedown_request(store, request.id) == []
    assert verify_signature((out / "public_key.hex").read_text().strip(), (out / "MANIFEST.sig").read_text().strip(), manifest)

    # JSON: every DSA Art. 16 element, the legal basis, the facts behind the explanation.
    notice = json.loads((out / "notice.json").read_text("utf-8"))
    dsa = notice["dsa_article_16"]
    assert "http://demo.test/p/p1" in dsa["b_exact_urls"] and "http://demo.test/p/p2" in dsa["b_exact_urls"]
    assert any(u.startswith("http://demo.test/media/p1.jpg") for u in dsa["b_exact_urls"])
    assert "0.93" in dsa["a_explanation"] and "analyst-lee" in dsa["a_explanation"]
    assert dsa["c_notifier"]["email"] == "takedown@example.org" and dsa["c_notifier"]["name"]
    assert "선의" in dsa["d_good_faith_statement"]  # the demo platform takes Korean notices
    assert [b["id"] for b in notice["legal_basis"]] == ["kr-pofa-82-8"]
    assert "82조의8" in notice["legal_basis"][0]["title"]
    assert notice["sender"]["organisation"] and notice["sender"]["address"]
    first, second = notice["items"]
    assert first["post"]["text"] == XSS_TEXT and second["post"]["text"] == KOREAN_TEXT
    classifier = first["detections"][0]
    assert (classifier["model_id"], classifier["threshold"], classifier["weights_digest"]) == ("var/models/demo", 0.5, "ef" * 32)
    assert first["provenance"][0]["detector"] == "c2pa" and first["provenance"][0]["details"] == {"generator": "DALL-E"}
    # The bank entry was made from this very file: listed, but not as corroboration.
    assert first["bank_matches"] == []
    assert first["bank_entries_not_independent"][0]["case_id"] == "NEC-2026-0042"
    assert "NEC-2026-0042" not in dsa["a_explanation"]
    assert first["reviews"][0]["decision"] == "confirmed"
    assert first["legal_assessment"] == {"in_ban_window": True, "ai_label_present": False, "campaign_purpose": True,
                                         "notes": "Posted 12 days before election day."}
    assert first["capture"]["ip"] == "127.0.0.1" and first["capture"]["operator"] == "campaign:c6"
    # Dates in UTC and in the campaign's zone.
    assert first["post"]["posted_at"] == {"utc": "2026-05-20T09:00:00Z", "local": "2026-05-20T18:00:00+09:00", "zone": "Asia/Seoul"}
    assert notice["generated_at"]["zone"] == "Asia/Seoul"
    assert notice["signing"]["public_key"] == signer.public_key_hex
    assert {f["role"] for f in first["files"]} == {"original media", "screenshot", "web archive (WACZ)",
                                                   "screenshot, cropped to the post"}
    # The second record was never reviewed: allowed here, and marked as such.
    assert first["verdict"]["reviewed_by_investigator"] and not second["verdict"]["reviewed_by_investigator"]
    assert second["explanation"].startswith("검토되지 않음")

    # HTML: hostile text shown, never run; Korean text intact.
    page = (out / "notice.html").read_text("utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "eve&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>at all</b>" not in page and "&lt;b&gt;at all&lt;/b&gt;" in page
    assert KOREAN_TEXT in page and 'lang="ko"' in page and "불법 게시물 삭제 요청" in page
    assert f'src="evidence/{ids[0]}/screenshot-post.png"' in page and f"evidence/{ids[0]}/screenshot.png" in page
    assert "조사관 검토 전" in page and "word-break: keep-all" in page and "break-all; }" not in page.split(".hash")[0]
    # Once in the Korean post's text (its tag list does not repeat it), once as the tag of the
    # English post, whose text does not show it.
    assert page.count("#선거2026") == 2

    # PDF: printed by Chromium, with pages and the evidence images embedded.
    pdf = (out / "notice.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:]
    assert _pages(pdf) >= 1 and len(pdf) > 10_000
    assert b"/Subtype /Image" in pdf or b"/Subtype/Image" in pdf

    # One "exported" custody event per record.
    for evidence_id in ids:
        exported = [e for e in events_for(store, evidence_id) if e.action == "exported"]
        assert len(exported) == 1 and exported[0].details["takedown_request_id"] == request.id
        assert exported[0].actor == "analyst-kim" and "takedown@example.org" in exported[0].details["sender"]
        assert exported[0].details["packet_sha256"] == request.packet_sha256


def test_generic_template_and_tampering_is_named(store, blobs, tmp_path, signer):
    ids = make_records(store, blobs, platform="mastodon")
    config = load_takedown_config()
    out = tmp_path / "packet"
    ngo = {"organisation": "Watchdog NGO", "contact_name": "J. Doe", "email": "jd@ngo.example", "address": "Brussels"}
    request = build_takedown(store, blobs, ids[:1], "mastodon", out, config, signer, actor="analyst-kim", sender_override=ngo)
    assert "jd@ngo.example" in request.sender
    page = (out / "notice.html").read_text("utf-8")
    assert 'lang="en"' in page and "Notice of illegal content" in page and "Digital Services Act" in page
    notice = json.loads((out / "notice.json").read_text("utf-8"))
    assert notice["language"] == "en" and "bona fide" in notice["dsa_article_16"]["d_good_faith_statement"]
    assert notice["sender"] == ngo and notice["dsa_article_16"]["c_notifier"]["email"] == "jd@ngo.example"
    assert request.legal_basis == "eu-dsa-16"

    original = out / f"evidence/{ids[0]}/original.jpg"
    original.write_bytes(original.read_bytes() + b"\0")
    (out / "extra.txt").write_text("slipped in")
    (out / "notice.pdf").unlink()
    problems = verify_takedown_packet(out)
    assert any(p.startswith(f"evidence/{ids[0]}/original.jpg: content changed") for p in problems)
    assert "extra.txt: not in the manifest" in problems
    assert "notice.pdf: missing" in problems
    assert not any("signature" in p for p in problems)  # the manifest itself is untouched

    # Editing the manifest to match breaks its signature, and the recorded digest.
    lines = (out / "MANIFEST.sha256").read_text().splitlines()
    fixed = [f"{hashlib.sha256(original.read_bytes()).hexdigest()}  {line.split('  ', 1)[1]}"
             if line.endswith("original.jpg") else line for line in lines]
    (out / "MANIFEST.sha256").write_text("\n".join(fixed) + "\n")
    problems = verify_takedown_packet(out)
    assert "MANIFEST.sig: the signature does not match MANIFEST.sha256 and public_key.hex" in problems
    assert not any("original.jpg" in p for p in problems)
    assert any("not the manifest recorded" in p for p in verify_takedown_request(store, request.id))

    # Re-signed by someone else: intact against its own key, refused against the trusted one.
    other = Signer.load_or_create(tmp_path / "other-keys")
    (out / "MANIFEST.sig").write_text(other.sign((out / "MANIFEST.sha256").read_bytes()))
    (out / "public_key.hex").write_text(other.public_key_hex)
    assert not any("signature" in p for p in verify_takedown_packet(out))
    assert any("not the trusted key" in p for p in verify_takedown_packet(out, trusted_public_key=signer.public_key_hex))


def test_bad_requests_are_refused_and_nothing_is_left(store, blobs, tmp_path, signer, config, monkeypatch):
    ids = make_records(store, blobs)

    def refused(evidence_ids, platform="demo", out=None):
        with pytest.raises(TakedownError) as exc:
            build_takedown(store, blobs, evidence_ids, platform, out or tmp_path / "p", config, signer, actor="analyst-kim",
                           allow_unreviewed=True)
        return str(exc.value)

    assert "at least one evidence record" in refused([])
    assert "no evidence record with id 999" in refused([ids[0], 999])
    assert "has no takedown settings" in refused(ids, platform="tiktok")
    with pytest.raises(TakedownError, match="invalid sender: .*email"):
        build_takedown(store, blobs, ids, "demo", tmp_path / "p", config, signer, actor="analyst-kim",
                       sender_override={"email": "x"})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("investigator's notes")
    assert "is not empty" in refused(ids, out=busy)
    assert (busy / "keep.txt").read_text() == "investigator's notes"

    # A record of another platform: named, with its platform.
    with store.session() as s:
        other = s.get(m.Evidence, ids[1])
        other.platform = "mastodon"
        s.add(other)
        s.commit()
    message = refused(ids)
    assert f"#{ids[1]} is on 'mastodon'" in message and f"#{ids[0]}" not in message

    # A record a reviewer dismissed cannot be cited.
    with store.session() as s:
        row = s.get(m.Evidence, ids[0])
        row.review_status = "dismissed"
        s.add(row)
        s.commit()
    assert "dismissed" in refused([ids[0]])
    with store.session() as s:
        row = s.get(m.Evidence, ids[0])
        row.review_status = "confirmed"
        s.add(row)
        s.commit()

    # A blob altered in the store: refused, and no half-written packet remains.
    with store.session() as s:
        sha = s.get(m.Evidence, ids[0]).media_sha256
    blobs.path(sha).write_bytes(b"edited")
    assert "no longer matches its hash" in refused([ids[0]])

    # No Chromium: a clear error, not a packet without its PDF.
    monkeypatch.setenv("DEEPWATCH_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert "no Chromium at" in refused([ids[0]])

    assert not (tmp_path / "p").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert list_takedowns(store) == []
    assert not any(e.action == "exported" for e in events_for(store, ids[0]))


def _request(store, evidence_ids) -> int:
    """A drafted request row (packets themselves are tested above; transitions need no PDF)."""
    with store.session() as s:
        row = m.TakedownRequest(evidence_id=evidence_ids[0], evidence_ids=evidence_ids, platform="demo",
                                created_at=T0)
        s.add(row)
        s.commit()
        return row.id


def test_status_moves_are_stamped_logged_and_checked(store, blobs):
    ids = make_records(store, blobs)
    rid = _request(store, ids)
    sent = T0 + timedelta(days=1)
    row = set_takedown_status(store, rid, "sent", at=sent, actor="analyst-lee", note="via the report form")
    assert row.status == "sent" and row.sent_at == sent and "via the report form" in row.notes
    row = set_takedown_status(store, rid, "acknowledged", at=sent + timedelta(hours=3), actor="analyst-lee")
    row = set_takedown_status(store, rid, "removed", at=sent + timedelta(days=1), actor="analyst-lee")
    with store.session() as s:
        saved = s.get(m.TakedownRequest, rid)
    assert saved.status == "removed"
    assert (saved.sent_at.replace(tzinfo=timezone.utc) if saved.sent_at.tzinfo is None else saved.sent_at) == sent
    assert saved.acknowledged_at is not None and saved.resolved_at is not None
    for evidence_id in ids:
        actions = [e.action for e in events_for(store, evidence_id)]
        assert actions[-3:] == ["takedown_sent", "takedown_acknowledged", "takedown_removed"]

    with pytest.raises(TakedownError, match="cannot go from 'removed' to 'sent'; 'removed' is final"):
        set_takedown_status(store, rid, "sent", actor="x")

    other = _request(store, ids[:1])
    with pytest.raises(TakedownError, match="cannot go from 'drafted' to 'removed'; from 'drafted' it can go to 'sent'"):
        set_takedown_status(store, other, "removed", actor="x")
    with pytest.raises(TakedownError, match="unknown takedown status 'deleted'"):
        set_takedown_status(store, other, "deleted", actor="x")
    with pytest.raises(TakedownError, match="needs a zone"):
        set_takedown_status(store, other, "sent", at=datetime(2026, 5, 21, 9, 0), actor="x")
    with pytest.raises(TakedownError, match="no takedown request with id 999"):
        set_takedown_status(store, 999, "sent", actor="x")
    set_takedown_status(store, other, "sent", at=sent, actor="x")
    with pytest.raises(TakedownError, match="would be before its last recorded step"):
        set_takedown_status(store, other, "refused", at=sent - timedelta(hours=1), actor="x")
    row = set_takedown_status(store, other, "refused", at=sent + timedelta(days=2), actor="x", note="platform says satire")
    assert row.resolved_at == sent + timedelta(days=2)

    assert [r.id for r in list_takedowns(store)] == [rid, other]
    assert [r.id for r in list_takedowns(store, "refused")] == [other]
    with pytest.raises(TakedownError, match="unknown takedown status"):
        list_takedowns(store, "gone")


def test_config_errors_name_the_field(tmp_path):
    good = load_takedown_config()
    data = good.model_dump()
    assert parse_takedown_config(data) == good

    def problem(change) -> str:
        bad = json.loads(json.dumps(data))
        change(bad)
        with pytest.raises(TakedownError) as exc:
            parse_takedown_config(bad, origin="deploy.yaml")
        return str(exc.value)

    assert "field 'sender.fax': unknown key" in problem(lambda d: d["sender"].update(fax="123"))
    assert "not an e-mail address" in problem(lambda d: d["sender"].update(email="nobody"))
    assert "no template 'fancy'" in problem(lambda d: d["platforms"][0].update(template="fancy"))
    assert "unknown legal basis ['kr-x']" in problem(lambda d: d["platforms"][0].update(legal_basis=["kr-x"]))
    assert "unknown time zone 'Mars/Base'" in problem(lambda d: d.update(timezone="Mars/Base"))
    assert "platform names must be unique" in problem(lambda d: d["platforms"].append(d["platforms"][0]))
    assert problem(lambda d: d.update(good_faith_statement="  ")).startswith("deploy.yaml: invalid takedown config")
    (tmp_path / "broken.yaml").write_text("sender: [unclosed\n")
    with pytest.raises(TakedownError, match="broken.yaml: cannot read takedown config"):
        load_takedown_config(tmp_path / "broken.yaml")
    with pytest.raises(TakedownError, match="no such takedown config file"):
        load_takedown_config(tmp_path / "absent.yaml")
