"""The console's defences, on SQLite and PostgreSQL: nothing is reachable without a login, roles
hold, CSRF is required, revoked credentials stop working, hostile text is escaped everywhere it
is shown, SQL metacharacters in filters are plain text, no open redirect, security headers and
cookie flags."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from console.auth import issue_token, list_tokens, revoke_token, set_active
from storage import models as m
from tests.evidence_factory import jpeg, make_evidence
from tests.test_console_api import PASSWORD, client_for, console, csrf_of, items_of, login  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(240)

SCRIPT = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(1)>'
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/healthz"), ("GET", "/favicon.ico")}  # favicon: an empty 204


def all_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route, through included routers (FastAPI >= 0.16x keeps them lazy)."""
    try:
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = app.routes
    found = []
    for route in routes:
        if route.path == "/static":  # the static mount: anyone may fetch CSS and JS
            found.append(("GET", "/static"))
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path))
    return found


def concrete(path: str) -> str:
    return (path.replace("{evidence_id}", "1").replace("{request_id}", "1").replace("{sha256}", "0" * 64)
            .replace("{name}", "c"))


# -- no login, no access ------------------------------------------------------------------------
def test_every_route_refuses_anonymous_access(console, store, blobs):
    make_evidence(store, blobs)
    anonymous = TestClient(console)
    routes = all_routes(console)
    assert len(routes) > 25 and ("GET", "/static") in routes
    for method, path in routes:
        if (method, path) in PUBLIC or path == "/static":
            continue
        response = anonymous.request(method, concrete(path), follow_redirects=False)
        if path.startswith("/api"):
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["content-type"].startswith("application/json")
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next="), (method, path)
    # FastAPI's default docs are off (they would be public), unknown paths redirect to the login.
    for path in ("/docs", "/redoc", "/openapi.json", "/no/such/page"):
        assert anonymous.get(path, follow_redirects=False).status_code == 303
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/static/console.css").status_code == 200
    assert anonymous.get("/static/console.js").status_code == 200
    for escape in ("/static/%2e%2e/deps.py", "/static/%2e%2e/%2e%2e/console/deps.py", "/static/..%2fdeps.py"):
        escaped = anonymous.get(escape, follow_redirects=False)
        assert escaped.status_code in (303, 404) and "LoginGate" not in escaped.text, escape
    assert anonymous.get("/login").status_code == 200
    with store.session() as s:  # none of the anonymous POSTs changed anything
        assert s.exec(select(func.count()).select_from(m.Review)).one() == 0


def test_viewer_cannot_review_build_takedowns_or_read_audit(console, store, blobs):
    ev = make_evidence(store, blobs)
    viewer = client_for(console, "vera")
    token = csrf_of(viewer)
    assert 'id="review"' not in viewer.get(f"/evidence/{ev}").text
    assert viewer.post(f"/evidence/{ev}/review", data={"decision": "confirmed", "rationale": "x",
                                                      "csrf_token": token}).status_code == 403
    assert viewer.post("/takedowns", data={"evidence_ids": [str(ev)], "platform": "demo",
                                           "csrf_token": token}).status_code == 403
    assert viewer.post("/takedowns/1/status", data={"status": "sent", "csrf_token": token}).status_code == 403
    assert viewer.get("/admin/audit").status_code == 403
    assert viewer.get("/api/v1/audit").status_code == 403

    bearer = TestClient(console, headers={"Authorization": f"Bearer {issue_token(store, 'vera', 'viewer script')}"})
    assert bearer.post(f"/api/v1/evidence/{ev}/review", json={"decision": "confirmed", "rationale": "x"}).status_code == 403
    assert bearer.post("/api/v1/takedowns", json={"evidence_ids": [ev], "platform": "demo"}).status_code == 403
    assert bearer.get("/api/v1/audit").status_code == 403
    assert bearer.get(f"/api/v1/evidence/{ev}").status_code == 200  # reading is what a viewer may do

    investigator = client_for(console, "ivan")
    assert investigator.get("/admin/audit").status_code == 403
    with store.session() as s:
        assert s.get(m.Evidence, ev).review_status == "unreviewed"
        assert s.exec(select(func.count()).select_from(m.TakedownRequest)).one() == 0


# -- CSRF ---------------------------------------------------------------------------------------
def test_posts_need_the_csrf_token(console, store, blobs):
    ev = make_evidence(store, blobs)
    client = client_for(console, "ivan")
    form = {"decision": "confirmed", "rationale": "seams"}
    assert client.post(f"/evidence/{ev}/review", data=form).status_code == 403
    assert client.post(f"/evidence/{ev}/review", data=form | {"csrf_token": "forged"}).status_code == 403
    assert client.post(f"/evidence/{ev}/review", json=form).status_code == 403
    api = f"/api/v1/evidence/{ev}/review"
    assert client.post(api, json=form).status_code == 403  # a session on the API needs the header
    assert client.post(api, json=form, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/").status_code == 200  # still logged in: the forged logout did nothing
    with store.session() as s:
        assert s.get(m.Evidence, ev).review_status == "unreviewed"

    assert client.post(api, json=form, headers={"X-CSRF-Token": csrf_of(client)}).status_code == 200

    # The login form: double-submit cookie. A cross-site post carries no matching cookie.
    stranger = TestClient(console)
    assert stranger.post("/login", data={"username": "ivan", "password": PASSWORD, "csrf_token": "x"},
                         follow_redirects=False).status_code == 403
    stranger.get("/login")
    assert stranger.post("/login", data={"username": "ivan", "password": PASSWORD, "csrf_token": "x"},
                         follow_redirects=False).status_code == 403


# -- revoked credentials ------------------------------------------------------------------------
def test_revoked_token_and_deactivated_user(console, store):
    token = issue_token(store, "ivan", "partner")
    api = TestClient(console, headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/v1/takedowns").status_code == 200
    revoke_token(store, list_tokens(store, "ivan")[0].id)
    assert api.get("/api/v1/takedowns").status_code == 401

    for bad in ("Bearer dw_notatoken", "Basic aXZhbjpwdw==", "Bearer"):
        assert TestClient(console, headers={"Authorization": bad}).get("/api/v1/takedowns").status_code == 401

    browser = client_for(console, "vera")
    other = TestClient(console, headers={"Authorization": f"Bearer {issue_token(store, 'vera', 'x')}"})
    set_active(store, "vera", False)
    assert browser.get("/", follow_redirects=False).status_code == 303
    assert other.get("/api/v1/takedowns").status_code == 401
    assert login(TestClient(console), "vera", PASSWORD).status_code == 401


# -- escaping -----------------------------------------------------------------------------------
def test_hostile_text_is_escaped_on_every_page(console, store, blobs):
    ev = make_evidence(store, blobs, seed=21, text=f"후보 {SCRIPT} {ATTR}")
    account, media_url, post_url = f"acct{SCRIPT}", f"https://x.example/{ATTR}.jpg", f"https://x.example/p/{ATTR}"
    with store.session() as s:
        row = s.get(m.Evidence, ev)
        post = s.get(m.Post, row.post_pk)
        sighting = s.exec(select(m.Sighting).where(m.Sighting.post_pk == post.id)).one()
        row.account, row.media_url, row.post_url = account, media_url, post_url
        post.account, post.url, sighting.media_url = account, post_url, media_url
        row.reasons = [f"reason {SCRIPT}"]
        s.add_all([row, post, sighting])
        s.commit()
    login(TestClient(console), ATTR, "whatever password")  # a hostile name lands in the audit log

    investigator = client_for(console, "ivan")
    investigator.post(f"/evidence/{ev}/review", data={"decision": "confirmed", "rationale": f"why {SCRIPT}",
                                                      "csrf_token": csrf_of(investigator)})
    admin = client_for(console, "ada")
    pages = {
        "gallery": admin.get("/gallery").text,
        "gallery filtered": admin.get("/gallery", params={"q": ATTR, "account": SCRIPT}).text,
        "evidence": admin.get(f"/evidence/{ev}").text,
        "search": admin.post("/search-image", files={"image": ("q.jpg", jpeg(21), "image/jpeg")},
                             data={"csrf_token": csrf_of(admin)}).text,
        "audit": admin.get("/admin/audit").text,
        "error": admin.get("/gallery", params={"verdict": SCRIPT}).text,
        "login": TestClient(console).get("/login", params={"next": f"/{ATTR}"}).text,
    }
    for name, html in pages.items():
        assert "<script>alert(1)" not in html, name
        assert "<img src=x onerror" not in html, name
        assert "onerror=alert(1)>" not in html.replace("&gt;", ""), name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["gallery"] and "&lt;img src=x" in pages["gallery"]
    evidence = pages["evidence"]
    for shown in ("acct&lt;script&gt;", "https://x.example/&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.jpg",
                  "https://x.example/p/&#34;&gt;&lt;img", "reason &lt;script&gt;", "why &lt;script&gt;"):
        assert shown in evidence, shown
    assert "&#34;&gt;&lt;img src=x" in pages["search"] and "&#34;&gt;&lt;img src=x" in pages["audit"]
    assert "&lt;script&gt;" in pages["error"]
    # The JSON API returns the text as data; a JSON response is never rendered as HTML.
    api = admin.get(f"/api/v1/evidence/{ev}")
    assert api.headers["content-type"] == "application/json" and api.json()["post"]["account"] == account


# -- SQL metacharacters -------------------------------------------------------------------------
SQL_PAYLOADS = ["' OR 1=1 --", "%", "_", "\\", '"; DROP TABLE post; --', "' UNION SELECT * FROM \"user\" --"]


def test_sql_metacharacters_in_filters_are_plain_text(console, store, blobs):
    ids = {make_evidence(store, blobs, seed=s, platform=p) for s, p in ((31, "demo"), (32, "other"))}
    client = client_for(console, "vera")
    with store.session() as s:
        before = {t: s.exec(select(func.count()).select_from(t)).one() for t in (m.Post, m.Evidence, m.User)}
    assert set(items_of(client.get("/gallery").text)) == ids

    for payload in SQL_PAYLOADS:
        for name in ("campaign", "platform", "account", "q"):  # free text: matched literally, matches nothing
            page = client.get("/gallery", params={name: payload})
            assert page.status_code == 200 and items_of(page.text) == [], (name, payload)
            listed = client.get("/api/v1/evidence", params={name: payload})
            assert listed.status_code == 200 and listed.json()["items"] == [], (name, payload)
        for name in ("verdict", "min_score", "since", "until", "review", "cursor"):  # typed: refused, naming the field
            page = client.get("/gallery", params={name: payload})
            assert page.status_code == 400 and name in page.text, (name, payload)
            assert client.get("/api/v1/evidence", params={name: payload}).status_code == 400
        assert client.get(f"/api/v1/campaigns/{payload}/stats").status_code in (404, 400)

    with store.session() as s:
        after = {t: s.exec(select(func.count()).select_from(t)).one() for t in (m.Post, m.Evidence, m.User)}
    assert after == before
    assert set(items_of(client.get("/gallery").text)) == ids  # tables intact and still readable


# -- redirects, headers, cookies ----------------------------------------------------------------
@pytest.mark.parametrize("target", ["https://evil.example", "//evil.example/x", "/\\evil.example", "https:evil.example",
                                    "\t//evil.example", "javascript:alert(1)"])
def test_no_open_redirect_after_login(console, target):
    client = TestClient(console)
    response = login(client, "vera", PASSWORD, next_path=target)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert 'name="next" value="/"' in TestClient(console).get("/login", params={"next": target}).text


def test_security_headers_on_every_kind_of_response(console, store, blobs):
    ev = make_evidence(store, blobs)
    html_blob = blobs.put(b"<!doctype html><html><script>alert(1)</script></html>")
    client = client_for(console, "vera")
    anonymous = TestClient(console)
    responses = {
        "login": anonymous.get("/login"),
        "redirect": anonymous.get("/", follow_redirects=False),
        "401": anonymous.get("/api/v1/evidence"),
        "static": anonymous.get("/static/console.js"),
        "page": client.get(f"/evidence/{ev}"),
        "api": client.get("/api/v1/evidence"),
        "404": client.get("/evidence/999999"),
        "blob": client.get(f"/blob/{html_blob}"),
    }
    for name, r in responses.items():
        csp = r.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, name
        assert r.headers["x-frame-options"] == "DENY", name
        assert r.headers["x-content-type-options"] == "nosniff", name
        assert r.headers["referrer-policy"] == "same-origin", name
    for name in ("login", "page", "404"):
        csp = responses[name].headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, name
    page = responses["page"].text
    assert "<script>" not in page and not re.search(r"<script(?![^>]*\bsrc=\"/static/)", page)
    assert " style=" not in page and "<style" not in page

    image = client.get(f"/blob/{client.get('/api/v1/evidence').json()['items'][0]['media_sha256']}")
    assert image.headers["content-type"] == "image/jpeg" and image.headers["content-security-policy"] == "sandbox"
    hostile = responses["blob"]
    assert hostile.headers["content-type"] == "application/octet-stream"
    assert hostile.headers["content-disposition"].startswith("attachment")
    assert client.get("/blob/" + "f" * 64).status_code == 404 and client.get("/blob/../../etc/passwd").status_code == 404


@pytest.mark.parametrize("secure", [False, True])
def test_session_cookie_flags(store, blobs, tmp_path, secure):
    from console.app import create_app
    from console.auth import create_user

    create_user(store, "vera", PASSWORD, "viewer")
    app = create_app(store.url, str(blobs.root), secure_cookies=secure, key_dir=str(tmp_path / "keys"))
    try:
        client = TestClient(app, base_url="https://testserver" if secure else "http://testserver")
        form = client.get("/login")
        login_cookie = next(c for c in form.headers.get_list("set-cookie") if c.startswith("dw_login_csrf="))
        response = login(client, "vera", PASSWORD)
        session_cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("dw_session="))
        for cookie in (login_cookie, session_cookie):
            flags = {part.strip().lower() for part in cookie.split(";")[1:]}
            assert "httponly" in flags and "samesite=strict" in flags
            assert ("secure" in flags) is secure
        assert "path=/" in session_cookie.lower()
        value = session_cookie.split(";")[0].split("=", 1)[1]
        assert len(value) >= 40  # 256 random bits
        with store.session() as s:  # only its digest is stored
            assert s.exec(select(m.WebSession).where(m.WebSession.session_sha256 == value)).first() is None
    finally:
        app.state.console.store.close()


def test_password_guessing_is_throttled(store_url, tmp_path):
    """Wrong passwords for an account from one address make further logins from there wait, even with the right password;
    each refusal is audited."""
    from console.audit import audit_events
    from console.auth import create_user
    from storage.db import Store
    from starlette.testclient import TestClient

    from console.app import create_app

    store = Store(store_url)
    create_user(store, "kim", "correct horse battery staple", role="investigator")
    client = TestClient(create_app(store_url, str(tmp_path / "blobs")))

    def attempt(password: str) -> int:
        page = client.get("/login")
        token = page.cookies.get("dw_login_csrf") or client.cookies.get("dw_login_csrf")
        import re

        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert token
        return client.post("/login", data={"username": "kim", "password": password, "csrf_token": csrf},
                           follow_redirects=False).status_code

    results = [attempt("wrong password %d" % i) for i in range(10)]
    assert results[:5] == [401] * 5 and 429 in results  # five free, then an exponential backoff
    assert attempt("correct horse battery staple") == 429
    assert any(e.action == "login_throttled" for e in audit_events(store))
    store.close()
