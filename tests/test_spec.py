"""Campaign spec validation: clear errors naming the file and the field."""
from __future__ import annotations

from pathlib import Path

import pytest

import yaml

from orchestrator.spec import SpecError, load_spec, parse_duration, parse_spec

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
name: t1
keywords: ["선거"]
hashtags: ["#election2026"]
window: {start: 2026-05-01T00:00:00+09:00, end: 2026-06-03T18:00:00+09:00, timezone: Asia/Seoul}
sources:
  - {name: api, type: demo_api, params: {base_url: embedded}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "campaign.yaml"
    p.write_text(text, "utf-8")
    return p


def test_example_campaign_is_valid():
    spec, text = load_spec(ROOT / "examples" / "demo.yaml")
    assert spec.name == "demo-election-2026" and "sources" in text
    assert spec.uses_embedded_platform()
    assert spec.detectors.classifier.model == "var/models/demo-detector"


def test_good_spec_normalises_times_and_terms(tmp_path):
    spec, _ = load_spec(_write(tmp_path, GOOD))
    assert spec.window.start.utcoffset().total_seconds() == 0
    assert spec.window.start.hour == 15  # 00:00 KST is 15:00 UTC the day before
    assert spec.terms_for(spec.sources[0]) == ["선거", "#election2026"]


@pytest.mark.parametrize(
    "mutation, field, words",
    [
        (("keywords:", "keywrods:"), "keywrods", "unknown key"),
        (("type: demo_api", "type: nosuch"), "sources.0.type", "unknown source type"),
        (("+09:00, end", ", end"), "window.start", "time zone"),
        (("Asia/Seoul", "Mars/Olympus"), "window.timezone", "unknown time zone"),
        (("name: t1", "name: 'bad name/'"), "name", "pattern"),
    ],
)
def test_bad_fields_are_named(tmp_path, mutation, field, words):
    path = _write(tmp_path, GOOD.replace(*mutation))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    msg = str(exc.value)
    assert str(path) in msg and f"field '{field}'" in msg and words in msg


def test_window_order_and_terms_required(tmp_path):
    with pytest.raises(SpecError, match="window.end must be after"):
        load_spec(_write(tmp_path, GOOD.replace("end: 2026-06-03T18:00:00+09:00", "end: 2026-04-03T18:00:00+09:00")))
    with pytest.raises(SpecError, match="needs keywords"):
        load_spec(_write(tmp_path, GOOD.replace('keywords: ["선거"]', "").replace('hashtags: ["#election2026"]', "")))


def test_malformed_files(tmp_path):
    with pytest.raises(SpecError, match="no such campaign file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(_write(tmp_path, "- just\n- a list\n"))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: \xff\xfe")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(bad)


def test_platforms_example_validates_and_names_bad_source_params(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    example = Path(__file__).resolve().parents[1] / "examples" / "platforms.yaml"
    ok = CliRunner().invoke(app, ["campaign", "validate", str(example)])
    assert ok.exit_code == 0, ok.output
    assert "telegram-channel (telegram): a feed, read once per pass" in ok.output
    spec = parse_spec(yaml.safe_load(example.read_text("utf-8")))
    assert spec.interval == 900 and spec.terms_for(spec.sources[-1]) == [""]

    bad = tmp_path / "bad.yaml"
    bad.write_text(example.read_text("utf-8").replace("channel: example_channel", "chanel: x"), "utf-8")
    result = CliRunner().invoke(app, ["campaign", "validate", str(bad)])
    assert result.exit_code == 2
    assert "source 'telegram-channel'" in result.output and "unknown parameter(s) chanel" in result.output


@pytest.mark.parametrize("value,seconds", [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0)])
def test_interval_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "0m", -5, True, ""])
def test_bad_interval_is_named(value):
    with pytest.raises(SpecError, match="interval"):
        parse_spec({"name": "x", "keywords": ["a"], "interval": value,
                    "sources": [{"name": "s", "type": "demo_api", "params": {"base_url": "http://x"}}]})


def test_feed_only_campaign_needs_no_terms():
    spec = parse_spec({"name": "feeds", "sources": [{"name": "f", "type": "rss", "params": {"url": "https://example.org/feed"}}]})
    assert spec.terms_for(spec.sources[0]) == [""]


ENSEMBLE = GOOD + """
detectors:
  classifiers:
    - {model: models/a, weight: 1}
    - {model: org/deepfake-vit, fake_label: Deepfake, revision: 3f2a1c, weight: 2.5, threshold: 0.8}
  ensemble: {threshold: 0.6, review_threshold: 0.4}
"""


def test_ensemble_of_classifiers(tmp_path):
    spec, _ = load_spec(_write(tmp_path, ENSEMBLE))
    d = spec.detectors
    assert d.classifier is None and [m.model for m in d.classifiers] == ["models/a", "org/deepfake-vit"]
    assert d.classifiers[0].model_dump() == {"model": "models/a", "fake_label": "fake", "revision": None,
                                             "weight": 1.0, "threshold": None}
    assert (d.classifiers[1].fake_label, d.classifiers[1].revision, d.classifiers[1].weight) == ("Deepfake", "3f2a1c", 2.5)
    assert d.ensemble_settings().threshold == 0.6 and d.ensemble_settings().batch_size == 32
    without = load_spec(_write(tmp_path, ENSEMBLE.replace("  ensemble: {threshold: 0.6, review_threshold: 0.4}\n", "")))[0]
    assert without.detectors.ensemble_settings().threshold == 0.5


@pytest.mark.parametrize(
    "mutation, field, words",
    [
        (("detectors:\n", "detectors:\n  classifier: {model: x}\n"), "detectors", "not both"),
        (("weight: 2.5", "weight: 0"), "detectors.classifiers.1.weight", "greater than 0"),
        (("weight: 1}", "weight: -1}"), "detectors.classifiers.0.weight", "greater than 0"),
        (("threshold: 0.8", "threshold: 1.8"), "detectors.classifiers.1.threshold", "less than or equal to 1"),
        (("    - {model: models/a, weight: 1}\n", ""), "detectors", "at least two"),
        (("model: org/deepfake-vit, fake_label: Deepfake, revision: 3f2a1c,", "model: models/a,"), "detectors",
         "same model twice: models/a"),
        (("review_threshold: 0.4", "review_threshold: 0.7"), "detectors.ensemble", "review_threshold"),
        (("weight: 1}", "weight: 1, wieght: 2}"), "detectors.classifiers.0.wieght", "unknown key"),
    ],
)
def test_bad_ensembles_are_named(tmp_path, mutation, field, words):
    path = _write(tmp_path, ENSEMBLE.replace(*mutation))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    msg = str(exc.value)
    assert f"field '{field}'" in msg and words in msg, msg


def test_ensemble_settings_need_classifiers():
    with pytest.raises(SpecError, match="'ensemble' settings need 'classifiers'"):
        parse_spec({"name": "x", "keywords": ["a"], "detectors": {"ensemble": {"threshold": 0.7}},
                    "sources": [{"name": "s", "type": "demo_api", "params": {"base_url": "http://x"}}]})
