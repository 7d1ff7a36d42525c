"""The driver's database writes, made to outlast a database that goes away for a while.

Every `Store` method is one unit of work (its own session, one commit) keyed by natural identity,
so running it again after a lost connection writes nothing twice. `RetryingStore` wraps a Store:
each method call (and any function given to `call`, e.g. the custody log's `append_event`) that
fails because the connection is gone waits with capped exponential backoff, drops the pool's
dead connections and runs again, until `max_wait_s` has passed; then it raises
`DatabaseUnavailable`, and everything committed before stays committed (a `campaign resume`
picks up from there).

What counts as "gone" (transient): a DBAPI error whose connection SQLAlchemy marked invalid,
psycopg's OperationalError family (server shut down, connection refused or reset), a pool
timeout, and SQLite's "database is locked" / "database is busy". Anything else (a constraint,
a bad query) is a bug or bad data and is raised at once.
"""
from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import exc as sa_exc

from storage.db import StorageError

log = logging.getLogger(__name__)

DEFAULT_MAX_WAIT_S = 120.0
MAX_WAIT_ENV = "DEEPWATCH_DB_RETRY_S"
_FIRST_DELAY_S = 0.2
_MAX_DELAY_S = 5.0
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "database table is locked")


class DatabaseUnavailable(StorageError):
    """The database stayed unreachable past the retry bound."""


def max_wait_from_env(environ: dict[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(MAX_WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        raise StorageError(f"{MAX_WAIT_ENV} must be a number of seconds; got {raw!r}") from None
    if value < 0:
        raise StorageError(f"{MAX_WAIT_ENV} must not be negative; got {raw!r}")
    return value


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the connection is (for now) gone, not that the write is wrong."""
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        orig = error.orig
        if _is_psycopg_operational(orig):
            return True
        if isinstance(error, sa_exc.OperationalError) and any(t in str(orig).lower() for t in _SQLITE_TRANSIENT):
            return True
        return False
    return _is_psycopg_operational(error)


def _is_psycopg_operational(error: BaseException | None) -> bool:
    try:
        import psycopg
    except ImportError:  # SQLite-only installs
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


class RetryingStore:
    """A Store whose every method call is retried across a lost connection.

    `on_retry(operation, error)` is told about each retry (the run's metrics count them).
    `session()` is handed through as it is: a caller that opens sessions itself wraps the whole
    unit of work in `call`.
    """

    def __init__(self, store: Any, *, max_wait_s: float | None = None,
                 on_retry: Callable[[str, BaseException], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.store = store
        self.max_wait_s = max_wait_from_env() if max_wait_s is None else max_wait_s
        self.on_retry = on_retry or (lambda op, exc: None)
        self._sleep = sleep

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` (one idempotent unit of work) until it succeeds or the bound passes."""
        name = getattr(fn, "__name__", repr(fn))
        started = time.monotonic()
        delay = _FIRST_DELAY_S
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                waited = time.monotonic() - started
                if waited >= self.max_wait_s:
                    raise DatabaseUnavailable(
                        f"the database {self.store.redacted_url} was unreachable for {waited:.0f} s "
                        f"(limit {self.max_wait_s:g} s, {MAX_WAIT_ENV}) during {name}: {_first_line(exc)}. "
                        "Everything written before is kept; 'deepwatch campaign resume' goes on from there."
                    ) from exc
                attempt += 1
                self.on_retry(name, exc)
                log.warning("database write %s failed (%s); retry %d in %.1f s", name, _first_line(exc), attempt, delay)
                # The pool's connections died with the server: drop them so the next try connects anew.
                self.store.engine.dispose()
                self._sleep(min(delay, max(0.0, self.max_wait_s - waited)) * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, _MAX_DELAY_S)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name.startswith("_") or name in ("session", "close") or not callable(attr):
            return attr

        def retried(*args: Any, **kwargs: Any) -> Any:
            return self.call(attr, *args, **kwargs)

        retried.__name__ = name
        return retried


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0][:200] if text else type(orig).__name__
