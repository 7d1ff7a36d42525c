"""The C2PA signer's trust is shown wherever a C2PA finding appears: `evidence show`, the console's
evidence page and takedown packets (issue 22). `scan` is covered in test_c2pa_trust."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from detectors.base import MediaInput
from detectors.c2pa_check import C2PADetector
from detectors.c2pa_trust import TrustSettings
from detectors.fusion import fuse
from evidence.signing import Signer
from evidence.takedown import build_takedown, load_takedown_config
from storage import models as m
from tests.evidence_factory import make_evidence
from tests.test_c2pa import make_signing_chain, plain_jpeg, sign_jpeg
from tests.test_console_api import client_for, console  # noqa: F401  (the console fixture)

pytest.importorskip("c2pa")
pytestmark = pytest.mark.timeout(240)
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


@pytest.fixture
def record(store, blobs, tmp_path):
    """An evidence record whose media carries a C2PA detection read with a trusted test CA."""
    chain = make_signing_chain()
    (tmp_path / "ca.pem").write_bytes(chain[2])
    detector = C2PADetector(trust=TrustSettings.build(anchors=[tmp_path / "ca.pem"]))
    det = detector.detect_one(MediaInput("0" * 64, "image", sign_jpeg(plain_jpeg(3), TRAINED, chain), "image/jpeg"))
    verdict = fuse([det], 0.3)
    assert verdict.band == "confirmed_ai"
    ev_id = make_evidence(store, blobs, seed=4, platform="demo")
    with store.session() as s:
        sha = s.get(m.Evidence, ev_id).media_sha256
    store.save_analysis(sha, [det], verdict.band, verdict.score, verdict.reasons)
    return ev_id, tmp_path / "ca.pem"


def test_evidence_show_prints_the_trust(record, store, monkeypatch):
    from orchestrator.cli import app

    ev_id, ca = record
    monkeypatch.setenv("DEEPWATCH_DB", store.url)
    shown = CliRunner().invoke(app, ["evidence", "show", str(ev_id)], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith("C2PA trust"))
    assert "signer deepwatch test signer (deepwatch tests), issuer deepwatch test CA (deepwatch tests)" in line
    assert f"trusted via deepwatch test CA (deepwatch tests) [{ca}]" in line and "no timestamp" in line


def test_console_evidence_page_shows_the_trust(record, console):  # noqa: F811
    ev_id, _ = record
    page = client_for(console, "vera").get(f"/evidence/{ev_id}")
    assert page.status_code == 200
    assert 'data-testid="c2pa-trust"' in page.text
    assert "C2PA signer deepwatch test signer (deepwatch tests), issuer deepwatch test CA (deepwatch tests)" in page.text
    assert "<strong>trusted</strong> via deepwatch test CA" in page.text


def test_takedown_packet_carries_the_trust(record, store, blobs, tmp_path):
    ev_id, ca = record
    out = tmp_path / "packet"
    build_takedown(store, blobs, [ev_id], "demo", out, load_takedown_config(), Signer.load_or_create(tmp_path / "keys"),
                   actor="auditor", allow_unreviewed=True)
    item = json.loads((out / "notice.json").read_text("utf-8"))["items"][0]
    assert item["c2pa_trust"]["trusted"] is True
    assert item["c2pa_trust"]["anchor"] == f"deepwatch test CA (deepwatch tests) [{ca}]"
    assert item["c2pa_trust"]["signer"] == "deepwatch test signer (deepwatch tests)"
    html = (out / "notice.html").read_text("utf-8")
    assert "C2PA: deepwatch test signer (deepwatch tests) / deepwatch test CA (deepwatch tests)" in html
    assert "✔ deepwatch test CA (deepwatch tests)" in html
