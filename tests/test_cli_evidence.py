"""The investigators' evidence commands, run as a person would: review, assess, seal, verify,
history, takedown build / verify / status / list, liveness, db backup / restore. On SQLite and
PostgreSQL, with a real loopback RFC 3161 authority and Chromium for the PDF."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from orchestrator.cli import app
from storage.blobs import BlobStore
from storage.db import Store
from tests.evidence_factory import make_evidence
from tests.replay import ReplayServer
from tests.tsa_server import TimestampAuthority

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(tmp_path, monkeypatch, store_url):
    db = store_url
    blobs = tmp_path / "blobs"
    monkeypatch.setenv("DEEPWATCH_DB", db)
    monkeypatch.setenv("DEEPWATCH_BLOBS", str(blobs))
    monkeypatch.setenv("DEEPWATCH_KEY_DIR", str(tmp_path / "keys"))
    store = Store(db)
    ids = [make_evidence(store, BlobStore(blobs), seed=n) for n in (1, 2)]
    store.close()
    with TimestampAuthority() as tsa:
        cert = tmp_path / "tsa-ca.pem"
        cert.write_bytes(tsa.ca_cert_pem)
        monkeypatch.setenv("DEEPWATCH_TSA_URL", tsa.url)
        monkeypatch.setenv("DEEPWATCH_TSA_CERT", str(cert))
        yield tmp_path, ids, db


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_seal_verify_tamper_review_reseal(env):
    tmp, (ev1, ev2), db = env
    sealed = cli("evidence", "seal", "--all")
    assert sealed.exit_code == 0, sealed.output
    assert f"evidence {ev1} sealed" in sealed.output and "timestamped by http://127.0.0.1" in sealed.output

    clean = cli("evidence", "verify", "--all")
    assert clean.exit_code == 0, clean.output
    assert "TAMPERED" not in clean.output and "custody log: intact" in clean.output

    store = Store(db)
    with store.engine.begin() as conn:  # someone edits the database behind deepwatch's back
        conn.execute(text("update evidence set score = 0.2 where id = :id"), {"id": ev1})
    store.close()
    tampered = cli("evidence", "verify", str(ev1))
    assert tampered.exit_code == 1
    assert "TAMPERED" in tampered.output and "score" in tampered.output and "0.93" in tampered.output

    # Nothing builds on the edited row: a review, an assessment, a re-seal and a takedown are
    # refused, each refusal is logged, and verify still says TAMPERED afterwards.
    review = cli("evidence", "review", str(ev1), "--confirm", "--reviewer", "lee", "--rationale", "looks fake")
    assert review.exit_code == 2 and "does not match its last seal" in " ".join(review.output.split())
    assert cli("evidence", "assess", str(ev1), "--actor", "lee", "--purpose", "yes").exit_code == 2
    reseal = cli("evidence", "seal", str(ev1), "--actor", "lee")
    assert reseal.exit_code == 1 and "score" in reseal.output
    packet = cli("takedown", "build", str(ev1), "--platform", "demo", "--out", str(tmp / "p1"), "--actor", "lee",
                 "--allow-unreviewed")
    assert packet.exit_code == 1 and "does not match its last seal" in " ".join(packet.output.split())
    assert not (tmp / "p1").exists()
    assert cli("evidence", "verify", str(ev1)).exit_code == 1
    refusals = cli("evidence", "history", str(ev1), "--json").output
    assert refusals.count('"integrity_refused"') == 4 and '"attempted": "takedown build"' in refusals

    reviewed = cli("evidence", "review", str(ev2), "--confirm", "--reviewer", "kim",
                   "--rationale", "jaw seams; original clip found", "--case", "NEC-2026-7")
    assert reviewed.exit_code == 0, reviewed.output
    assert "confirmed by kim; 2 hash(es) banked" in reviewed.output and f"evidence {ev2} sealed" in reviewed.output
    assessed = cli("evidence", "assess", str(ev2), "--actor", "kim", "--purpose", "yes", "--ai-label", "no")
    assert assessed.exit_code == 0, assessed.output
    assert "campaign purpose yes" in assessed.output
    after = cli("evidence", "verify", str(ev2))
    assert after.exit_code == 0, after.output  # re-sealed after each legitimate change

    history = cli("evidence", "history", str(ev2))
    assert [w for w in ("sealed", "reviewed", "assessed") if w in history.output] == ["sealed", "reviewed", "assessed"]

    bad = cli("evidence", "assess", str(ev2), "--actor", "kim", "--purpose", "maybe")
    assert bad.exit_code == 2 and "answer yes, no or unknown" in bad.output


def test_takedown_packet_and_tracking(env):
    tmp, ids, _ = env
    out = tmp / "packet"
    unreviewed = cli("takedown", "build", *map(str, ids), "--platform", "demo", "--out", str(out), "--actor", "kim")
    assert unreviewed.exit_code == 1 and "--allow-unreviewed" in " ".join(unreviewed.output.split())
    built = cli("takedown", "build", *map(str, ids), "--platform", "demo", "--out", str(out), "--actor", "kim",
                "--allow-unreviewed")
    assert built.exit_code == 0, built.output
    assert "takedown request 1 (drafted) for demo" in built.output
    assert (out / "notice.pdf").read_bytes().startswith(b"%PDF")
    assert cli("takedown", "verify", str(out)).exit_code == 0
    (out / "notice.json").write_text("{}", "utf-8")
    broken = cli("takedown", "verify", str(out))
    assert broken.exit_code == 1 and "notice.json" in " ".join(broken.output.split())

    assert "drafted -> sent" in cli("takedown", "status", "1", "sent", "--actor", "kim").output
    refused = cli("takedown", "status", "1", "drafted", "--actor", "kim")
    assert refused.exit_code == 2
    listed = cli("takedown", "list", "--json")
    assert '"status": "sent"' in listed.output

    exported = cli("evidence", "history", str(ids[0]), "--json").output
    assert '"action": "exported"' in exported and '"actor": "kim"' in exported
    again = cli("takedown", "build", str(ids[0]), "--platform", "demo", "--out", str(out), "--actor", "kim",
                "--allow-unreviewed")
    assert again.exit_code == 1 and "not empty" in " ".join(again.output.split())


def test_liveness_marks_a_removed_post(env, monkeypatch):
    tmp, ids, db = env
    store = Store(db)
    with ReplayServer() as srv:
        srv.route("/p/1", body="<html>gone soon</html>", content_type="text/html")
        with store.session() as s:
            from storage import models as m

            for ev in ids:
                row = s.get(m.Evidence, ev)
                row.post_url = f"{srv.base_url}/p/{ev}"
                row.media_url = f"{srv.base_url}/m/{ev}.jpg"
                s.add(row)
            s.commit()
        first = cli("evidence", "liveness", "--allow-network", "127.0.0.0/8")
        assert first.exit_code == 0, first.output
        assert f"evidence {ids[0]}: live" in first.output and f"evidence {ids[1]}: gone" in first.output
    store.close()


def test_backup_restore_keeps_seals_valid(env, tmp_path):
    tmp, ids, _ = env
    assert cli("evidence", "seal", "--all").exit_code == 0
    archive = tmp / "backup.tar.gz"
    made = cli("db", "backup", str(archive))
    assert made.exit_code == 0, made.output
    assert "evidence 2" in made.output and "seal 2" in made.output
    assert cli("db", "verify-backup", str(archive)).exit_code == 0

    target = f"sqlite:///{tmp / 'restored.db'}"
    restored = cli("db", "restore", str(archive), "--db", target, "--blobs", str(tmp / "restored-blobs"))
    assert restored.exit_code == 0, restored.output
    again = cli("db", "restore", str(archive), "--db", target, "--blobs", str(tmp / "restored-blobs"))
    assert again.exit_code == 1 and "force" in again.output  # a database with data is not overwritten
    check = cli("evidence", "verify", "--all", "--db", target, "--blobs", str(tmp / "restored-blobs"))
    assert check.exit_code == 0, check.output
    assert "custody log: intact" in check.output
    assert "already at" in cli("db", "upgrade", "--db", target).output
