"""Console accounts: passwords, browser sessions, API tokens and roles.

Nothing secret is stored in the clear: passwords as argon2id hashes, session cookies and API
tokens as the sha256 of a 256-bit random value (a database leak yields nothing that logs in).
Roles are ordered; each can do what the ones before it can.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from storage.db import Store, as_utc
from storage.models import ApiToken, User, WebSession, utcnow

ROLES = ("viewer", "investigator", "admin")  # each role can do what the ones before it can

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
MAX_TOKEN_NAME_CHARS = 100
TOKEN_PREFIX = "dw_"
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is a hint, not a write per request

# Letters (any script, Korean included), digits and . _ - @ ; `\w` covers letters, digits and _.
_USERNAME = re.compile(r"[\w.@-]{1,64}")

# argon2-cffi's defaults are argon2id with the RFC 9106 "low memory" profile (t=3, 64 MiB, p=4).
_hasher = PasswordHasher()
_dummy_hash: str | None = None


class AuthError(ValueError):
    """A bad account operation (unknown user, weak password...); the message says what."""


# -- passwords ----------------------------------------------------------------------------------
def hash_password(pw: str) -> str:
    return _hasher.hash(pw)


def verify_password(hash: str, pw: str) -> bool:  # noqa: A002  (the contract's name)
    try:
        return _hasher.verify(hash, pw)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _check_password(username: str, password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"password too short: it needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AuthError(f"password too long: at most {MAX_PASSWORD_CHARS} characters")
    if not password.strip():
        raise AuthError("password must not be only spaces")
    if password.strip().casefold() == username.casefold():
        raise AuthError("password must not be the username")
    if len(set(password)) == 1:
        raise AuthError("password must not be one character repeated")


def normalise_username(username: str) -> str:
    """The stored form of a username, or AuthError saying what is wrong with it. NFC, so a Korean name typed as composed syllables or as separate jamo is one account."""
    if not isinstance(username, str):
        raise AuthError("username must be text")
    name = unicodedata.normalize("NFC", username)
    if not _USERNAME.fullmatch(name):
        raise AuthError(
            f"invalid username {username!r}: use 1-64 letters, digits, '.', '_', '-' or '@'"
        )
    return name


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")


# -- users --------------------------------------------------------------------------------------
def _user_row(s: Session, username: str) -> User | None:
    return s.exec(select(User).where(User.username == username)).first()


def _require_user(s: Session, username: str) -> User:
    name = normalise_username(username)
    user = _user_row(s, name)
    if user is None:
        raise AuthError(f"no user named {name!r}")
    return user


def get_user(store: Store, username: str) -> User | None:
    """The account called `username`, or None (also for a name that could never be valid)."""
    try:
        name = normalise_username(username)
    except AuthError:
        return None
    with store.session() as s:
        return _user_row(s, name)


def list_users(store: Store) -> list[User]:
    with store.session() as s:
        return list(s.exec(select(User).order_by(User.username)))


def create_user(store: Store, username: str, password: str, role: str = "viewer") -> User:
    name = normalise_username(username)
    _check_role(role)
    _check_password(name, password)
    with store.session() as s:
        if _user_row(s, name) is not None:
            raise AuthError(f"user {name!r} already exists")
        user = User(username=name, password_hash=hash_password(password), role=role, active=True)
        s.add(user)
        try:
            s.commit()
        except IntegrityError as exc:  # created by someone else between the check and the insert
            raise AuthError(f"user {name!r} already exists") from exc
        s.refresh(user)
        return user


def _end_sessions(s: Session, user_id: int, now: datetime) -> None:
    for row in s.exec(select(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))):
        row.revoked_at = now
        s.add(row)


def _revoke_tokens(s: Session, user_id: int, now: datetime) -> None:
    for row in s.exec(select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))):
        row.revoked_at = now
        s.add(row)


def set_password(store: Store, username: str, password: str) -> User:
    """A new password; every browser session of the user ends (API tokens stay: they are the
    partner systems' credentials, revoked one by one or by revoking the user)."""
    with store.session() as s:
        user = _require_user(s, username)
        _check_password(user.username, password)
        if verify_password(user.password_hash, password):  # a "change" that changes nothing (issue 16)
            raise AuthError("the new password is the current one: choose a different password")
        now = utcnow()
        user.password_hash, user.password_changed_at = hash_password(password), now
        s.add(user)
        _end_sessions(s, user.id, now)
        s.commit()
        s.refresh(user)
        return user


def set_active(store: Store, username: str, active: bool) -> User:
    """Deactivating ("revoking") a user also ends their sessions and revokes their tokens, so
    re-activating later does not bring back old credentials."""
    with store.session() as s:
        user = _require_user(s, username)
        user.active = bool(active)
        s.add(user)
        if not active:
            now = utcnow()
            _end_sessions(s, user.id, now)
            _revoke_tokens(s, user.id, now)
        s.commit()
        s.refresh(user)
        return user


def authenticate(store: Store, username: str, password: str) -> User | None:
    """The user if the password is right and the account active, else None. An unknown name
    costs one argon2 verification like a known one, so timing does not reveal who exists."""
    global _dummy_hash
    user = get_user(store, username) if isinstance(username, str) else None
    password = password if isinstance(password, str) else ""
    if user is None or len(password) > MAX_PASSWORD_CHARS:  # no such user, or no such password
        if _dummy_hash is None:
            _dummy_hash = hash_password(secrets.token_urlsafe(16))
        verify_password(_dummy_hash, password[:MAX_PASSWORD_CHARS])
        return None
    if not verify_password(user.password_hash, password):
        return None
    if not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        # Stored under weaker parameters than today's: upgrade now that we hold the password.
        with store.session() as s:
            row = s.get(User, user.id)
            row.password_hash = hash_password(password)
            s.add(row)
            s.commit()
            s.refresh(row)
            user = row
    return user


def set_role(store: Store, username: str, role: str) -> User:
    """Change a user's role; it applies from their next request (sessions re-read the user)."""
    _check_role(role)
    with store.session() as s:
        user = _require_user(s, username)
        user.role = role
        s.add(user)
        s.commit()
        s.refresh(user)
        return user


def has_role(user: User | None, needed: str) -> bool:
    if needed not in ROLES:
        raise AuthError(f"unknown role {needed!r}: choose one of {', '.join(ROLES)}")
    if user is None or not user.active or user.role not in ROLES:
        return False
    return ROLES.index(user.role) >= ROLES.index(needed)


# -- browser sessions ---------------------------------------------------------------------------
def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def start_session(store: Store, user: User, ttl_s: int = 8 * 3600) -> tuple[str, str]:
    """(cookie value, CSRF token). Only the cookie's sha256 is kept."""
    if ttl_s <= 0:
        raise AuthError(f"session lifetime must be positive, got {ttl_s} s")
    if user is None or user.id is None:
        raise AuthError("cannot start a session without a saved user")
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with store.session() as s:
        row = s.get(User, user.id)
        if row is None or not row.active:
            raise AuthError(f"user {user.username!r} is not active")
        s.add(WebSession(session_sha256=_digest(cookie), user_id=user.id, csrf_token=csrf,
                         created_at=now, expires_at=now + timedelta(seconds=ttl_s)))
        s.commit()
    return cookie, csrf


def session_for(store: Store, cookie_value: str | None) -> tuple[User, WebSession] | None:
    """The live session a cookie names: None if unknown, ended, expired or the user inactive."""
    if not cookie_value or not isinstance(cookie_value, str):
        return None
    with store.session() as s:
        row = s.exec(select(WebSession).where(WebSession.session_sha256 == _digest(cookie_value))).first()
        if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= utcnow():
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
    # SQLite hands times back naive: give callers UTC-aware ones on every backend.
    row.created_at, row.expires_at = as_utc(row.created_at), as_utc(row.expires_at)
    return user, row


def end_session(store: Store, cookie_value: str | None) -> None:
    if not cookie_value or not isinstance(cookie_value, str):
        return
    with store.session() as s:
        row = s.exec(select(WebSession).where(WebSession.session_sha256 == _digest(cookie_value))).first()
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            s.add(row)
            s.commit()


# -- API tokens ---------------------------------------------------------------------------------
def issue_token(store: Store, username: str, name: str) -> str:
    """A new bearer token ("dw_" + 43 url-safe characters), returned this once only."""
    label = (name or "").strip() if isinstance(name, str) else ""
    if not label:
        raise AuthError("a token needs a name saying who or what uses it")
    if len(label) > MAX_TOKEN_NAME_CHARS:
        raise AuthError(f"token name too long: at most {MAX_TOKEN_NAME_CHARS} characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        user = _require_user(s, username)
        if not user.active:
            raise AuthError(f"user {user.username!r} is not active; activate it first")
        s.add(ApiToken(user_id=user.id, name=label, token_sha256=_digest(token)))
        s.commit()
    return token


def user_for_token(store: Store, token: str | None) -> User | None:
    """The active owner of a live token, else None. The lookup is by sha256 digest (indexed),
    so the secret itself is never compared byte by byte against stored values."""
    if not token or not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(token)
    with store.session() as s:
        row = s.exec(select(ApiToken).where(ApiToken.token_sha256 == digest)).first()
        if row is None or not hmac.compare_digest(row.token_sha256, digest) or row.revoked_at is not None:
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        now = utcnow()
        last = as_utc(row.last_used_at)
        if last is None or now - last >= TOKEN_TOUCH_INTERVAL:
            row.last_used_at = now
            s.add(row)
            s.commit()
        return user


def revoke_token(store: Store, token_id: int) -> None:
    """Revoke one token by its id (revoking a revoked one changes nothing)."""
    with store.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise AuthError(f"no API token with id {token_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            s.add(row)
            s.commit()


def list_tokens(store: Store, username: str) -> list[ApiToken]:
    """The user's tokens, oldest first, revoked ones included (their revoked_at is set)."""
    with store.session() as s:
        user = _require_user(s, username)
        rows = list(s.exec(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))
    for row in rows:  # SQLite hands times back naive: make them UTC-aware on every backend
        row.created_at, row.last_used_at, row.revoked_at = (
            as_utc(row.created_at), as_utc(row.last_used_at), as_utc(row.revoked_at))
    return rows
