"""Issue 16, findings 4, 5, 6 and 8 (console): ids beyond the database's range, the trailing-slash
redirect built from the Host header, an unsigned login CSRF token, missing Cache-Control/HSTS and
caller-supplied text on the evidence page. Each probe is the one that reproduced the finding."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from console.hardening import login_token, login_token_ok, relative_slash_target, valid_id
from tests.evidence_factory import make_evidence
from tests.test_console_api import PASSWORD, client_for, console, csrf_of  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(240)

HUGE = "1" + "0" * 25  # beyond 64 bits


def test_ids_beyond_the_database_range_are_404_or_422(console, store, blobs):
    make_evidence(store, blobs)
    ada = client_for(console, "ada", raise_server_exceptions=False)
    for path in (f"/evidence/{HUGE}", f"/evidence/{2**31}", f"/takedowns/{HUGE}", f"/takedowns/{HUGE}/packet.zip"):
        assert ada.get(path).status_code == 404, path
    for path in (f"/api/v1/evidence/{HUGE}", f"/api/v1/takedowns/{HUGE}", f"/api/v1/audit?before_id={HUGE}",
                 f"/admin/audit?before_id={HUGE}"):
        response = ada.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
    token = csrf_of(ada)
    built = ada.post("/api/v1/takedowns", json={"evidence_ids": [int(HUGE)], "platform": "demo"},
                     headers={"x-csrf-token": token})
    assert built.status_code == 422
    form = ada.post("/takedowns", data={"evidence_ids": [HUGE], "platform": "demo", "csrf_token": token})
    assert form.status_code == 400 and "not an evidence id" in form.text
    assert ada.get("/evidence/1").status_code == 200  # real ids still work


def test_trailing_slash_redirect_is_relative_and_ignores_host(console, store, blobs):
    ada = client_for(console, "ada")
    response = ada.get("/blob/" + "0" * 64 + "/", headers={"host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == "/blob/" + "0" * 64
    assert relative_slash_target("//evil.example/", b"") == "/evil.example"  # never protocol-relative
    assert relative_slash_target("/gallery/", b"q=1") == "/gallery?q=1"


def test_planted_login_csrf_cookie_and_field_are_refused(console, store):
    client = TestClient(console)
    planted = "A" * 43  # what the old double-submit accepted: any 43 url-safe characters in both places
    client.cookies.set("dw_login_csrf", planted, path="/login")
    response = client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": planted},
                           follow_redirects=False)
    assert response.status_code == 403 and "dw_session" not in response.cookies
    secret = console.state.console_secret
    assert login_token_ok(secret, login_token(secret))
    assert not login_token_ok(b"x" * 32, login_token(secret))  # another server's key
    assert not login_token_ok(secret, login_token(secret, now=0))  # harvested long ago
    assert client_for(console, "ada") is not None  # the real form still logs in


def test_no_store_on_authenticated_answers_and_hsts_with_secure_cookies(console, store, blobs, tmp_path):
    make_evidence(store, blobs)
    ada = client_for(console, "ada")
    for path in ("/", "/gallery", "/evidence/1", "/api/v1/evidence"):
        assert ada.get(path).headers.get("cache-control") == "no-store", path
    assert "strict-transport-security" not in ada.get("/").headers
    secure = create_app(store.url, str(blobs.root), secure_cookies=True, packets_root=str(tmp_path / "p"),
                        key_dir=str(tmp_path / "k"))
    try:
        page = TestClient(secure, base_url="https://testserver").get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
    finally:
        secure.state.console.store.close()


def test_evidence_page_shows_no_caller_text(console, store, blobs):
    make_evidence(store, blobs)
    ada = client_for(console, "ada")
    page = ada.get("/evidence/1", params={"error": "Call +1-555-0100 now: your account is suspended"})
    assert page.status_code == 200 and "555-0100" not in page.text
    assert "re-sealing the record failed" in ada.get("/evidence/1?error=seal").text


def test_valid_id_bounds():
    assert [valid_id(v) for v in ("1", "2147483647", "2147483648", "0", "-1", "1e3", "٣", True, 5)] == \
        [1, 2147483647, None, None, None, None, None, None, 5]
    assert re.fullmatch(r"\d+", HUGE)
