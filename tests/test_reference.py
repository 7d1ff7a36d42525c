"""The reference library: add/list/show/remove/import, matching items to their authentic
originals, and the comparison that tells an altered copy from an unaltered re-post.

Media come from demo_platform/reference_media.py: official photos and speech videos, altered
copies (face replaced, face swapped and mouth re-synthesised over a stretch of a cut clip) and
unaltered re-posts (re-encoded, resized, cropped, captioned, graded, screenshotted, cut)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from demo_platform import imagery
from demo_platform.reference_media import build
from detectors.base import Detection
from detectors.fusion import fuse
from orchestrator.cli import app
from storage.blobs import BlobStore
from storage.db import Store
from storage.reference_check import ReferenceChecker, check_references
from storage.references import ReferenceLibrary

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def photo_world():
    return build(seed=15, n_photos=2, n_videos=0)


@pytest.fixture(scope="module")
def video_world():
    return build(seed=15, n_photos=0, n_videos=1)


def _library(tmp_path, originals) -> ReferenceLibrary:
    lib = ReferenceLibrary(Store(f"sqlite:///{tmp_path / 'ref.db'}"), BlobStore(tmp_path / "blobs"))
    for o in originals:
        lib.add(o.data, owner=o.owner, source_url=o.source_url)
    return lib


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_reference_commands(tmp_path, store_url, photo_world):
    originals, _ = photo_world
    folder = tmp_path / "originals"
    folder.mkdir()
    for o in originals:
        (folder / f"{o.name}.jpg").write_bytes(o.data)
    (folder / "notes.txt").write_text("not media")  # not an image suffix: ignored
    opts = ["--db", store_url, "--blobs", str(tmp_path / "blobs")]

    res = cli("reference", "import", str(folder), "--owner", "NEC press office", "--set", "press", *opts)
    assert res.exit_code == 0, res.output
    assert "2 of 2 file(s)" in res.output
    res = cli("reference", "add", str(folder / "photo-0.jpg"), "--owner", "NEC press office", *opts)
    assert res.exit_code == 0 and "already in the library as R1" in res.output

    listed = json.loads(cli("reference", "list", "--json", *opts).output)
    assert [r["label"] for r in listed] == ["R1", "R2"] and {r["set"] for r in listed} == {"press"}
    shown = json.loads(cli("reference", "show", "R2", "--json", *opts).output)
    assert shown["owner"] == "NEC press office" and shown["kind"] == "image"
    assert {h["region"] for h in shown["hashes"]} >= {"frame", "crop85", "crop70"}

    res = cli("reference", "remove", "R1", *opts)
    assert res.exit_code == 0 and "removed R1" in res.output
    assert [r["label"] for r in json.loads(cli("reference", "list", "--json", *opts).output)] == ["R2"]

    # Bad input: named, non-zero exit.
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    res = cli("reference", "add", str(bad), "--owner", "x", *opts)
    assert res.exit_code == 1 and "bad.jpg" in res.output
    res = cli("reference", "show", "R9", *opts)
    assert res.exit_code == 2 and "no reference 'R9'" in res.output
    res = cli("reference", "add", str(folder / "photo-1.jpg"), "--owner", " ", *opts)
    assert res.exit_code == 2 and "--owner" in res.output


def test_photo_copies(tmp_path, photo_world):
    originals, cases = photo_world
    checker = ReferenceChecker(_library(tmp_path, originals))
    for case in cases:
        det = checker.check(case.data, case.kind)
        assert det is not None, f"{case.name}: no reference matched ({case.transform})"
        ref = f"R{case.reference + 1}"
        if case.altered:
            assert det.outcome == "fake", (case.name, det.reasons)
            assert det.reasons[0].startswith(f"altered copy of reference {ref} ({originals[case.reference].owner}, "
                                             f"{originals[case.reference].source_url}): ")
            assert " changed" in det.reasons[0]
            # The heatmap is a PNG in the blob store.
            png = checker.library.blobs.get(det.details["heatmap_sha256"])
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert det.outcome == "real", (case.name, case.transform, det.reasons, det.details["regions"])
            assert det.reasons[0].startswith(f"matches authentic reference {ref} ")


def test_unrelated_photo_matches_nothing(tmp_path, photo_world):
    originals, _ = photo_world
    lib = _library(tmp_path, originals)
    other = imagery.jpeg_bytes(imagery.render_photo(np.random.default_rng(99), 640, 480, face=True).pixels, 90)
    assert ReferenceChecker(lib).check(other, "image") is None
    # scan's entry point: one result per item, None where nothing matched.
    from detectors.base import MediaInput

    got = check_references(lib.store, lib.blobs, [MediaInput("0" * 64, "image", other)])
    assert got == [None]


def test_fusion_with_references():
    altered = Detection("reference-library", "1", "fake", reasons=["altered copy of reference R1 (x): face region 1,2,3,4 changed"])
    authentic = Detection("reference-library", "1", "real", reasons=["matches authentic reference R1 (x)"])
    classifier = Detection("hf-classifier", "1", "fake", score=0.97, threshold=0.5, reasons=["classifier score 0.97"])
    assert fuse([altered], 0.3).band == "likely_fake"
    v = fuse([classifier, authentic], 0.3)
    assert v.band == "needs_review"
    assert "matches authentic reference R1" in v.reasons[0]
    assert fuse([classifier], 0.3).band == "likely_fake"  # no reference: unchanged
    assert fuse([authentic], 0.3).band == "no_signal"


def test_cut_video_clip_aligns_with_its_original(tmp_path, video_world):
    originals, cases = video_world
    checker = ReferenceChecker(_library(tmp_path, originals))
    by_name = {c.name: c for c in cases}
    swap = by_name["speech-0-face-swap-clip"]
    start = float(swap.transform.split()[1].split("-")[0])  # "clip 2.1-6.7 s, ..."

    det = checker.check(swap.data, "video")
    assert det is not None and det.outcome == "fake", det and det.reasons
    assert abs(det.details["offset_s"] - start) <= 0.1
    (a, b), = det.details["segments"]
    truth = swap.segment_s
    assert abs(a - truth[0]) <= 0.45 and abs(b - truth[1]) <= 0.45, (det.details["segments"], truth)
    assert " changed in " in det.reasons[0] and " aligned frames" in det.reasons[0]

    plain = checker.check(by_name["speech-0-clip"].data, "video")
    assert plain is not None and plain.outcome == "real", plain and plain.reasons
    assert abs(plain.details["offset_s"] - start) <= 0.1


def test_campaign_hook_refuses_a_learned_verdict_on_an_authentic_copy(tmp_path, photo_world):
    from detectors.base import MediaInput
    from detectors.pipeline import Analysis
    from orchestrator.references_hook import reference_checker, with_references

    originals, cases = photo_world
    lib = _library(tmp_path, originals)
    assert reference_checker(lib.store, lib.blobs, ["no-such-set"]) is None  # nothing to match
    checker = reference_checker(lib.store, lib.blobs, None)
    classifier = Detection("hf-classifier", "1", "fake", score=0.99, threshold=0.5, reasons=["classifier score 0.99"])
    for name, band in (("photo-0-reencoded", "needs_review"), ("photo-0-face-replaced", "likely_fake")):
        case = next(c for c in cases if c.name == name)
        before = Analysis("a" * 64, [classifier], fuse([classifier], 0.3))
        after = with_references(checker, before, MediaInput("a" * 64, "image", case.data), 0.3)
        assert after.verdict.band == band, after.verdict.reasons
        assert after.detections[-1].detector == "reference-library"


def test_console_lists_references(store, blobs, tmp_path, photo_world):
    from console.app import create_app
    from console.auth import create_user
    from tests.test_console_api import PASSWORD, client_for

    originals, _ = photo_world
    ReferenceLibrary(store, blobs).add(originals[0].data, owner="NEC press office",
                                       source_url="https://nec.example/press/1")
    create_user(store, "vera", PASSWORD, "viewer")
    app = create_app(store.url, str(blobs.root), packets_root=str(tmp_path / "packets"), key_dir=str(tmp_path / "keys"))
    try:
        assert client_for(app).get("/references", follow_redirects=False).status_code in (302, 303, 401)  # login first
        page = client_for(app, "vera").get("/references")
        assert page.status_code == 200
        assert "R1" in page.text and "NEC press office" in page.text and "https://nec.example/press/1" in page.text
    finally:
        app.state.console.store.close()


def test_evidence_page_shows_reference_and_heatmap(store, blobs, tmp_path, photo_world):
    from console.app import create_app
    from console.auth import create_user
    from storage import models as m
    from tests.evidence_factory import make_evidence
    from tests.test_console_api import PASSWORD, client_for

    originals, cases = photo_world
    lib = ReferenceLibrary(store, blobs)
    lib.add(originals[0].data, owner="NEC press office", source_url="https://nec.example/press/1")
    altered = next(c for c in cases if c.name == "photo-0-face-replaced")
    det = ReferenceChecker(lib).check(altered.data, "image")
    ev_id = make_evidence(store, blobs)
    with store.session() as s:
        sha = s.get(m.Evidence, ev_id).media_sha256
    store.save_analysis(sha, [det], "likely_fake", None, det.reasons)
    create_user(store, "vera", PASSWORD, "viewer")
    app = create_app(store.url, str(blobs.root), packets_root=str(tmp_path / "packets"), key_dir=str(tmp_path / "keys"))
    try:
        page = client_for(app, "vera").get(f"/evidence/{ev_id}")
        assert page.status_code == 200
        assert "Authentic reference R1" in page.text and "https://nec.example/press/1" in page.text
        assert f'src="/blob/{det.details["reference_sha256"]}"' in page.text
        assert f'src="/blob/{det.details["heatmap_sha256"]}"' in page.text
    finally:
        app.state.console.store.close()


def test_reference_rescan_finds_altered_copies_already_stored(store, blobs, tmp_path, photo_world):
    from sqlmodel import select

    from storage import models as m

    originals, cases = photo_world
    altered = next(c for c in cases if c.name == "photo-0-face-replaced")
    repost = next(c for c in cases if c.name == "photo-0-reencoded")
    for case in (altered, repost):
        sha = blobs.put(case.data)
        store.upsert_media(sha256=sha, kind="image", mime="image/jpeg", size=len(case.data), width=1, height=1,
                           phash="0" * 16)
    opts = ["--db", store.url, "--blobs", str(blobs.root)]
    res = cli("reference", "rescan", *opts)
    assert res.exit_code == 0 and "matched 0" in res.output  # an empty library compares nothing
    ReferenceLibrary(store, blobs).add(originals[0].data, owner="NEC press office")
    res = cli("reference", "rescan", *opts)
    assert res.exit_code == 0, res.output
    assert "media 2" in res.output and "altered 1" in res.output and "authentic 1" in res.output
    with store.session() as s:
        rows = s.exec(select(m.Detection).where(m.Detection.detector == "reference-library")).all()
    assert sorted(r.outcome for r in rows) == ["fake", "real"]
    assert "already compared 2" in cli("reference", "rescan", *opts).output  # resumable


def test_scan_with_a_database_compares_with_the_reference_library(tmp_path, photo_world, monkeypatch):
    """`deepwatch scan --db --blobs`: an altered copy is flagged by the comparison with its
    original; an unaltered re-post is not, and says which authentic reference it matches."""
    for var in ("DEEPWATCH_MODEL", "DEEPWATCH_DB", "DEEPWATCH_BLOBS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no configured classifier
    originals, cases = photo_world
    lib = _library(tmp_path, originals)
    lib.store.close()
    altered = next(c for c in cases if c.altered)
    unaltered = next(c for c in cases if not c.altered and c.name.endswith("-reencoded"))
    paths = []
    for case in (altered, unaltered):
        path = tmp_path / f"{case.name}.jpg"
        path.write_bytes(case.data)
        paths.append(str(path))
    res = cli("scan", *paths, "--json", "--db", f"sqlite:///{tmp_path / 'ref.db'}", "--blobs", str(tmp_path / "blobs"))
    assert res.exit_code == 0, res.output
    results = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert len(results) == 2
    flagged, clean = results
    assert "reference-library" in flagged["detectors_run"]
    assert flagged["verdict"]["band"] == "likely_fake", flagged["verdict"]
    assert any(r.startswith("altered copy of reference R") for r in flagged["verdict"]["reasons"])
    assert clean["verdict"]["band"] not in ("likely_fake", "confirmed_ai"), clean["verdict"]
    ref_det = next(d for d in clean["detections"] if d["detector"] == "reference-library")
    assert ref_det["outcome"] == "real" and ref_det["reasons"][0].startswith("matches authentic reference R")
