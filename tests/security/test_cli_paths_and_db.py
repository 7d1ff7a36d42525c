"""Issue 16, findings 7 and 9: a mistyped --db made a new empty database and answered "nothing
found"; `campaign validate` accepted mysql:// and sqlite:////etc/passwd; export paths that are files,
under files or unwritable, and ids beyond 64 bits, ended in tracebacks."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.db_checks import DatabaseCheckError, check_database_url, check_existing_database
from storage.blobs import BlobStore
from storage.db import Store
from tests.evidence_factory import make_evidence

pytestmark = pytest.mark.timeout(180)
HUGE = "1" + "0" * 25


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def env(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'dw.db'}"
    blobs = tmp_path / "blobs"
    monkeypatch.setenv("DEEPWATCH_DB", db)
    monkeypatch.setenv("DEEPWATCH_BLOBS", str(blobs))
    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    store = Store(db)
    ev = make_evidence(store, BlobStore(blobs))
    store.close()
    return tmp_path, ev


def test_mistyped_db_is_refused_not_created(env):
    tmp, _ = env
    typo = tmp / "dw-typo.db"
    for args in (["evidence", "list"], ["evidence", "show", "1"], ["takedown", "list"], ["evidence", "history", "1"]):
        result = cli(*args, "--db", f"sqlite:///{typo}")
        assert result.exit_code != 0 and "no database at" in result.output, (args, result.output)
    assert not typo.exists()
    other = tmp / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("create table t (x)").connection.close()
    result = cli("evidence", "list", "--db", f"sqlite:///{other}")
    assert result.exit_code != 0 and "not a deepwatch database" in result.output


def test_unsupported_schemes_and_foreign_files_are_rejected(env, tmp_path):
    for url, message in (("mysql://u:p@h/db", "unsupported database URL scheme"),
                         ("sqlite:////etc/passwd", "not a SQLite database"),
                         (f"sqlite:///{tmp_path}", "not a file")):
        with pytest.raises(DatabaseCheckError, match=message):
            check_database_url(url)
        spec = tmp_path / "c.yaml"
        spec.write_text(f"name: c\nstorage:\n  database: '{url}'\nsources:\n  - name: d\n    type: demo_api\n"
                        "    params: {base_url: embedded}\nkeywords: [x]\n", "utf-8")
        result = cli("campaign", "validate", str(spec))
        assert result.exit_code != 0 and message in result.output, result.output
    assert check_existing_database(env[0].joinpath("dw.db").as_posix()).startswith("sqlite:///")


def test_export_paths_and_huge_ids_are_errors_not_tracebacks(env):
    tmp, ev = env
    a_file = tmp / "exists.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub", "/proc/x"):
        for args in (["evidence", "export", str(ev), str(out), "--actor", "auditor"],
                     ["takedown", "build", str(ev), "--platform", "demo", "--out", str(out), "--actor", "auditor",
                      "--allow-unreviewed"]):
            result = cli(*args)
            assert result.exit_code == 1 and "error" in result.output, (args, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    for args in (["evidence", "export", HUGE, str(tmp / "new"), "--actor", "auditor"],
                 ["takedown", "build", HUGE, "--platform", "demo", "--out", str(tmp / "new2"), "--actor", "auditor"]):
        result = cli(*args)
        assert result.exit_code == 1 and "not a valid evidence id" in result.output, result.output
        assert isinstance(result.exception, SystemExit)
