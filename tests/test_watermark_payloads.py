"""The payload constants in detectors.watermark_payloads equal the transcribed fixture file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from detectors.watermark_payloads import KNOWN_WATERMARKS

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

# fixture key -> our payload name
NAMES = {
    "stable_diffusion_v1": "stable_diffusion_v1",
    "stable_diffusion_v2": "stable_diffusion_v2",
    "sdxl_sgm_and_diffusers": "sdxl",
    "flux2_bfl": "flux2",
}


def load_fixture() -> dict:
    path = FIXTURES / "watermark" / "known_invisible_watermarks.json"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"third-party fixture missing at {path} (CI must have ../shared/fixtures)")
        pytest.skip(f"third-party fixture not present at {path}")
    return json.loads(path.read_text())


def fixture_bits(entry: dict) -> tuple[int, ...]:
    if entry["payload_type"] == "bytes":
        data = entry["payload"].encode("ascii")
        return tuple((byte >> (7 - i)) & 1 for byte in data for i in range(8))
    return tuple(int(c) for c in entry["payload_bin"])


def test_every_fixture_payload_is_known_with_the_same_bits():
    fixture = {k: v for k, v in load_fixture().items() if not k.startswith("_")}
    assert set(fixture) == set(NAMES)
    assert set(KNOWN_WATERMARKS) == set(NAMES.values())
    for key, entry in fixture.items():
        ours = KNOWN_WATERMARKS[NAMES[key]]
        assert ours.payload_type == entry["payload_type"], key
        assert ours.bits == fixture_bits(entry), key
        assert ours.length_bits == entry["length_bits"], key
        assert entry["method"] == "dwtDct", key


def test_sdxl_hex_form_agrees_with_its_bits():
    entry = load_fixture()["sdxl_sgm_and_diffusers"]
    assert int(entry["payload_hex"], 16) == int("".join(map(str, KNOWN_WATERMARKS["sdxl"].bits)), 2)


def test_only_the_second_hand_payload_is_marked_unverified():
    fixture = load_fixture()
    unverified = {NAMES[k] for k, v in fixture.items() if not k.startswith("_") and "NOT independently verified" in v["source"]}
    assert unverified == {p.name for p in KNOWN_WATERMARKS.values() if not p.verified_upstream} == {"flux2"}
