"""Storage on SQLite and a real PostgreSQL: idempotent writes, queries, takedown packets."""
from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from agents.base import MediaRef, Post
from detectors.base import Detection
from storage.packet import PacketError, export_packet, verify_packet
from storage.queries import EvidenceFilter, evidence_detail, flagged_sightings, search_evidence
from storage.similar import similar_images

T0 = datetime(2026, 5, 20, 9, 0, tzinfo=timezone.utc)


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (64, 48), color)
    for x in range(0, 64, 8):
        for y in range(48):
            img.putpixel((x, y), (255 - color[0], 0, 0))
    img.save(buf, "JPEG")
    return buf.getvalue()


def _post(pid: str, text: str, account: str = "minjun_kim", tags=("선거2026",), when=T0) -> Post:
    return Post(
        platform="demo", post_id=pid, url=f"http://demo.test/p/{pid}", account=account, text=text,
        created_at=when, hashtags=tuple(tags), media=(MediaRef(f"http://demo.test/media/{pid}.jpg", "image"),), lang="ko",
    )


def _fill(store, blobs):
    """Two posts, one fake media item seen in both, one real item; returns ids and digests."""
    cid = store.upsert_campaign("c1", "name: c1\n")
    fake, real = _jpeg((200, 30, 30)), _jpeg((30, 200, 30))
    fake_sha, real_sha = blobs.put(fake), blobs.put(real)
    p1, _ = store.upsert_post(cid, _post("p1", "김민준 후보 딥페이크 영상 #선거2026"))
    p2, _ = store.upsert_post(cid, _post("p2", "Lee Seo-yeon's rally 'quoted' 100% real", account="seoyeon", tags=("election2026",), when=T0 + timedelta(days=1)))
    for sha, data in ((fake_sha, fake), (real_sha, real)):
        store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=len(data), phash="8f373714acfcf4d0" if sha == fake_sha else "0000000000000000")
    store.add_sighting(media_sha256=fake_sha, post_pk=p1, campaign_id=cid, media_url="http://demo.test/media/a.jpg", position=0)
    store.add_sighting(media_sha256=fake_sha, post_pk=p2, campaign_id=cid, media_url="http://demo.test/media/b.jpg", position=0)
    store.add_sighting(media_sha256=real_sha, post_pk=p2, campaign_id=cid, media_url="http://demo.test/media/c.jpg", position=1)
    det = Detection(detector="hf-classifier", version="1", outcome="fake", score=0.93, threshold=0.5,
                    model_id="var/models/demo", weights_digest="ab" * 32, reasons=["scored 0.93 >= 0.50"])
    store.save_analysis(fake_sha, [det], "likely_fake", 0.93, ["classifier scored 0.93 >= 0.50"])
    store.save_analysis(real_sha, [Detection(detector="c2pa", version="1", outcome="inconclusive")], "no_signal", 0.02, [])
    for row in flagged_sightings(store, cid, ("confirmed_ai", "likely_fake")):
        store.upsert_evidence(**row)
    return cid, fake_sha, real_sha


def test_writes_are_idempotent(store, blobs):
    cid, fake_sha, _ = _fill(store, blobs)
    assert store.upsert_campaign("c1", "name: c1\n") == cid
    pk, created = store.upsert_post(cid, _post("p1", "changed text"))
    assert not created
    assert not store.upsert_media(sha256=fake_sha, kind="image", mime="image/jpeg", size=1)
    assert not store.add_sighting(media_sha256=fake_sha, post_pk=pk, campaign_id=cid, media_url="http://demo.test/media/a.jpg", position=0)
    det = Detection(detector="hf-classifier", version="1", outcome="fake", score=0.93, threshold=0.5,
                    model_id="var/models/demo", weights_digest="ab" * 32)
    assert store.save_analysis(fake_sha, [det], "likely_fake", 0.93, []) == 0
    # A new model version is a new detection row, not an overwrite.
    det2 = Detection(detector="hf-classifier", version="1", outcome="fake", score=0.9, threshold=0.5,
                     model_id="var/models/demo", weights_digest="cd" * 32)
    assert store.save_analysis(fake_sha, [det2], "likely_fake", 0.9, []) == 1
    rows = flagged_sightings(store, cid, ("likely_fake",))
    assert len(rows) == 2
    assert all(not store.upsert_evidence(**r)[1] for r in rows)


def test_flagged_sightings_come_in_pages_that_add_up(store, blobs):
    from storage.queries import flagged_sightings_page

    cid, fake_sha, _ = _fill(store, blobs)
    whole = flagged_sightings(store, cid, ("likely_fake",))
    paged, after, pages = [], None, 0
    while True:  # one sighting a page: the real item's page holds no evidence row
        rows, after = flagged_sightings_page(store, cid, ("likely_fake",), after_id=after, page_size=1)
        paged.extend(rows)
        pages += 1
        if after is None:
            break
    assert pages == 4  # three sightings, then an empty page that ends it
    assert sorted(map(repr, paged)) == sorted(map(repr, whole)) and len(paged) == 2


def test_search_filters_and_korean(store, blobs):
    _fill(store, blobs)
    everything = search_evidence(store, EvidenceFilter())
    assert {r["post_id"] for r in everything} == {"p1", "p2"}
    assert everything[0]["post_id"] == "p2"  # newest post first
    assert [r["post_id"] for r in search_evidence(store, EvidenceFilter(keyword="딥페이크"))] == ["p1"]
    assert [r["post_id"] for r in search_evidence(store, EvidenceFilter(keyword="#선거2026"))] == ["p1"]
    assert [r["post_id"] for r in search_evidence(store, EvidenceFilter(keyword="seoyeon"))] == ["p2"]
    assert search_evidence(store, EvidenceFilter(campaign="c1", platform="demo", verdict="likely_fake", min_score=0.9))
    assert not search_evidence(store, EvidenceFilter(min_score=0.95))
    assert not search_evidence(store, EvidenceFilter(campaign="other"))
    assert [r["post_id"] for r in search_evidence(store, EvidenceFilter(since=T0 + timedelta(hours=1)))] == ["p2"]
    assert [r["post_id"] for r in search_evidence(store, EvidenceFilter(until=T0 + timedelta(hours=1)))] == ["p1"]


@pytest.mark.parametrize("evil", ["'; DROP TABLE evidence; --", "100%", "_", "\\", "\" OR 1=1 --"])
def test_sql_metacharacters_are_plain_text(store, blobs, evil):
    _fill(store, blobs)
    rows = search_evidence(store, EvidenceFilter(keyword=evil, campaign=evil, platform=evil, verdict=evil))
    assert rows == []
    if evil == "100%":  # a literal percent sign matches only itself
        assert [r["post_id"] for r in search_evidence(store, EvidenceFilter(keyword=evil))] == ["p2"]
    assert len(search_evidence(store, EvidenceFilter())) == 2  # the table is still there


def test_detail_has_sightings_and_detections(store, blobs):
    _fill(store, blobs)
    ev = search_evidence(store, EvidenceFilter(keyword="딥페이크"))[0]
    rec = evidence_detail(store, ev["id"])
    assert rec["post"]["created_at"] == T0 and rec["post"]["created_at"].tzinfo is not None
    assert {s["post_id"] for s in rec["sightings"]} == {"p1", "p2"}
    (det,) = rec["detections"]
    assert det["model_id"] == "var/models/demo" and det["weights_digest"] == "ab" * 32 and det["threshold"] == 0.5
    assert evidence_detail(store, 999_999) is None


def test_packet_export_and_verify(store, blobs, tmp_path):
    _fill(store, blobs)
    ev = search_evidence(store, EvidenceFilter(keyword="딥페이크"))[0]
    out = export_packet(store, blobs, ev["id"], tmp_path / "packet", actor="analyst-kim")
    packet = json.loads((out / "evidence.json").read_text("utf-8"))
    assert packet["notice"]["exact_urls"][0] == "http://demo.test/p/p1"
    media_file = out / packet["files"]["media"]
    assert hashlib.sha256(media_file.read_bytes()).hexdigest() == ev["media_sha256"]
    html = (out / "index.html").read_text("utf-8")
    assert "김민준 후보 딥페이크" in html
    assert verify_packet(out) == []
    media_file.write_bytes(b"tampered")
    assert any("content changed" in p for p in verify_packet(out))
    with pytest.raises(PacketError, match="not empty"):
        export_packet(store, blobs, ev["id"], out, actor="analyst-kim")
    with pytest.raises(PacketError, match="no evidence record"):
        export_packet(store, blobs, 424242, tmp_path / "none", actor="analyst-kim")


def test_packet_html_escapes_untrusted_text(store, blobs, tmp_path):
    cid = store.upsert_campaign("c2", "name: c2\n")
    data = _jpeg((1, 2, 3))
    sha = blobs.put(data)
    pk, _ = store.upsert_post(cid, _post("x1", "<script>alert(1)</script>", account="<b>evil</b>"))
    store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=len(data))
    store.add_sighting(media_sha256=sha, post_pk=pk, campaign_id=cid, media_url="http://demo.test/m.jpg", position=0)
    store.save_analysis(sha, [], "likely_fake", 0.9, ["<img src=x onerror=alert(1)>"])
    (row,) = flagged_sightings(store, cid, ("likely_fake",))
    ev_id, _ = store.upsert_evidence(**row)
    html = (export_packet(store, blobs, ev_id, tmp_path / "p", actor="analyst-kim") / "index.html").read_text("utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>evil</b>" not in html and "<img src=x" not in html


def test_similar_images(store, blobs):
    from storage.bank import KnownFakesBank

    _, fake_sha, real_sha = _fill(store, blobs)
    found = similar_images(store, phash="8f373714acfcf4d1", max_phash=4)
    rows = found["matches"]
    assert [r["sha256"] for r in rows] == [fake_sha]
    assert rows[0]["distance"] == 1 and rows[0]["verdict"] == "likely_fake" and rows[0]["signal"] == "phash"
    assert found["bank"] == []
    KnownFakesBank(store).add("phash", "8f373714acfcf4d0", case_id="NEC-1", source="review")
    assert similar_images(store, phash="8f373714acfcf4d1")["bank"][0]["case_id"] == "NEC-1"


def test_reupload_inherits_verdict_in_evidence(store, blobs):
    cid, fake_sha, _ = _fill(store, blobs)
    copy = _jpeg((201, 31, 31))
    copy_sha = blobs.put(copy)
    store.upsert_media(sha256=copy_sha, kind="image", mime="image/jpeg", size=len(copy), phash="8f373714acfcf4d2")
    store.mark_duplicate(copy_sha, fake_sha, 1)
    pk, _ = store.upsert_post(cid, _post("p3", "reposted"))
    store.add_sighting(media_sha256=copy_sha, post_pk=pk, campaign_id=cid, media_url="http://other.test/c.jpg", position=0)
    rows = [r for r in flagged_sightings(store, cid, ("likely_fake",)) if r["media_sha256"] == copy_sha]
    assert len(rows) == 1 and rows[0]["matched_sha256"] == fake_sha
    assert rows[0]["reasons"][0].startswith(f"matches known fake {fake_sha[:12]} at distance 1")
    # Not classified again, but its own provenance is still to be checked.
    assert copy_sha in {m.sha256 for m in store.unanalysed_media()}


def test_verdict_counts_page_through_distinct_media_and_clusters(store, blobs):
    """campaign_verdict_counts (paged, what the run report uses) agrees with the whole-campaign
    map at every page size; a cluster takes its strongest member's band even when that member
    is a re-upload and not the root."""
    from storage.queries import campaign_media_verdicts, campaign_verdict_counts

    cid, fake_sha, real_sha = _fill(store, blobs)
    copies = []
    for i in range(3):  # re-uploads of the real item; the second carries a stronger verdict
        data = _jpeg((60 + 50 * i, 120, 90))
        sha = blobs.put(data)
        store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=len(data), phash="0000000000000001")
        store.mark_duplicate(sha, real_sha, 1)
        pk, _ = store.upsert_post(cid, _post(f"r{i}", "reposted"))
        store.add_sighting(media_sha256=sha, post_pk=pk, campaign_id=cid, media_url=f"http://other.test/{i}.jpg", position=0)
        store.add_sighting(media_sha256=real_sha, post_pk=pk, campaign_id=cid, media_url=f"http://other.test/r{i}.jpg", position=1)
        copies.append(sha)
    assert len({real_sha, *copies}) == 4
    store.save_analysis(copies[1], [Detection(detector="c2pa", version="1", outcome="fake")], "confirmed_ai", 1.0, ["signed"])
    verdicts = campaign_media_verdicts(store, cid)
    assert verdicts[real_sha] == verdicts[copies[0]] == "confirmed_ai" and verdicts[fake_sha] == "likely_fake"
    expected = {"confirmed_ai": 4, "likely_fake": 1}
    for page_size in (1, 2, 3, 1000):
        assert campaign_verdict_counts(store, cid, page_size=page_size) == expected, page_size


def test_bad_database_url_is_a_clear_error(tmp_path):
    from storage.db import Store, StorageError

    with pytest.raises(StorageError, match="cannot"):
        Store("postgresql+psycopg://nobody:x@127.0.0.1:9/none")
    with pytest.raises(StorageError, match="cannot use database URL"):
        Store("nosuchdialect://x")


def test_blob_store_round_trip(blobs):
    sha = blobs.put(b"hello")
    assert blobs.put(b"hello") == sha and blobs.get(sha) == b"hello" and blobs.verify(sha)
    blobs.path(sha).write_bytes(b"changed")
    assert not blobs.verify(sha)
    with pytest.raises(KeyError):
        blobs.get("0" * 64)
    with pytest.raises(ValueError):
        blobs.path("../etc/passwd")
