"""The investigators' console end to end through HTTP (Starlette's TestClient), on SQLite and
PostgreSQL: login, gallery, evidence pages, review, takedowns, image search, the JSON API with
bearer tokens, campaign figures and the audit trail. Evidence rows are real (evidence_factory)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from console.app import create_app
from console.audit import audit_events
from console.auth import create_user, issue_token
from detectors.base import Detection
from evidence.signing import verify_signature
from storage import models as m
from tests.evidence_factory import POSTED, jpeg, make_evidence

pytestmark = pytest.mark.timeout(240)

PASSWORD = "correct horse battery staple"
XSS_TEXT = "후보 합성 영상 <script>alert(1)</script>"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- helpers shared with test_console_security.py -----------------------------------------------
@pytest.fixture
def console(store, blobs, tmp_path):
    """The console app on the test's database and blob store, with three users."""
    for name, role in (("vera", "viewer"), ("ivan", "investigator"), ("ada", "admin")):
        create_user(store, name, PASSWORD, role)
    app = create_app(store.url, str(blobs.root), packets_root=str(tmp_path / "packets"), key_dir=str(tmp_path / "keys"))
    yield app
    app.state.console.store.close()


def client_for(app, username: str | None = None, **kw) -> TestClient:
    """A TestClient, logged in as `username` when given (through the real login form)."""
    client = TestClient(app, **kw)
    if username:
        response = login(client, username, PASSWORD)
        assert response.status_code == 303, response.text
    return client


def login(client: TestClient, username: str, password: str, next_path: str = "/"):
    page = client.get("/login")
    token = _CSRF.search(page.text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                       "next": next_path}, follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    """The session's CSRF token, read from the logout form every page carries."""
    return _CSRF.search(client.get("/takedowns").text).group(1)


def items_of(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-testid="gallery-item" data-evidence-id="(\d+)"', html)]


# -- login and logout ---------------------------------------------------------------------------
def test_login_logout_flow(console, store):
    client = TestClient(console)
    first = client.get("/gallery?platform=demo", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/gallery%3Fplatform%3Ddemo"

    wrong = login(client, "ivan", "not the password at all")
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    assert 'id="login"' in wrong.text and "dw_session" not in client.cookies

    ok = login(client, "ivan", PASSWORD, next_path="/gallery?platform=demo")
    assert ok.status_code == 303 and ok.headers["location"] == "/gallery?platform=demo"
    home = client.get("/")
    assert home.status_code == 200 and 'id="logout"' in home.text and "ivan (investigator)" in home.text

    out = client.post("/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303  # the session is over server-side too

    actions = [(e.username, e.action) for e in reversed(audit_events(store))]
    assert ("", "login_failed") in actions and ("ivan", "login") in actions and ("ivan", "logout") in actions


# -- gallery ------------------------------------------------------------------------------------
@pytest.fixture
def five(store, blobs):
    """Five records: two platforms, Korean and English texts, scores and times spread out."""
    ids = {
        "ko_demo": make_evidence(store, blobs, seed=1, platform="demo", text="#선거 후보 합성 영상", score=0.95,
                                 posted=POSTED),
        "en_demo": make_evidence(store, blobs, seed=2, platform="demo", text="election clip", score=0.62,
                                 posted=POSTED + timedelta(days=1)),
        "ko_other": make_evidence(store, blobs, seed=3, platform="other", text="투표 조작 선거 딥페이크", score=0.81,
                                  posted=POSTED + timedelta(days=2)),
        "en_other": make_evidence(store, blobs, seed=4, platform="other", text="weather today", score=0.55,
                                  posted=POSTED + timedelta(days=3)),
        "xss": make_evidence(store, blobs, seed=5, platform="demo", text=XSS_TEXT, score=0.99,
                             posted=POSTED + timedelta(days=4)),
    }
    store.update_evidence(ids["en_other"], verdict="needs_review")
    return ids


def test_gallery_filters(console, five):
    client = client_for(console, "vera")

    def found(query: str) -> set[int]:
        response = client.get("/gallery" + query)
        assert response.status_code == 200, response.text
        return set(items_of(response.text))

    assert found("") == set(five.values())
    assert found("?platform=other") == {five["ko_other"], five["en_other"]}
    assert found("?q=선거") == {five["ko_demo"], five["ko_other"]}  # text and hashtag, in Korean
    assert found("?q=%23선거") == {five["ko_demo"], five["ko_other"]}
    assert found("?verdict=needs_review") == {five["en_other"]}
    assert found("?min_score=0.8") == {five["ko_demo"], five["ko_other"], five["xss"]}
    since = (POSTED + timedelta(days=1)).isoformat()
    until = (POSTED + timedelta(days=3)).isoformat()
    assert found(f"?since={since}&until={until}".replace("+", "%2B")) == {five["en_demo"], five["ko_other"]}
    assert found("?platform=demo&q=선거&min_score=0.9") == {five["ko_demo"]}

    page = client.get(f"/evidence/{five['ko_demo']}")
    item = client.get("/gallery?platform=demo").text
    assert page.status_code == 200
    for hook in ('class="evidence-link"', 'img class="thumb"', 'class="verdict', 'class="score"', 'class="reasons"',
                 'form id="takedown-select"', 'name="evidence_ids"'):
        assert hook in item, hook

    bad = client.get("/gallery?min_score=lots")
    assert bad.status_code == 400 and "min_score" in bad.text


def test_gallery_paging(console, five, monkeypatch):
    import console.pages as pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    client = client_for(console, "vera")
    seen: list[int] = []
    url = "/gallery?platform="
    pages_read = 0
    while url:
        html = client.get(url).text
        seen += items_of(html)
        pages_read += 1
        link = re.search(r'<a data-testid="next-page" href="([^"]+)"', html)
        url = link.group(1).replace("&amp;", "&") if link else None
    assert pages_read == 3 and sorted(seen) == sorted(five.values()) and len(seen) == len(set(seen))

    api = client_for(console, "vera")
    got, cursor = [], None
    while True:
        body = api.get("/api/v1/evidence", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        got += [i["evidence_id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert got == seen  # same order, newest first, on both


# -- the evidence page --------------------------------------------------------------------------
def test_evidence_page(console, store, blobs):
    ev = make_evidence(store, blobs, seed=7)
    with store.session() as s:
        row = s.get(m.Evidence, ev)
        media = s.get(m.Media, row.media_sha256)
        media.kind = "video"  # a video verdict with suspect segments, as detectors/pipeline.py writes them
        s.add(media)
        s.commit()
    store.save_analysis(row.media_sha256, [Detection(detector="video-classifier", version="1", outcome="fake", score=0.9,
                                                     threshold=0.5, reasons=["frames 2.0-4.5 s scored >= 0.5"],
                                                     model_id="demo-detector", weights_digest="abc123",
                                                     details={"segments": [[2.0, 4.5], [7.0, 8.0]]})],
                        "likely_fake", 0.9, ["video classifier"])
    shot = blobs.put(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    store.update_evidence(ev, screenshot_sha256=shot, capture_tool="deepwatch/test", capture_operator="campaign:c")

    html = client_for(console, "vera").get(f"/evidence/{ev}").text
    assert '<video id="evidence-video" controls' in html
    assert 'data-start="2.0" data-end="4.5"' in html and 'data-start="7.0" data-end="8.0"' in html
    assert f'data-testid="screenshot" class="screenshot" src="/blob/{shot}"' in html
    detections = html.split('data-testid="detections"')[1].split("</table>")[0]
    assert "demo-detector" in detections and "0.500" in detections and "Threshold" in detections
    assert "acct7" in html.split('data-testid="sightings"')[1].split("</table>")[0]
    assert "deepwatch/test" in html.split('data-testid="provenance"')[1]
    assert 'data-testid="review-status">unreviewed<' in html
    assert 'id="review"' not in html  # a viewer gets no review form
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html


# -- review -------------------------------------------------------------------------------------
def test_review_by_investigator(console, store, blobs):
    ev = make_evidence(store, blobs, seed=8)
    client = client_for(console, "ivan")
    page = client.get(f"/evidence/{ev}").text
    assert 'form id="review"' in page and 'value="confirmed"' in page and 'name="rationale"' in page
    response = client.post(f"/evidence/{ev}/review", data={"decision": "confirmed", "rationale": "jaw seams; original found",
                                                           "case_id": "NEC-1", "csrf_token": csrf_of(client)},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/evidence/{ev}"

    after = client.get(f"/evidence/{ev}").text
    assert 'data-testid="review-status">confirmed<' in after and "jaw seams; original found" in after
    with store.session() as s:
        reviews = s.exec(select(m.Review).where(m.Review.evidence_id == ev)).all()
        seals = s.exec(select(m.Seal).where(m.Seal.evidence_id == ev)).all()
        events = s.exec(select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == ev).order_by(m.CustodyEvent.seq)).all()
    assert [(r.decision, r.reviewer) for r in reviews] == [("confirmed", "ivan")]
    assert len(seals) == 1 and json.loads(seals[0].record_json)["record"]["evidence"]["review_status"] == "confirmed"
    assert [(e.action, e.actor) for e in events] == [("reviewed", "ivan"), ("sealed", "ivan")]

    empty = client.post(f"/evidence/{ev}/review", data={"decision": "dismissed", "rationale": " ",
                                                        "csrf_token": csrf_of(client)})
    assert empty.status_code == 400 and "rationale" in empty.text


def test_review_of_an_edited_record_is_refused(console, store, blobs):
    from sqlalchemy import text

    ev = make_evidence(store, blobs, seed=22)
    client = client_for(console, "ivan")
    first = client.post(f"/api/v1/evidence/{ev}/review", json={"decision": "confirmed", "rationale": "jaw seams"},
                        headers={"X-CSRF-Token": csrf_of(client)})
    assert first.status_code == 200 and first.json()["seal_sha256"]
    with store.engine.begin() as conn:  # behind deepwatch's back
        conn.execute(text("UPDATE evidence SET review_status = 'dismissed' WHERE id = :id"), {"id": ev})
    again = client.post(f"/api/v1/evidence/{ev}/review", json={"decision": "confirmed", "rationale": "still fake"},
                        headers={"X-CSRF-Token": csrf_of(client)})
    assert again.status_code == 400 and "does not match its last seal" in again.json()["detail"]
    with store.session() as s:
        events = s.exec(select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == ev).order_by(m.CustodyEvent.seq)).all()
    assert [(e.action, e.actor) for e in events][-1] == ("integrity_refused", "ivan")


# -- takedowns ----------------------------------------------------------------------------------
def test_takedown_build_download_and_status(console, store, blobs):
    first, second = make_evidence(store, blobs, seed=9), make_evidence(store, blobs, seed=10)
    client = client_for(console, "ivan")
    refused = client.post("/takedowns", data={"evidence_ids": [str(first), str(second)], "platform": "demo",
                                              "csrf_token": csrf_of(client)}, follow_redirects=False)
    assert refused.status_code == 400 and "not been confirmed by an investigator" in refused.text
    assert 'name="allow_unreviewed"' in client.get("/gallery").text
    built = client.post("/takedowns", data={"evidence_ids": [str(first), str(second)], "platform": "demo",
                                            "allow_unreviewed": "yes", "csrf_token": csrf_of(client)},
                        follow_redirects=False)
    assert built.status_code == 303, built.text
    location = built.headers["location"]
    request_id = int(location.rsplit("/", 1)[1])

    page = client.get(location).text
    assert 'data-testid="takedown-status">drafted<' in page and 'form id="status"' in page
    download = client.get(f"/takedowns/{request_id}/packet.zip")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        names = set(zf.namelist())
        root = f"takedown-{request_id}/"
        assert {root + n for n in ("notice.json", "notice.html", "notice.pdf", "MANIFEST.sha256", "MANIFEST.sig")} <= names
        manifest = zf.read(root + "MANIFEST.sha256")
        for line in manifest.decode().splitlines():  # every file is what the manifest says
            digest, path = line.split(maxsplit=1)
            assert hashlib.sha256(zf.read(root + path)).hexdigest() == digest
        signature = zf.read(root + "MANIFEST.sig").decode().strip()
        public_key = zf.read(root + "public_key.hex").decode().strip()
        assert verify_signature(public_key, signature, manifest)
        notice = json.loads(zf.read(root + "notice.json"))
    assert [i["evidence_id"] for i in notice["items"]] == [first, second]
    assert not any(i["verdict"]["reviewed_by_investigator"] for i in notice["items"])
    with store.session() as s:  # building and downloading are exports by the logged-in user
        exports = s.exec(select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == first,
                                                      m.CustodyEvent.action == "exported")).all()
    assert [(e.actor, e.details.get("kind")) for e in exports] == [("ivan", None), ("ivan", "console download")]

    sent = client.post(f"/takedowns/{request_id}/status", data={"status": "sent", "note": "web form #42",
                                                                "csrf_token": csrf_of(client)}, follow_redirects=False)
    assert sent.status_code == 303
    assert 'data-testid="takedown-status">sent<' in client.get(location).text
    listing = client.get("/takedowns").text.split('data-testid="takedowns"')[1]
    assert f'href="/takedowns/{request_id}"' in listing and ">sent<" in listing
    with store.session() as s:
        actions = [e.action for e in s.exec(select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == first)).all()]
    assert "exported" in actions and "takedown_sent" in actions

    wrong = client.post(f"/takedowns/{request_id}/status", data={"status": "drafted", "csrf_token": csrf_of(client)})
    assert wrong.status_code == 400 and "cannot go from" in wrong.text

    api = client.post("/api/v1/takedowns", json={"evidence_ids": [first], "platform": "nowhere"},
                      headers={"X-CSRF-Token": csrf_of(client)})
    assert api.status_code == 400 and "nowhere" in api.json()["detail"]


def test_file_download_is_an_export_by_the_logged_in_user(console, store, blobs):
    ev = make_evidence(store, blobs, seed=21)
    wacz = blobs.put(b"PK\x03\x04 a web archive")
    store.update_evidence(ev, wacz_sha256=wacz)
    client = client_for(console, "vera")
    client.get(f"/evidence/{ev}")  # viewing is not exporting
    got = client.get(f"/blob/{wacz}")
    assert got.status_code == 200 and got.headers["content-disposition"].startswith("attachment")
    with store.session() as s:
        events = s.exec(select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == ev)).all()
    assert [(e.action, e.actor, e.details["sha256"]) for e in events if e.action == "exported"] == [
        ("exported", "vera", wacz)]


# -- search by image ----------------------------------------------------------------------------
def test_image_search_finds_own_image(console, store, blobs):
    ev = make_evidence(store, blobs, seed=11)
    make_evidence(store, blobs, seed=12)
    with store.session() as s:
        sha = s.get(m.Evidence, ev).media_sha256
    client = client_for(console, "ivan")
    html = client.post("/search-image", files={"image": ("query.jpg", jpeg(11), "image/jpeg")},
                       data={"csrf_token": csrf_of(client)}).text
    first = html.split('data-testid="similar-item"')[1]
    assert f'data-sha256="{sha}"' in first and 'class="distance">0<' in first

    token = issue_token(store, "ivan", "partner system")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post(f"/api/v1/evidence/{ev}/review", json={"decision": "confirmed", "rationale": "known fake"},
                       headers=headers).status_code == 200
    found = TestClient(console).post("/api/v1/search/image", files={"image": ("q.jpg", jpeg(11), "image/jpeg")},
                                     headers=headers).json()
    assert found["matches"][0]["sha256"] == sha and found["matches"][0]["distance"] == 0
    assert found["query"]["pdq"] and [b["case_id"] for b in found["bank"]] == [f"evidence-{ev}"]
    html = client.post("/search-image", files={"image": ("query.jpg", jpeg(11), "image/jpeg")},
                       data={"csrf_token": csrf_of(client)}).text
    assert 'data-testid="bank-match"' in html and f"evidence-{ev}" in html

    junk = client.post("/search-image", files={"image": ("x.jpg", b"not an image", "image/jpeg")},
                       data={"csrf_token": csrf_of(client)})
    assert junk.status_code == 400 and "not an image" in junk.text


# -- the JSON API with a bearer token -----------------------------------------------------------
def test_api_with_bearer_token(console, store, blobs, five):
    token = issue_token(store, "ivan", "partner system")
    api = TestClient(console, headers={"Authorization": f"Bearer {token}"})

    listed = api.get("/api/v1/evidence", params={"platform": "other"})
    assert listed.status_code == 200
    assert {i["evidence_id"] for i in listed.json()["items"]} == {five["ko_other"], five["en_other"]}
    assert listed.json()["next_cursor"] is None

    one = api.get(f"/api/v1/evidence/{five['xss']}").json()
    assert one["post"]["text"] == XSS_TEXT and one["review_status"] == "unreviewed"
    assert one["detections"][0]["model_id"] == "demo-detector"

    review = api.post(f"/api/v1/evidence/{five['ko_demo']}/review", json={"decision": "dismissed", "rationale": "real photo"})
    assert review.status_code == 200 and review.json()["review_status"] == "dismissed" and review.json()["seal_sha256"]
    assert api.get(f"/api/v1/evidence/{five['ko_demo']}").json()["custody"][-1]["action"] == "sealed"

    unreviewed = api.post("/api/v1/takedowns", json={"evidence_ids": [five["en_demo"]], "platform": "demo"})
    assert unreviewed.status_code == 400 and "allow_unreviewed" in unreviewed.json()["detail"]
    built = api.post("/api/v1/takedowns", json={"evidence_ids": [five["en_demo"]], "platform": "demo",
                                                "allow_unreviewed": True})
    assert built.status_code == 201, built.text
    request_id = built.json()["id"]
    moved = api.post(f"/api/v1/takedowns/{request_id}/status", json={"status": "sent", "note": "by API"})
    assert moved.status_code == 200 and moved.json()["status"] == "sent" and moved.json()["sent_at"]
    assert [t["id"] for t in api.get("/api/v1/takedowns").json()["items"]] == [request_id]
    packet = api.get(f"/api/v1/takedowns/{request_id}/packet.zip")
    assert packet.status_code == 200 and packet.content[:2] == b"PK"

    assert api.get("/api/v1/evidence", params={"verdict": "maybe"}).status_code == 400
    assert api.get("/api/v1/evidence/999999").status_code == 404
    assert api.get("/api/openapi.json").json()["paths"]["/api/v1/evidence"]["get"]


# -- campaign figures ---------------------------------------------------------------------------
def test_campaign_stats(console, store, blobs):
    for seed, platform in ((1, "demo"), (1, "other"), (2, "demo")):  # seed 1 twice: one fake re-uploaded
        make_evidence(store, blobs, seed=seed, platform=platform, campaign="kr-2026")
    make_evidence(store, blobs, seed=3, campaign="older")
    campaign_id = store.get_campaign("kr-2026").id
    store.set_campaign_status(campaign_id, "finished", {"counts": {"posts": 40, "flagged": 3}})

    client = client_for(console, "vera")
    stats = client.get("/api/v1/campaigns/kr-2026/stats").json()
    assert stats["per_platform"] == {"demo": 2, "other": 1} and stats["evidence"] == 3
    assert stats["stage_counts"] == {"posts": 40, "flagged": 3}
    (sha, _working, copies, platforms), = stats["top_reuploads"]
    assert copies == 2 and platforms == ["demo", "other"]
    assert client.get("/api/v1/campaigns/nope/stats").status_code == 404

    html = client.get("/?campaign=kr-2026").text
    assert '<option value="kr-2026" selected>' in html and 'id="campaign"' in html
    counts = html.split('data-testid="stage-counts"')[1].split("</dl>")[0]
    assert "posts" in counts and "40" in counts
    per_platform = html.split('data-testid="chart-per-platform"')[1].split("</svg>")[0]
    assert 'data-label="demo" data-value="2"' in per_platform and 'data-label="other" data-value="1"' in per_platform
    over_time = html.split('data-testid="chart-flagged-over-time"')[1].split("</svg>")[0]
    assert 'data-value="3"' in over_time
    assert f'src="/blob/{sha}"' in html.split('data-testid="top-reuploads"')[1]


# -- the audit trail ----------------------------------------------------------------------------
def test_audit_rows_for_every_kind_of_action(console, store, blobs):
    ev = make_evidence(store, blobs, seed=13)
    client = client_for(console, "ivan")
    client.get("/gallery?q=후보")
    client.get(f"/evidence/{ev}")
    client.post(f"/evidence/{ev}/review", data={"decision": "confirmed", "rationale": "seams",
                                                "csrf_token": csrf_of(client)})
    built = client.post("/takedowns", data={"evidence_ids": [str(ev)], "platform": "demo",
                                            "csrf_token": csrf_of(client)}, follow_redirects=False)
    request_id = int(built.headers["location"].rsplit("/", 1)[1])
    client.get(f"/takedowns/{request_id}/packet.zip")
    client.post("/search-image", files={"image": ("q.jpg", jpeg(13), "image/jpeg")}, data={"csrf_token": csrf_of(client)})

    rows = [(e.action, e.target) for e in audit_events(store, username="ivan")]
    for wanted in (("login", "user:ivan"), ("search", "/gallery"), ("view", f"evidence:{ev}"),
                   ("review", f"evidence:{ev}"), ("export", f"takedown:{request_id}"), ("search", "/search-image")):
        assert wanted in rows, wanted
    assert sum(1 for a, t in rows if (a, t) == ("export", f"takedown:{request_id}")) == 2  # built, downloaded
    search = next(e for e in audit_events(store, username="ivan", action="search") if e.target == "/gallery")
    assert search.details["q"] == "후보" and search.ip

    admin = client_for(console, "ada")
    table = admin.get("/admin/audit?username=ivan").text.split('data-testid="audit"')[1]
    assert "review" in table and f"evidence:{ev}" in table
    api_rows = admin.get("/api/v1/audit", params={"action": "review"}).json()["items"]
    assert [r["target"] for r in api_rows] == [f"evidence:{ev}"]
    assert datetime.fromisoformat(api_rows[0]["at"]) <= datetime.now(timezone.utc)
