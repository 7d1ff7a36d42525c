"""Issue 16, finding 2: login throttling. The NFD spelling of a locked NFC name was not throttled;
concurrent wrong passwords were all evaluated; anyone could lock any account; no admin unlock."""
from __future__ import annotations

import re
import threading
import unicodedata

import pytest
from fastapi.testclient import TestClient

from console.app import create_app
from console.auth import create_user
from console.throttle import FREE_PER_PAIR, begin_attempt, delay_after, throttle_name, unlock
from storage.db import Store

pytestmark = pytest.mark.timeout(240)

PASSWORD = "correct horse battery staple"
NAME = "관리자"  # NFC; its NFD spelling is the separate jamo


@pytest.fixture
def app(store_url, tmp_path):
    store = Store(store_url)
    create_user(store, NAME, PASSWORD, role="admin")
    create_user(store, "kim", PASSWORD, role="investigator")
    application = create_app(store_url, str(tmp_path / "blobs"))
    yield application
    application.state.console.store.close()
    store.close()


def attempt(client: TestClient, username: str, password: str) -> int:
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf},
                       follow_redirects=False).status_code


def test_nfd_spelling_is_throttled_with_the_nfc_account(app):
    nfd = unicodedata.normalize("NFD", NAME)
    assert nfd != NAME and throttle_name(nfd) == NAME
    client = TestClient(app)
    results = [attempt(client, NAME, f"wrong password {i}") for i in range(FREE_PER_PAIR + 2)]
    assert results[-1] == 429
    assert attempt(client, nfd, PASSWORD) == 429  # the other spelling is the same account


def test_concurrent_wrong_passwords_are_counted_atomically(app):
    results: list[int] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        status = attempt(TestClient(app), "kim", f"wrong password {i}")
        with lock:
            results.append(status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    # Each attempt took its own count: the free ones plus one past them were evaluated, no more.
    assert results.count(401) <= FREE_PER_PAIR + 1 and results.count(429) >= 12 - FREE_PER_PAIR - 1


def test_a_guesser_does_not_lock_the_owner_out_and_an_admin_can_unlock(app, store_url):
    attacker = TestClient(app, client=("203.0.113.9", 40000))
    for i in range(FREE_PER_PAIR + 3):
        attempt(attacker, "kim", f"wrong password {i}")
    assert attempt(attacker, "kim", PASSWORD) == 429  # the guessing address waits
    owner = TestClient(app, client=("198.51.100.7", 40001))
    assert attempt(owner, "kim", PASSWORD) == 303  # the owner elsewhere is not locked out
    store = Store(store_url)
    try:
        assert unlock(store, "kim") >= 1
    finally:
        store.close()
    assert attempt(attacker, "kim", PASSWORD) == 303  # after the admin's unlock


def test_backoff_grows_and_is_capped(store):
    assert [delay_after(n, 5) for n in (5, 6, 7, 8)] == [0.0, 1.0, 2.0, 4.0] and delay_after(60, 5) == 15 * 60
    now = 1_000_000.0
    waits = [begin_attempt(store, "nobody", "192.0.2.1", now=now) for _ in range(FREE_PER_PAIR + 1)]
    assert waits == [0.0] * (FREE_PER_PAIR + 1)
    assert begin_attempt(store, "nobody", "192.0.2.1", now=now) == pytest.approx(1.0)
    assert begin_attempt(store, "nobody", "192.0.2.1", now=now + 1.0) == 0.0  # waited out
    assert begin_attempt(store, "nobody", "192.0.2.1", now=now + 1.5) == pytest.approx(1.5)  # then 2 s


def test_cli_unlock_and_passwd_refusing_the_current_password(store):
    from typer.testing import CliRunner

    from orchestrator.cli import app as cli

    create_user(store, "lee", PASSWORD, role="viewer")
    for _ in range(FREE_PER_PAIR + 2):
        begin_attempt(store, "lee", "192.0.2.5")
    assert begin_attempt(store, "lee", "192.0.2.5") > 0
    done = CliRunner().invoke(cli, ["user", "unlock", "lee", "--db", store.url])
    assert done.exit_code == 0, done.output
    assert begin_attempt(store, "lee", "192.0.2.5") == 0.0
    missing = CliRunner().invoke(cli, ["user", "unlock", "nobody", "--db", store.url])
    assert missing.exit_code == 2 and "no user named" in missing.output
    same = CliRunner().invoke(cli, ["user", "passwd", "lee", "--password-stdin", "--db", store.url], input=PASSWORD + "\n")
    assert same.exit_code == 2 and "current one" in same.output
