"""Login throttling (issue 16): one NFC normalisation, atomic counting in the database, and an
exponential backoff per (account, client address) instead of a lock anyone can trigger.

    begin_attempt(store, username, ip) -> float   0.0 if this attempt may be evaluated, else seconds to wait
    attempt_succeeded(store, username, ip)        forget the pair's attempts
    unlock(store, username) -> int                an admin clears an account's rows (`deepwatch user unlock`)
    throttle_name(username) -> str                the account name the counts are kept under

An attempt is counted *before* the password is checked, in one UPDATE ... WHERE next_allowed <= now
... RETURNING: concurrent guesses each get their own count, and once past the free attempts only one
request per backoff window is evaluated. A guesser from one address slows down only that address's
attempts on that account; the owner logging in from elsewhere is not locked out. A separate, larger
allowance per address limits guessing across many accounts.
"""
from __future__ import annotations

import time
import unicodedata

import sqlalchemy as sa

from console.auth import AuthError, normalise_username
from storage.db import Store

FREE_PER_PAIR = 5  # wrong passwords per (account, address) before the backoff starts
FREE_PER_ADDRESS = 50  # attempts per address across all accounts
BASE_DELAY_S = 1.0
MAX_DELAY_S = 15 * 60.0
FORGET_AFTER_S = 15 * 60.0  # an idle row starts over
_TABLE = sa.table("loginthrottle", sa.column("key"), sa.column("account"), sa.column("attempts"),
                  sa.column("next_allowed"), sa.column("last_at"))


def throttle_name(username: object) -> str:
    """The one normalisation used for counting and for login (NFC; the stored username form)."""
    if not isinstance(username, str):
        return ""
    try:
        return normalise_username(username)
    except AuthError:  # cannot log in anyway; still counted, under its NFC spelling
        return unicodedata.normalize("NFC", username)[:64]


def delay_after(attempts: int, free: int) -> float:
    """Seconds to wait after the attempts-th attempt: none while free, then 1, 2, 4... capped."""
    if attempts <= free:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(attempts - free - 1, 30))


def _delay_sql(count: sa.ColumnElement, free: int) -> sa.ColumnElement:
    # The delay as a CASE over the new count, so the whole decision is one statement.
    whens = [(count <= free, 0.0)]
    n = free + 1
    while delay_after(n, free) < MAX_DELAY_S:
        whens.append((count == n, delay_after(n, free)))
        n += 1
    return sa.case(*whens, else_=MAX_DELAY_S)


def _dialect_insert(conn: sa.Connection):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise RuntimeError(f"login throttling supports SQLite and PostgreSQL, not {conn.dialect.name}")
    return insert


def _take(conn: sa.Connection, key: str, account: str, free: int, now: float) -> float:
    """Count one attempt under `key` atomically; 0.0 if allowed, else seconds until it would be."""
    insert = _dialect_insert(conn)(_TABLE).values(key=key, account=account, attempts=0, next_allowed=0.0, last_at=now)
    conn.execute(insert.on_conflict_do_nothing(index_elements=["key"]))  # the row may exist already
    stale = _TABLE.c.last_at < now - FORGET_AFTER_S
    count = sa.case((stale, 1), else_=_TABLE.c.attempts + 1)
    row = conn.execute(
        sa.update(_TABLE)
        .where(_TABLE.c.key == key, sa.or_(_TABLE.c.next_allowed <= now, stale))
        .values(attempts=count, next_allowed=now + _delay_sql(count, free), last_at=now)
        .returning(_TABLE.c.attempts)
    ).first()
    if row is not None:
        return 0.0
    waiting = conn.execute(sa.select(_TABLE.c.next_allowed).where(_TABLE.c.key == key)).scalar()
    return max(0.001, float(waiting or now) - now)


def begin_attempt(store: Store, username: object, ip: str, now: float | None = None) -> float:
    """Reserve one login attempt; 0.0 if it may go ahead, else how many seconds to wait."""
    now = time.time() if now is None else now
    account = throttle_name(username)
    with store.engine.begin() as conn:
        wait = _take(conn, f"ip:{ip}", "", FREE_PER_ADDRESS, now)
        if wait:
            return wait
        return _take(conn, f"pair:{account}|{ip}", account, FREE_PER_PAIR, now)


def attempt_succeeded(store: Store, username: object, ip: str) -> None:
    """A right password: the pair starts over (the address allowance keeps counting down slowly)."""
    account = throttle_name(username)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(_TABLE).where(_TABLE.c.key == f"pair:{account}|{ip}"))
        conn.execute(sa.update(_TABLE).where(_TABLE.c.key == f"ip:{ip}", _TABLE.c.attempts > 0)
                     .values(attempts=_TABLE.c.attempts - 1))


def unlock(store: Store, username: str) -> int:
    """Clear every backoff on an account (from any address); how many rows were cleared."""
    account = normalise_username(username)
    with store.engine.begin() as conn:
        return conn.execute(sa.delete(_TABLE).where(_TABLE.c.account == account)).rowcount or 0
