"""One whole campaign on local Ray + Chromium + SQLite against the bundled demo platform, then
the investigators' commands on what it wrote. Slow by nature: model training (cached in
var/models), Ray start-up and a real browser."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.campaign import CampaignRun
from orchestrator.cli import app
from orchestrator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_model() -> Path:
    from detectors.demo_calibration import calibrate_demo_model
    from detectors.train import ensure_demo_model

    # What `make demo` does: train, then calibrate and fit the domain check on the demo world's
    # kind of images (uncalibrated, the model's scores could only ask for review).
    model = ensure_demo_model(ROOT / "var" / "models" / "demo-detector")
    calibrate_demo_model(model)
    return model


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, demo_model):
    work = tmp_path_factory.mktemp("campaign")
    data = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text("utf-8"))
    data["storage"] = {"database": f"sqlite:///{work / 'dw.db'}", "blobs": str(work / "blobs")}
    data["detectors"]["classifier"]["model"] = str(demo_model)
    # A source that cannot be reached: counted, and the campaign goes on with the others.
    data["sources"].append({"name": "gone", "type": "demo_api", "params": {"base_url": "http://127.0.0.1:9"}})
    spec = parse_spec(data)
    text = yaml.safe_dump(data, allow_unicode=True)
    first = CampaignRun(spec, text).run()
    second = CampaignRun(spec, text).run()
    return spec, first, second, work


def test_first_run_finds_the_planted_fakes(campaign):
    _, report, _, _ = campaign
    c = report["counts"]
    assert c["posts"] > 0 and c["posts_new"] > 0
    assert c["media_fetched"] > 0 and c["unique"] > 0
    assert c["duplicates_near"] > 0, "re-uploads must be caught by perceptual hash"
    assert c["analysed"] == c["unique"], "every distinct item is analysed exactly once"
    assert c["evidence_written"] > 0 and c["captures"] > 0
    gt = report["ground_truth"]
    assert gt["recall"] >= 0.95, gt
    assert gt["real_flagged_rate"] <= 0.02, gt
    assert gt["recall_by_kind"]["reupload"] >= 0.95, gt


def test_bad_inputs_are_counted_drops(campaign):
    spec, report, _, _ = campaign
    drops = report["drops"]
    gone = next(s for s in spec.sources if s.name == "gone")
    assert drops["crawl"].get("source unreachable") == len(spec.terms_for(gone))  # once per term
    probe = drops.get("probe", {})
    assert any("truncated" in r or "corrupt" in r for r in probe), probe
    assert any("not an image" in r or "text/html" in r for r in probe), probe


def test_second_run_adds_nothing(campaign):
    _, first, second, _ = campaign
    c = second["counts"]
    # Incremental: each source is read from the top only down to the newest post of the last run.
    assert 0 < c["posts"] < first["counts"]["posts"]
    assert c["media_fetched"] == 0, "media of posts already stored is not fetched again"
    assert c["posts_new"] == 0 and c["unique"] == 0 and c["analysed"] == 0 and c["evidence_written"] == 0
    assert second["ground_truth"]["recall"] == first["ground_truth"]["recall"]


def test_known_fakes_bank_is_filled_and_exchanged(campaign, tmp_path_factory):
    """A commission exports its bank; another deployment imports it and catches the same fakes
    without spending a detector on them."""
    spec, first, _, work = campaign
    assert first["counts"]["banked"] > 0
    hashes = tmp_path_factory.mktemp("bank") / "known-fakes.pdq.txt"
    _cli(work, "bank", "export", str(hashes))
    assert len(hashes.read_text().split()) > 0
    other = tmp_path_factory.mktemp("other")
    data = spec.model_dump(mode="json")
    data["storage"] = {"database": f"sqlite:///{other / 'dw.db'}", "blobs": str(other / "blobs")}
    data["sources"] = [s for s in data["sources"] if s["type"] == "demo_api"]
    data["scaling"]["capture_evidence"] = False
    _cli(other, "bank", "import", str(hashes), "--case", "NEC-2026-0042")
    third = CampaignRun(parse_spec(data), yaml.safe_dump(data, allow_unicode=True)).run()
    c = third["counts"]
    assert c["bank_matches"] > 0
    assert c["analysed"] < first["counts"]["analysed"], "banked fakes are not analysed again"
    assert third["ground_truth"]["recall"] >= 0.95


def _cli(work: Path, *args: str):
    result = CliRunner().invoke(app, [*args], env={"DEEPWATCH_DB": f"sqlite:///{work / 'dw.db'}", "DEEPWATCH_BLOBS": str(work / "blobs")})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_investigator_commands(campaign, tmp_path):
    spec, _, _, work = campaign
    rows = json.loads(_cli(work, "evidence", "list", "--json", "--campaign", spec.name))
    assert rows and all(r["verdict"] in ("confirmed_ai", "likely_fake") for r in rows)
    korean = json.loads(_cli(work, "evidence", "search", "선거", "--json"))
    assert korean and all(r["id"] in {x["id"] for x in rows} for r in korean)
    reupload = next(r for r in rows if r["matched_sha256"])
    detail = json.loads(_cli(work, "evidence", "show", str(reupload["id"]), "--json"))
    assert detail["detections"], "a re-upload shows the detections of the fake it copies"
    assert detail["screenshot_sha256"], "flagged posts are captured in the browser"
    assert "matches known fake" in detail["reasons"][0]
    out = tmp_path / "packet"
    _cli(work, "evidence", "export", str(reupload["id"]), str(out), "--actor", "analyst-kim")
    from storage.packet import verify_packet

    assert (out / "screenshot.png").exists() and verify_packet(out) == []
    image_ev = next(r for r in rows if r["matched_sha256"] and r["media_url"].endswith(".jpg"))
    out = tmp_path / "packet-image"
    _cli(work, "evidence", "export", str(image_ev["id"]), str(out), "--actor", "analyst-kim")
    media_file = next((out / "media").iterdir())
    similar = json.loads(_cli(work, "evidence", "similar", str(media_file), "--json"))
    assert similar["matches"][0]["distance"] == 0 and similar["matches"][0]["sha256"] == image_ev["media_sha256"]
    scanned = json.loads(_cli(work, "scan", str(media_file), "--json", "--model", str(ROOT / "var/models/demo-detector")).splitlines()[0])
    assert scanned["sha256"] == image_ev["media_sha256"] and scanned["verdict"]["band"]


def test_evidence_is_archived_sealed_and_verifies(campaign, tmp_path):
    """Every new evidence record got a WACZ of its page (from 127.0.0.1), a working copy beside the
    original, custody events and a seal; `evidence verify --all` finds nothing wrong, and finds
    the edit when a row is changed behind deepwatch's back."""
    from sqlalchemy import text
    from sqlmodel import select

    from evidence.wacz import verify_wacz
    from evidence.signing import Signer
    from storage import models as m
    from storage.blobs import BlobStore
    from storage.db import Store

    spec, first, _, work = campaign
    assert first["counts"]["sealed"] == first["counts"]["evidence_written"]
    store, blobs = Store(spec.storage.database), BlobStore(spec.storage.blobs)
    with store.session() as s:
        records = s.exec(select(m.Evidence)).all()
        actions = {(e.evidence_id, e.action) for e in s.exec(select(m.CustodyEvent)).all()}
    assert records
    for ev in records:
        assert ev.wacz_sha256 and ev.capture_ip == "127.0.0.1" and ev.capture_tool.startswith("deepwatch/")
        assert ev.working_sha256 and ev.working_sha256 != ev.media_sha256
        assert {(ev.id, "analysed"), (ev.id, "captured"), (ev.id, "sealed")} <= actions
    sample = records[0]
    assert verify_wacz(blobs.get(sample.wacz_sha256), expected_public_key=Signer.load_or_create().public_key_hex) == []

    ok = CliRunner().invoke(app, ["evidence", "verify", "--all"],
                            env={"DEEPWATCH_DB": spec.storage.database, "DEEPWATCH_BLOBS": spec.storage.blobs})
    assert ok.exit_code == 0, ok.output
    with store.engine.begin() as conn:
        conn.execute(text("update post set text = 'edited' where id = :pk"), {"pk": sample.post_pk})
    bad = CliRunner().invoke(app, ["evidence", "verify", str(sample.id)],
                             env={"DEEPWATCH_DB": spec.storage.database, "DEEPWATCH_BLOBS": spec.storage.blobs})
    assert bad.exit_code == 1 and "TAMPERED" in bad.output and "edited" in bad.output
    store.close()
