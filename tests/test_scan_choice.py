"""One rule picks the classifier (never the current directory), and `deepwatch scan` says what ran:
no model configured, PDQ beside pHash, the known-fakes bank via --db, a missing file's exit code."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.model_choice import ENV_VAR, ModelChoiceError, choose_model
from tests.conftest import fixtures_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No model in the environment and an empty config home, whatever the developer has set."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("DEEPWATCH_DB", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)  # no var/deepwatch.db from an earlier `make demo` in the checkout
    return tmp_path / "config"


def test_model_choice_order(clean_env, tmp_path, monkeypatch):
    assert choose_model(None).model is None and choose_model(None).source == "not configured"
    config = clean_env / "deepwatch" / "config.yaml"
    config.parent.mkdir(parents=True)
    (config.parent / "models" / "mine").mkdir(parents=True)
    config.write_text("model: models/mine\n")
    # A relative path in the config file is relative to the file, not to where the command runs.
    monkeypatch.chdir(tmp_path)
    got = choose_model(None)
    assert got.model == str((config.parent / "models" / "mine").resolve()) and got.source == str(config)
    monkeypatch.setenv(ENV_VAR, "org/from-env")
    assert (choose_model(None).model, choose_model(None).source) == ("org/from-env", ENV_VAR)
    assert (choose_model("org/cli").model, choose_model("org/cli").source) == ("org/cli", "--model")
    campaign = choose_model("var/models/x", explicit_source="campaign")
    assert campaign.source == "campaign"
    config.write_text("model: [1, 2]\n")
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(ModelChoiceError, match="'model' must be"):
        choose_model(None)


def test_a_model_folder_in_the_current_directory_is_not_picked_up(clean_env, tmp_path, monkeypatch):
    (tmp_path / "var" / "models" / "demo-detector").mkdir(parents=True)
    (tmp_path / "var" / "models" / "demo-detector" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert choose_model(None).model is None


def test_scan_without_a_model_says_so_and_gives_pdq(clean_env):
    from orchestrator.cli import app

    photo = fixtures_dir() / "pdq" / "images" / "bridge-mods" / "aaa-orig.jpg"
    result = CliRunner().invoke(app, ["scan", str(photo), "--json"])
    assert result.exit_code == 0, result.output
    assert "no classifier configured" in result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["classifier"] == "not configured" and out["database"] == "not configured"
    assert out["detectors_run"] == ["c2pa", "invisible-watermark", "metadata-provenance"]
    assert len(out["pdq"]) == 64 and out["pdq_quality"] >= 50 and len(out["phash"]) == 16
    assert out["verdict"]["band"] == "no_signal"
    human = CliRunner().invoke(app, ["scan", str(photo)])
    flat = " ".join(human.stdout.split())  # rich wraps long lines
    assert "classifier: not configured; detectors run: c2pa, invisible-watermark, metadata-provenance" in flat


def test_scan_missing_file_exits_nonzero(clean_env, tmp_path):
    from orchestrator.cli import app

    photo = fixtures_dir() / "pdq" / "images" / "misc-images" / "small.jpg"
    result = CliRunner().invoke(app, ["scan", str(photo), str(tmp_path / "nope.jpg"), "--json"])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert "error" not in lines[0] and lines[1] == {"input": str(tmp_path / "nope.jpg"), "error": "no such file"}


def test_scan_checks_the_known_fakes_bank(clean_env, tmp_path):
    from detectors.pdq import pdq_from_bytes
    from orchestrator.cli import app
    from storage.bank import KnownFakesBank
    from storage.db import Store

    photo = fixtures_dir() / "pdq" / "images" / "bridge-mods" / "aaa-orig.jpg"
    copy = fixtures_dir() / "pdq" / "images" / "bridge-mods" / "shrink-a-little.jpg"
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    store = Store(url)
    KnownFakesBank(store).add("pdq", pdq_from_bytes(photo.read_bytes())[0], case_id="NEC-2026-0001", source="import")
    store.close()
    result = CliRunner().invoke(app, ["scan", str(copy), "--json", "--db", url])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["database"] == "checked" and "check_known_fakes_bank" in out["detectors_run"]
    assert out["verdict"]["band"] == "likely_fake"
    assert out["verdict"]["reasons"][0].startswith("matches known fake NEC-2026-0001 at distance")
    assert any(d["detector"] == "known-fakes-bank" for d in out["detections"])
    # Through the environment, as the evidence commands take it.
    env_run = CliRunner().invoke(app, ["scan", str(copy), "--json"], env={**os.environ, "DEEPWATCH_DB": url})
    assert json.loads(env_run.stdout.splitlines()[-1])["verdict"]["band"] == "likely_fake"


def test_rescan_without_a_configured_model_says_how_to_configure_one(clean_env, tmp_path):
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["rescan", "--db", f"sqlite:///{tmp_path / 'dw.db'}"])
    assert result.exit_code == 2
    assert "no classifier configured" in result.output and "DEEPWATCH_MODEL" in result.output


def test_a_campaign_without_a_classifier_takes_the_configured_default(clean_env, monkeypatch):
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import parse_spec

    spec = parse_spec({"name": "t", "keywords": ["x"],
                       "sources": [{"name": "s", "type": "demo_api", "params": {"base_url": "embedded"}}],
                       "detectors": {"c2pa": False}})
    run = type("Run", (), {"spec": spec, "_c2pa_trust": lambda self: None})()
    assert CampaignRun._detector_kwargs(run)["classifier_model"] is None
    monkeypatch.setenv(ENV_VAR, "org/configured")
    assert CampaignRun._detector_kwargs(run)["classifier_model"] == "org/configured"
