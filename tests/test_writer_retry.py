"""The driver's writes outlast a database that goes away for a while.

The end-to-end test starts its own PostgreSQL server (initdb + pg_ctl into a temporary folder, on
a free loopback port; as the `postgres` user when the tests run as root, since PostgreSQL refuses
to run as root), runs a campaign against it, stops the server mid-run for a few seconds and
starts it again: the run finishes, and every post and media item the platform served is stored
exactly once. The shared server the other tests use is never touched.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from orchestrator.writer_retry import (
    MAX_WAIT_ENV,
    DatabaseUnavailable,
    RetryingStore,
    is_transient,
    max_wait_from_env,
)
from storage.db import StorageError, Store

PG_BIN = Path(os.environ.get("DEEPWATCH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_error() -> sa.exc.OperationalError:
    """A real "connection refused" from psycopg through SQLAlchemy (nothing listens on the port)."""
    engine = sa.create_engine(f"postgresql+psycopg://x@127.0.0.1:{free_port()}/x", connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a connection to a closed port succeeded")


# -- the wrapper alone (fast) ------------------------------------------------------------------
def test_lost_connections_and_sqlite_locks_are_transient_bad_writes_are_not(tmp_path):
    assert is_transient(refused_error())
    db = tmp_path / "locked.db"
    holder = sa.create_engine(f"sqlite:///{db}")
    waiter = sa.create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.05})
    with holder.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        conn.commit()
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        with pytest.raises(sa.exc.OperationalError) as locked, waiter.connect() as other:
            other.exec_driver_sql("INSERT INTO t VALUES (1)")
        conn.rollback()
    assert "database is locked" in str(locked.value) and is_transient(locked.value)
    with waiter.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        conn.commit()
        with pytest.raises(sa.exc.IntegrityError) as dup:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(sa.exc.OperationalError) as bad:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert not is_transient(dup.value) and not is_transient(bad.value)
    holder.dispose()
    waiter.dispose()


def test_retries_until_the_database_answers_then_gives_up_naming_it(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'dw.db'}")
    retried: list[str] = []
    writer = RetryingStore(store, max_wait_s=30, on_retry=lambda op, exc: retried.append(op))
    failures = [refused_error(), refused_error()]

    def flaky_write(name: str) -> int:
        if failures:
            raise failures.pop()
        return store.upsert_campaign(name, "name: x\n")

    campaign_id = writer.call(flaky_write, "c1")
    assert retried == ["flaky_write", "flaky_write"]
    assert writer.get_campaign("c1").id == campaign_id  # methods of the Store go through it too

    always_down = RetryingStore(store, max_wait_s=1.0)
    error = refused_error()
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match=r"unreachable for \d+ s \(limit 1 s, DEEPWATCH_DB_RETRY_S\)"):
        always_down.call(lambda: (_ for _ in ()).throw(error))
    assert time.monotonic() - t0 < 5
    assert store.get_campaign("c1") is not None  # what was saved before stays
    with pytest.raises(sa.exc.IntegrityError):  # a wrong write is not retried
        writer.call(lambda: (_ for _ in ()).throw(sa.exc.IntegrityError("INSERT", {}, Exception("dup"))))
    store.close()


def _ack_lost_once(fn):
    """`fn` whose first call commits and then fails as if the connection dropped before the
    server's acknowledgement arrived (the write is in the database, the caller sees an error)."""
    calls = []

    def flaky(*args, **kwargs):
        result = fn(*args, **kwargs)
        calls.append(result)
        if len(calls) == 1:
            raise refused_error()
        return result

    flaky.__name__ = fn.__name__
    return flaky


def test_custody_appends_and_seals_retried_after_a_lost_ack_are_written_once(store, blobs, tmp_path):
    from sqlmodel import select

    from evidence.custody import append_event, verify_chain
    from evidence.seal import seal_evidence
    from evidence.signing import Signer
    from storage import models as m
    from tests.evidence_factory import make_evidence

    ev_id = make_evidence(store, blobs)
    writer = RetryingStore(store, max_wait_s=30, sleep=lambda s: None)
    first = writer.call(_ack_lost_once(append_event), store, ev_id, "analysed", "campaign:c", {"verdict": "likely_fake"},
                        request_id="campaign-1/evidence-1/analysed")
    again = append_event(store, ev_id, "analysed", "campaign:c", {"verdict": "likely_fake"}, request_id="campaign-1/evidence-1/analysed")
    seal = writer.call(_ack_lost_once(seal_evidence), store, ev_id, Signer.load_or_create(tmp_path / "keys"),
                       request_id="campaign-1/evidence-1/sealed")
    with store.session() as s:
        events = s.exec(select(m.CustodyEvent).where(m.CustodyEvent.evidence_id == ev_id)).all()
        seals = s.exec(select(m.Seal).where(m.Seal.evidence_id == ev_id)).all()
    assert [e.action for e in events].count("analysed") == 1 and again.seq == first.seq
    assert [e.action for e in events].count("sealed") == 1 and [x.id for x in seals] == [seal.id]
    assert verify_chain(store) == []
    # Without a request id a retry cannot know its write landed: the event is doubled (this is
    # why the campaign names every evidence step it logs).
    writer.call(_ack_lost_once(append_event), store, ev_id, "noted", "someone", {})
    with store.session() as s:
        assert len(s.exec(select(m.CustodyEvent).where(m.CustodyEvent.action == "noted")).all()) == 2


def test_the_retry_bound_setting_is_checked():
    assert max_wait_from_env({}) == 120
    assert max_wait_from_env({MAX_WAIT_ENV: "5"}) == 5
    with pytest.raises(StorageError, match=MAX_WAIT_ENV):
        max_wait_from_env({MAX_WAIT_ENV: "two minutes"})


# -- a private PostgreSQL stopped mid-campaign -------------------------------------------------
class PrivatePostgres:
    """A throw-away PostgreSQL server in a temporary folder, on its own loopback port."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (set DEEPWATCH_PG_BIN)")
        self.as_user: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="dw-pg-"))
        if os.geteuid() == 0:  # the server refuses to run as root: use the postgres account
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: cannot start a private PostgreSQL")
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: object) -> None:
        done = subprocess.run([*self.as_user, *map(str, args)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-o", opts, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg():
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.destroy()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_campaign_survives_postgres_restart_mid_run(private_pg, tmp_path, monkeypatch):
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec
    from tests.test_resume import assert_complete, served_posts, spec_data

    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    world = build_world(seed=7, n_posts=40)
    platform = DemoPlatform(world)
    platform.start()
    outage: dict[str, float] = {}

    def restart_postgres() -> None:
        outage["down"] = time.monotonic()
        private_pg.stop()
        time.sleep(4)
        private_pg.start()
        outage["up"] = time.monotonic()

    def chaos(counts: Counter) -> None:
        # Mid-run: some posts and media are stored, more are coming. The outage runs in its own
        # thread, so the driver meets it in whatever write it is doing.
        if counts["media_fetched"] >= 3 and "thread" not in outage:
            outage["thread"] = 1
            threading.Thread(target=restart_postgres, daemon=True).start()

    data = spec_data(tmp_path, platform.base_url, name="pg-restart")
    data["storage"]["database"] = private_pg.url
    data["sources"][0]["params"]["page_size"] = 3
    try:
        campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), progress=chaos, db_retry_s=60)
        report = campaign.run()
    finally:
        platform.stop()
    assert "up" in outage, "the server was stopped and started during the run"
    assert report["stages"]["db"]["retries"] >= 1, "the driver met the outage and retried"
    expect = served_posts(world)
    assert report["counts"]["posts_new"] == len(expect)
    assert_complete(private_pg.url, world, expect)
    store = Store(private_pg.url)
    assert store.get_campaign("pg-restart").status == "finished"
    store.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_database_gone_for_good_fails_the_run_clearly(private_pg, tmp_path, monkeypatch):
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec
    from tests.test_resume import spec_data

    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    platform = DemoPlatform(build_world(seed=7, n_posts=40))
    platform.start()
    stopped: list[bool] = []

    def stop_for_good(counts: Counter) -> None:
        if counts["posts_new"] >= 3 and not stopped:
            stopped.append(True)
            private_pg.stop()

    data = spec_data(tmp_path, platform.base_url, name="pg-gone")
    data["storage"]["database"] = private_pg.url
    try:
        campaign = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True), progress=stop_for_good, db_retry_s=3)
        with pytest.raises(DatabaseUnavailable, match="unreachable for .* campaign resume"):
            campaign.run()
    finally:
        platform.stop()
    private_pg.start()
    store = Store(private_pg.url)
    try:
        with store.session() as s:
            posts = s.exec(sa.text("select count(*) from post")).one()[0]
        assert posts >= 3  # what was written before the outage is kept
        assert store.get_campaign("pg-gone").status == "running"  # resumable: not marked finished
    finally:
        store.close()
