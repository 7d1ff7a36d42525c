"""Shared fixtures: databases (SQLite file and a real PostgreSQL), blob stores, fixture paths."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def fixtures_dir() -> Path:
    """The third-party fixtures folder; CI must have it, a user's clone may not."""
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"fixtures folder {FIXTURES} is missing in CI")
        pytest.skip(f"third-party fixtures not present at {FIXTURES}")
    return FIXTURES


def _pg_admin_url() -> str | None:
    url = os.environ.get("DEEPWATCH_TEST_PG_URL")
    if not url and os.environ.get("CI"):
        pytest.fail("DEEPWATCH_TEST_PG_URL is not set in CI: .ci/run must start PostgreSQL and set it")
    return url


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin_url()
    if not admin:
        pytest.skip("PostgreSQL tests need DEEPWATCH_TEST_PG_URL (set by .ci/run)")
    import sqlalchemy as sa

    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.rsplit("/", 1)[0] + "/" + name
    yield url
    _drop_database(engine, name)
    engine.dispose()


def _drop_database(engine, name: str) -> None:
    """DROP ... WITH (FORCE) cannot end an autovacuum worker (it runs as the superuser) and then
    fails with InsufficientPrivilege; autovacuum passes in a moment, so try again briefly."""
    import time

    import sqlalchemy as sa

    for attempt in range(20):
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.DBAPIError as exc:
            if "InsufficientPrivilege" not in type(exc.orig).__name__ or attempt == 19:
                raise
            time.sleep(0.5)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Every storage test runs on a SQLite file and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'deepwatch.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    from storage.db import Store

    s = Store(store_url)
    yield s
    s.close()


@pytest.fixture
def blobs(tmp_path):
    from storage.blobs import BlobStore

    return BlobStore(tmp_path / "blobs")


@pytest.fixture(scope="session")
def demo_platform_small():
    """The real bundled demo platform on a small world: (base_url, world)."""
    from demo_platform.server import DemoPlatform
    from demo_platform.world import build_world

    world = build_world(seed=7, n_posts=30)
    platform = DemoPlatform(world)
    base = platform.start()
    yield base, world
    platform.stop()


@pytest.fixture
def fetcher():
    """A fetcher allowed onto loopback, with short timeouts: for agents tested against local servers."""
    from agents.fetch import Fetcher, FetchPolicy

    with Fetcher(FetchPolicy(allow_networks=("127.0.0.0/8",), timeout_s=2, total_timeout_s=5, backoff_s=0.05)) as f:
        yield f
