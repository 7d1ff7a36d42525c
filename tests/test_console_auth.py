"""Console accounts, sessions, API tokens, the append-only audit log and `deepwatch user`.

Every test takes the `store` fixture, so it runs on a SQLite file and on a real PostgreSQL."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from typer.testing import CliRunner

from console import auth
from console.audit import audit, audit_events
from console.auth import AuthError
from storage.db import as_utc

pytestmark = pytest.mark.timeout(180)

GOOD = "correct horse battery staple"
OTHER = "another long passphrase 42"


def _sql(store, statement: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


# -- accounts and passwords ---------------------------------------------------------------------
def test_password_and_username_policy_give_clear_errors(store):
    for password, message in [
        ("short", "at least 12 characters"),
        (" " * 20, "only spaces"),
        ("kim.investigator", "must not be the username"),
        ("a" * 16, "one character repeated"),
        ("x" * 1025, "too long"),
    ]:
        with pytest.raises(AuthError, match=message):
            auth.create_user(store, "kim.investigator", password)
    for bad in ["", "a" * 65, "kim lee", "kim/../x", "<script>", "kim\n"]:
        with pytest.raises(AuthError, match="invalid username"):
            auth.create_user(store, bad, GOOD)
    with pytest.raises(AuthError, match="unknown role 'root'"):
        auth.create_user(store, "kim", GOOD, role="root")
    assert auth.list_users(store) == []  # nothing half-created by the refusals

    kim = auth.create_user(store, "kim.investigator", GOOD, role="investigator")
    assert (kim.username, kim.role, kim.active) == ("kim.investigator", "investigator", True)
    assert kim.password_hash.startswith("$argon2id$") and GOOD not in kim.password_hash
    with pytest.raises(AuthError, match="already exists"):
        auth.create_user(store, "kim.investigator", OTHER)
    # Korean names are letters too; decomposed jamo and composed syllables are one account.
    lee = auth.create_user(store, "이수진@선관위", GOOD)
    decomposed = "\u110b\u1175\u1109\u116e\u110c\u1175\u11ab@선관위"
    assert auth.get_user(store, decomposed).id == lee.id
    assert auth.authenticate(store, decomposed, GOOD).id == lee.id
    assert [u.username for u in auth.list_users(store)] == ["kim.investigator", "이수진@선관위"]


def test_authenticate_wrong_password_unknown_and_inactive_users(store, monkeypatch):
    auth.create_user(store, "park", GOOD, role="admin")
    assert auth.authenticate(store, "park", GOOD).username == "park"
    assert auth.authenticate(store, "park", GOOD + "!") is None
    assert auth.authenticate(store, "PARK", GOOD) is None  # usernames are exact
    assert auth.authenticate(store, "park", "") is None

    # An unknown name does the same argon2 work as a known one (no timing oracle for who exists).
    calls = []
    real_verify = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda h, pw: calls.append(h) or real_verify(h, pw))
    assert auth.authenticate(store, "nobody", GOOD) is None
    assert auth.authenticate(store, "not a valid/name", GOOD) is None
    assert len(calls) == 2 and all(h.startswith("$argon2id$") for h in calls)
    monkeypatch.undo()

    auth.set_active(store, "park", False)
    assert auth.authenticate(store, "park", GOOD) is None
    auth.set_active(store, "park", True)
    assert auth.authenticate(store, "park", GOOD).username == "park"


def test_login_rehashes_a_password_stored_with_weaker_parameters(store):
    user = auth.create_user(store, "choi", GOOD)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(GOOD)
    _sql(store, "UPDATE \"user\" SET password_hash = :h WHERE id = :id", h=weak, id=user.id)
    assert auth.authenticate(store, "choi", OTHER) is None  # a wrong password changes nothing
    assert auth.get_user(store, "choi").password_hash == weak

    assert auth.authenticate(store, "choi", GOOD) is not None
    upgraded = auth.get_user(store, "choi").password_hash
    assert upgraded != weak and not PasswordHasher().check_needs_rehash(upgraded)
    assert auth.verify_password(upgraded, GOOD) and not auth.verify_password(upgraded, OTHER)
    assert not auth.verify_password("not a hash", GOOD)


# -- sessions -----------------------------------------------------------------------------------
def test_sessions_store_only_a_digest_and_expire(store):
    user = auth.create_user(store, "jung", GOOD)
    cookie, csrf = auth.start_session(store, user)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie) and re.fullmatch(r"[A-Za-z0-9_-]{43}", csrf)
    found_user, session = auth.session_for(store, cookie)
    assert found_user.username == "jung" and session.csrf_token == csrf
    assert session.session_sha256 == hashlib.sha256(cookie.encode()).hexdigest()
    assert timedelta(hours=7, minutes=59) < session.expires_at - datetime.now(timezone.utc) <= timedelta(hours=8)
    with store.engine.connect() as conn:  # the cookie value itself is nowhere in the table
        rows = [tuple(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM websession"))]
    assert rows and not any(cookie in value for row in rows for value in row)

    assert auth.session_for(store, cookie + "x") is None
    assert auth.session_for(store, "") is None and auth.session_for(store, None) is None

    # A session past its expiry is dead: move expires_at into the past.
    _sql(store, "UPDATE websession SET expires_at = :t WHERE id = :id",
         t=datetime.now(timezone.utc) - timedelta(seconds=1), id=session.id)
    assert auth.session_for(store, cookie) is None

    short_cookie, _ = auth.start_session(store, user, ttl_s=1)
    assert auth.session_for(store, short_cookie) is not None
    with pytest.raises(AuthError, match="must be positive"):
        auth.start_session(store, user, ttl_s=0)

    live, _ = auth.start_session(store, user)
    auth.end_session(store, live)
    assert auth.session_for(store, live) is None
    auth.end_session(store, live)  # ending twice, or an unknown cookie, is harmless
    auth.end_session(store, "no-such-cookie")


def test_ttl_one_second_session_expires_by_the_clock(store):
    import time

    user = auth.create_user(store, "yoon", GOOD)
    cookie, _ = auth.start_session(store, user, ttl_s=1)
    assert auth.session_for(store, cookie) is not None
    time.sleep(1.2)
    assert auth.session_for(store, cookie) is None


def test_passwd_ends_sessions_but_keeps_tokens(store):
    user = auth.create_user(store, "han", GOOD, role="investigator")
    cookies = [auth.start_session(store, user)[0] for _ in range(2)]
    token = auth.issue_token(store, "han", "intake")
    before = as_utc(auth.get_user(store, "han").password_changed_at)

    with pytest.raises(AuthError, match="at least 12"):
        auth.set_password(store, "han", "short")
    assert all(auth.session_for(store, c) for c in cookies)  # a refused change ends nothing

    changed = auth.set_password(store, "han", OTHER)
    assert as_utc(changed.password_changed_at) >= before
    assert all(auth.session_for(store, c) is None for c in cookies)
    assert auth.authenticate(store, "han", GOOD) is None and auth.authenticate(store, "han", OTHER)
    assert auth.user_for_token(store, token).username == "han"
    with pytest.raises(AuthError, match="no user named 'ghost'"):
        auth.set_password(store, "ghost", OTHER)


def test_revoke_ends_sessions_and_tokens_and_activate_does_not_revive_them(store):
    user = auth.create_user(store, "seo", GOOD)
    other = auth.create_user(store, "lim", GOOD)
    cookie, _ = auth.start_session(store, user)
    other_cookie, _ = auth.start_session(store, other)
    token = auth.issue_token(store, "seo", "partner")

    revoked = auth.set_active(store, "seo", False)
    assert revoked.active is False
    assert auth.session_for(store, cookie) is None and auth.user_for_token(store, token) is None
    assert all(t.revoked_at is not None for t in auth.list_tokens(store, "seo"))
    assert auth.session_for(store, other_cookie)[0].username == "lim"  # others are untouched
    with pytest.raises(AuthError, match="not active"):
        auth.start_session(store, revoked)
    with pytest.raises(AuthError, match="not active"):
        auth.issue_token(store, "seo", "again")

    auth.set_active(store, "seo", True)
    assert auth.session_for(store, cookie) is None and auth.user_for_token(store, token) is None
    fresh = auth.issue_token(store, "seo", "new")
    assert auth.user_for_token(store, fresh).username == "seo"

    # A session or token whose user is deactivated later is refused at once (checked per use).
    cookie2, _ = auth.start_session(store, auth.get_user(store, "seo"))
    _sql(store, "UPDATE \"user\" SET active = :f WHERE username = 'seo'", f=False)
    assert auth.session_for(store, cookie2) is None and auth.user_for_token(store, fresh) is None


# -- API tokens ---------------------------------------------------------------------------------
def test_tokens_issue_use_touch_and_revoke(store):
    auth.create_user(store, "oh", GOOD, role="investigator")
    token = auth.issue_token(store, "oh", "  platform-x intake ")
    assert re.fullmatch(r"dw_[A-Za-z0-9_-]{43}", token)
    (row,) = auth.list_tokens(store, "oh")
    assert row.name == "platform-x intake" and row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert row.last_used_at is None and row.revoked_at is None

    assert auth.user_for_token(store, token).username == "oh"
    first_use = auth.list_tokens(store, "oh")[0].last_used_at
    assert first_use is not None and first_use.tzinfo is not None
    auth.user_for_token(store, token)  # within a minute: last_used_at is not rewritten
    assert auth.list_tokens(store, "oh")[0].last_used_at == first_use
    old = datetime.now(timezone.utc) - timedelta(minutes=2)
    _sql(store, "UPDATE apitoken SET last_used_at = :t WHERE id = :id", t=old, id=row.id)
    auth.user_for_token(store, token)
    assert auth.list_tokens(store, "oh")[0].last_used_at > old + timedelta(minutes=1)

    for wrong in [token[:-1], token[3:], "Bearer " + token, "", None, "dw_"]:
        assert auth.user_for_token(store, wrong) is None

    second = auth.issue_token(store, "oh", "second")
    auth.revoke_token(store, row.id)
    assert auth.user_for_token(store, token) is None
    assert auth.user_for_token(store, second).username == "oh"
    auth.revoke_token(store, row.id)  # idempotent
    with pytest.raises(AuthError, match="no API token with id 999999"):
        auth.revoke_token(store, 999999)
    with pytest.raises(AuthError, match="needs a name"):
        auth.issue_token(store, "oh", "  ")
    with pytest.raises(AuthError, match="no user named 'ghost'"):
        auth.issue_token(store, "ghost", "x")
    with pytest.raises(AuthError, match="no user named 'ghost'"):
        auth.list_tokens(store, "ghost")
    assert [t.name for t in auth.list_tokens(store, "oh")] == ["platform-x intake", "second"]


def test_roles_are_ordered(store):
    users = {role: auth.create_user(store, f"u-{role}", GOOD, role=role) for role in auth.ROLES}
    assert auth.ROLES == ("viewer", "investigator", "admin")
    expected = {
        "viewer": {"viewer"},
        "investigator": {"viewer", "investigator"},
        "admin": {"viewer", "investigator", "admin"},
    }
    for role, user in users.items():
        assert {needed for needed in auth.ROLES if auth.has_role(user, needed)} == expected[role]
    with pytest.raises(AuthError, match="unknown role 'superuser'"):
        auth.has_role(users["admin"], "superuser")
    assert not auth.has_role(None, "viewer")
    assert not auth.has_role(auth.set_active(store, "u-admin", False), "viewer")

    promoted = auth.set_role(store, "u-viewer", "admin")
    assert auth.has_role(promoted, "admin")
    with pytest.raises(AuthError, match="unknown role"):
        auth.set_role(store, "u-viewer", "god")
    assert auth.get_user(store, "u-viewer").role == "admin"


# -- audit log ----------------------------------------------------------------------------------
def test_audit_rows_are_written_and_read_back_with_filters(store):
    audit(store, "", "login_failed", "user:ghost", {"reason": "unknown"}, ip="203.0.113.9")
    audit(store, "kim", "login", ip="127.0.0.1")
    audit(store, "kim", "view", "evidence:12", {"path": "/evidence/12"}, ip="127.0.0.1")
    audit(store, "이수진", "search", "/gallery", {"q": "후보 딥페이크"})
    audit(store, "kim", "export", "takedown:3")

    everything = audit_events(store)
    assert [e.action for e in everything] == ["export", "search", "view", "login", "login_failed"]  # newest first
    assert all(e.at.tzinfo is not None for e in everything)
    failed = everything[-1]
    assert (failed.username, failed.target, failed.details, failed.ip) == \
        ("", "user:ghost", {"reason": "unknown"}, "203.0.113.9")
    assert audit_events(store, username="이수진")[0].details == {"q": "후보 딥페이크"}
    assert [e.action for e in audit_events(store, username="kim")] == ["export", "view", "login"]
    assert [e.target for e in audit_events(store, username="kim", action="view")] == ["evidence:12"]
    assert audit_events(store, action="review") == []

    page1 = audit_events(store, limit=2)
    page2 = audit_events(store, limit=2, before_id=page1[-1].id)
    page3 = audit_events(store, limit=2, before_id=page2[-1].id)
    assert [e.id for e in page1 + page2 + page3] == [e.id for e in everything]

    assert len(audit_events(store, since=everything[0].at)) >= 1
    assert audit_events(store, since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []
    naive_past = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
    assert len(audit_events(store, since=naive_past)) == 5
    kst = timezone(timedelta(hours=9))  # a since in another zone means the same instant
    assert len(audit_events(store, since=(datetime.now(timezone.utc) - timedelta(hours=1)).astimezone(kst))) == 5

    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        audit_events(store, limit=0)
    with pytest.raises(ValueError, match="needs an action"):
        audit(store, "kim", " ")
    with pytest.raises(ValueError, match="must be a dict"):
        audit(store, "kim", "view", details=["not", "a", "dict"])
    assert len(audit_events(store)) == 5


def test_audit_log_is_append_only_in_the_database(store):
    audit(store, "kim", "review", "evidence:7", {"decision": "confirmed"})
    (row,) = audit_events(store)
    for statement in ["UPDATE auditevent SET username = 'someone else'", "DELETE FROM auditevent"]:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            _sql(store, statement)
    (after,) = audit_events(store)
    assert (after.id, after.username, after.details) == (row.id, "kim", {"decision": "confirmed"})


def test_a_failed_audit_write_raises_into_the_caller(store):
    with pytest.raises(Exception):  # not JSON: the write fails, and the caller hears of it
        audit(store, "kim", "view", "evidence:1", {"bytes": b"\x00"})
    _sql(store, "DROP TABLE auditevent")
    with pytest.raises(sa.exc.DBAPIError):
        audit(store, "kim", "view", "evidence:1")


# -- `deepwatch user` -----------------------------------------------------------------------------
def _cli(store, *args, input=None):
    from orchestrator import cli_users  # noqa: F401  (registers `user` on the app)
    from orchestrator.cli import app

    return CliRunner().invoke(app, ["user", *args, "--db", store.url], input=input)


def test_user_cli_commands(store):
    added = _cli(store, "add", "admin.kim", "--role", "admin", "--password-stdin", input=GOOD + "\n")
    assert added.exit_code == 0, added.output
    assert "user admin.kim created with role admin" in added.stdout
    assert auth.authenticate(store, "admin.kim", GOOD).role == "admin"

    prompted = _cli(store, "add", "이수진", input=f"{OTHER}\n{OTHER}\n")  # asked twice, hidden
    assert prompted.exit_code == 0, prompted.output
    assert OTHER not in prompted.stdout and auth.authenticate(store, "이수진", OTHER).role == "viewer"

    mismatch = _cli(store, "add", "lee", input=f"{OTHER}\n{GOOD}\n{OTHER}\n{OTHER}\n")
    assert mismatch.exit_code == 0 and auth.authenticate(store, "lee", OTHER)

    weak = _cli(store, "add", "park", "--password-stdin", input="short\n")
    assert weak.exit_code == 2 and "at least 12 characters" in weak.stderr
    duplicate = _cli(store, "add", "admin.kim", "--password-stdin", input=OTHER + "\n")
    assert duplicate.exit_code == 2 and "already exists" in duplicate.stderr
    bad_role = _cli(store, "add", "park", "--role", "root", "--password-stdin", input=OTHER + "\n")
    assert bad_role.exit_code == 2 and "unknown role 'root'" in bad_role.stderr
    empty = _cli(store, "add", "park", "--password-stdin", input="")
    assert empty.exit_code == 2 and "nothing on stdin" in empty.stderr
    assert auth.get_user(store, "park") is None

    listed = _cli(store, "list")
    assert listed.exit_code == 0
    assert "admin.kim" in listed.stdout and "이수진" in listed.stdout and "admin" in listed.stdout

    issued = _cli(store, "token", "admin.kim", "--name", "platform-x [intake]")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert re.fullmatch(r"dw_[A-Za-z0-9_-]{43}", token) and "will not be shown again" in issued.stderr
    assert auth.user_for_token(store, token).username == "admin.kim"
    (row,) = auth.list_tokens(store, "admin.kim")
    tokens = _cli(store, "tokens", "admin.kim")
    assert tokens.exit_code == 0 and "platform-x [intake]" in tokens.stdout and token not in tokens.stdout
    assert re.search(rf"\b{row.id}\b", tokens.stdout)

    revoked_token = _cli(store, "revoke-token", str(row.id))
    assert revoked_token.exit_code == 0 and f"API token {row.id} revoked" in revoked_token.stdout
    assert auth.user_for_token(store, token) is None
    unknown_token = _cli(store, "revoke-token", "424242")
    assert unknown_token.exit_code == 2 and "no API token with id 424242" in unknown_token.stderr

    cookie, _ = auth.start_session(store, auth.get_user(store, "admin.kim"))
    changed = _cli(store, "passwd", "admin.kim", "--password-stdin", input=OTHER + "\n")
    assert changed.exit_code == 0 and "sessions were ended" in changed.stdout
    assert auth.session_for(store, cookie) is None and auth.authenticate(store, "admin.kim", OTHER)
    ghost = _cli(store, "passwd", "ghost", "--password-stdin", input=OTHER + "\n")
    assert ghost.exit_code == 2 and "no user named 'ghost'" in ghost.stderr

    live_token = auth.issue_token(store, "이수진", "bot")
    revoked = _cli(store, "revoke", "이수진")
    assert revoked.exit_code == 0 and "deactivated" in revoked.stdout
    assert auth.authenticate(store, "이수진", OTHER) is None and auth.user_for_token(store, live_token) is None
    assert "no" in _cli(store, "list").stdout
    activated = _cli(store, "activate", "이수진")
    assert activated.exit_code == 0 and auth.authenticate(store, "이수진", OTHER)
    role = _cli(store, "role", "이수진", "investigator")
    assert role.exit_code == 0 and auth.get_user(store, "이수진").role == "investigator"

    # Every change is in the audit log, attributed to the operating-system user.
    actions = [(e.action, e.target) for e in audit_events(store)]
    assert ("user_add", "user:admin.kim") in actions and ("token_issue", "user:admin.kim") in actions
    assert ("token_revoke", f"token:{row.id}") in actions and ("user_revoke", "user:이수진") in actions
    assert ("user_passwd", "user:admin.kim") in actions and ("user_role", "user:이수진") in actions
    assert all(e.username.startswith("cli:") for e in audit_events(store))
    assert not any(OTHER in str(e.details) or GOOD in str(e.details) for e in audit_events(store))
