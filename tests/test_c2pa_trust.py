"""Who signed a C2PA claim decides what it is worth (issue 22).

Signed here with freshly made certificates, and read from the c2pa-rs fixture files with the
bundled C2PA trust list.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from detectors.base import MediaInput
from detectors.c2pa_check import C2PADetector
from detectors.c2pa_trust import (
    C2PA_LIST_NAME,
    TrustConfigError,
    TrustSettings,
    assess,
    c2pa_trust_list,
    trust_words,
)
from detectors.fusion import fuse
from detectors.source_types import AI_EDITED, GENERATIVE_AI, SYNTHETIC, TABLE, lookup, markdown_table
from tests.conftest import ROOT
from tests.test_c2pa import fixture_dir, item, make_signing_chain, plain_jpeg, sign_jpeg

c2pa = pytest.importorskip("c2pa")

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def detection(detector: C2PADetector, data: bytes):
    return detector.detect_one(MediaInput("0" * 64, "image", data, "image/jpeg"))


@pytest.fixture(scope="module")
def fresh():
    """A CA and signer made a moment ago, and a real photo-like JPEG it signed as generative AI."""
    chain = make_signing_chain()
    return chain, sign_jpeg(plain_jpeg(5), IPTC + "trainedAlgorithmicMedia", chain)


def _write(tmp_path: Path, name: str, pem: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(pem)
    return path


def test_fresh_certificate_declaring_ai_is_not_confirmed(fresh):
    _, signed = fresh
    det = detection(C2PADetector(trust=TrustSettings()), signed)
    assert det.details["signed_valid"] and det.details["generative_ai_declared"]
    assert det.details["trusted"] is False
    verdict = fuse([det], 0.3)
    assert verdict.band == "likely_fake"
    assert verdict.reasons[0].endswith(
        "but the signer deepwatch test signer (deepwatch tests) is not on the trust list: at most a likely fake")
    trust = det.details["trust"]
    assert trust["signer"] == "deepwatch test signer (deepwatch tests)"
    assert trust["issuer"] == "deepwatch test CA (deepwatch tests)"
    assert trust["anchor"] is None and trust["problems"] == ["signingCredential.untrusted"]
    assert "not on the trust list" in trust_words(trust)


def test_the_same_file_with_that_ca_as_an_anchor_is_confirmed(fresh, tmp_path):
    (_, _, ca_pem), signed = fresh
    settings = TrustSettings.build(anchors=[_write(tmp_path, "newsroom-ca.pem", ca_pem)])
    det = detection(C2PADetector(trust=settings), signed)
    assert det.details["trusted"] is True and det.details["validation_state"] == "Trusted"
    trust = det.details["trust"]
    assert trust["trust_list"] == "the deployment's own anchors"
    assert trust["anchor"] == f"deepwatch test CA (deepwatch tests) [{tmp_path / 'newsroom-ca.pem'}]"
    verdict = fuse([det], 0.3)
    assert verdict.band == "confirmed_ai"
    assert any(r.startswith("C2PA signer trusted: signer deepwatch test signer") for r in verdict.reasons)


def test_an_allowed_signing_certificate_is_trusted_by_itself(fresh, tmp_path):
    (chain_pem, _, _), signed = fresh
    leaf_pem = chain_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    settings = TrustSettings.build(allowed_signers=[_write(tmp_path, "signer.pem", leaf_pem)])
    det = detection(C2PADetector(trust=settings), signed)
    assert det.details["trusted"] is True and det.details["validation_state"] == "Trusted"  # c2pa-rs's own check
    assert det.details["trust"]["trust_list"] == "the allowed signers"
    assert det.details["trust"]["anchor"].startswith("allowed signing certificate deepwatch test signer")
    assert fuse([det], 0.3).band == "confirmed_ai"
    # Another certificate is not on the allow-list, even one from a self-made CA that copies the
    # allowed certificate's names and serial number (all a manifest report shows of it).
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(leaf_pem).serial_number
    copycat = sign_jpeg(plain_jpeg(6), IPTC + "trainedAlgorithmicMedia", make_signing_chain(leaf_serial=serial))
    forged = detection(C2PADetector(trust=settings), copycat)
    assert forged.details["trust"]["serial"] == det.details["trust"]["serial"]
    assert forged.details["trusted"] is False and fuse([forged], 0.3).band == "likely_fake"


def test_environment_anchors(fresh, tmp_path, monkeypatch):
    (_, _, ca_pem), signed = fresh
    monkeypatch.setenv("DEEPWATCH_C2PA_TRUST_ANCHORS", str(_write(tmp_path, "ca.pem", ca_pem)))
    assert fuse([detection(C2PADetector(), signed)], 0.3).band == "confirmed_ai"


def test_algorithmic_media_is_a_finding_never_flagged(fresh, tmp_path):
    (_, _, ca_pem), _ = fresh
    chain = fresh[0]
    trusted = TrustSettings.build(anchors=[_write(tmp_path, "ca.pem", ca_pem)])
    for term in ("algorithmicMedia", "compositeSynthetic"):
        det = detection(C2PADetector(trust=trusted), sign_jpeg(plain_jpeg(7), IPTC + term, chain))
        assert det.details["trusted"] and det.outcome == "inconclusive"
        assert det.details["generative_ai_declared"] is False
        assert det.details["synthetic_source_types"] == [term]
        verdict = fuse([det], 0.3)
        assert verdict.band == "no_signal", term
        assert any(f"declares {term}" in r and "not flagged on its own" in r for r in verdict.reasons)
    # AI-edited is a declaration of AI, like generative AI.
    edited = detection(C2PADetector(trust=trusted),
                       sign_jpeg(plain_jpeg(8), IPTC + "compositeWithTrainedAlgorithmicMedia", chain))
    assert fuse([edited], 0.3).band == "confirmed_ai"


def test_real_fixture_files_with_their_trust_state():
    """The c2pa-rs test files are signed by its test CA (and one by Adobe's 2022 production
    certificate): none of those chains is on the C2PA trust list, so none can confirm anything."""
    detector = C2PADetector(trust=TrustSettings())
    seen = {}
    for path in sorted(fixture_dir("c2pa/signed_valid").iterdir()):
        det = detector.detect_one(item(path))
        trust = det.details["trust"]
        seen[path.name] = trust
        assert trust["trusted"] is False and trust["problems"] == ["signingCredential.untrusted"], path.name
        assert fuse([det], 0.3).band == "no_signal", path.name
        assert any("C2PA signer untrusted: signer" in r for r in det.reasons), path.name
    assert seen["cli_verify.jpeg"]["signer"] == "cai-prod (Adobe Inc.)"
    assert seen["cli_verify.jpeg"]["issuer"] == "Adobe Product Services G3 (Adobe Systems Incorporated)"
    assert seen["cli_verify.jpeg"]["timestamp"]["tsa"] == "DigiCert Timestamp 2022 - 2 (DigiCert, Inc.)"
    assert seen["cli_verify.jpeg"]["timestamp"]["trusted"] is True
    assert seen["C.jpg"]["signer"] == "C2PA Signer (C2PA Test Signing Cert)"
    assert seen["C.jpg"]["issuer"] == "Intermediate CA (C2PA Test Intermediate Root CA)"
    # CACA.jpg's 2025 timestamp responder is not among the SDK's trusted TSAs.
    assert seen["CACA.jpg"]["timestamp"]["trusted"] is False
    assert seen["video1.mp4"]["timestamp"]["time"] == "2023-12-02T16:34:19+00:00"


def test_bundled_c2pa_list_and_its_notice():
    anchors = c2pa_trust_list()
    assert len(anchors) == 30 and all(a.source == C2PA_LIST_NAME for a in anchors)
    assert any("Adobe" in a.name for a in anchors)
    notice = (ROOT / "detectors" / "trust" / "NOTICE.md").read_text()
    assert "CC BY 4.0" in notice and "C2PA" in notice
    settings = TrustSettings().sdk_settings()
    assert settings["trust"]["trust_anchors"].count("BEGIN CERTIFICATE") == 30


def test_expired_certificate_is_judged_at_signing_time_when_a_trusted_timestamp_covers_it():
    """The reader's codes for a chain that ends in an anchor but whose certificate has expired."""
    results = {
        "success": [{"code": "signingCredential.trusted", "explanation": "found in [system_anchors] trust anchors"},
                    {"code": "claimSignature.validated"}, {"code": "timeStamp.trusted"}],
        "failure": [{"code": "signingCredential.expired"}],
    }
    cert = {"subject": {"CN": "Camera"}, "issuer": {"CN": "Maker CA"}, "serial": "0a",
            "not_before": "2022-03-01T00:00:00+00:00", "not_after": "2023-03-01T23:59:59+00:00",
            "timestamp": "2022-05-06T18:20:43+00:00", "tsa": {"CN": "TSA"}, "tsa_issuer": {"CN": "TSA CA"}}
    covered = assess(results, cert, TrustSettings())
    assert covered["trusted"] and covered["expired_but_timestamped"]
    assert covered["trust_list"] == C2PA_LIST_NAME
    assert "valid when signed per the trusted timestamp" in trust_words(covered)
    # c2pa-rs itself reports no expiry when the timestamp covers signing: still said in the report.
    quiet = assess({**results, "failure": []}, cert, TrustSettings())
    assert quiet["trusted"] and quiet["expired_but_timestamped"]
    late = assess(results, cert | {"timestamp": "2024-01-01T00:00:00+00:00"}, TrustSettings())
    assert not late["trusted"]
    untrusted_stamp = {**results, "success": [c for c in results["success"] if c["code"] != "timeStamp.trusted"]}
    assert not assess(untrusted_stamp, cert, TrustSettings())["trusted"]
    revoked = {**results, "failure": [{"code": "signingCredential.revoked"}]}
    assert not assess(revoked, cert, TrustSettings())["trusted"]


def test_bad_trust_files_are_named(tmp_path):
    with pytest.raises(TrustConfigError, match="missing.pem: cannot read it"):
        TrustSettings.build(anchors=[tmp_path / "missing.pem"])
    junk = _write(tmp_path, "junk.pem", b"not a certificate")
    with pytest.raises(TrustConfigError, match="junk.pem: not PEM certificates"):
        TrustSettings.build(allowed_signers=[junk])
    with pytest.raises(TrustConfigError, match="no signed claim could ever be trusted"):
        TrustSettings.build(use_c2pa_list=False)


def test_spec_checks_trust_files(tmp_path):
    from orchestrator.spec import SpecError, load_spec

    base = (ROOT / "examples" / "demo.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.replace("  c2pa: true\n", f"  c2pa: true\n  c2pa_trust: {{anchors: [{tmp_path}/nope.pem]}}\n"))
    with pytest.raises(SpecError, match=r"c2pa_trust.*nope.pem: cannot read it"):
        load_spec(bad)


def test_demo_campaign_trusts_its_own_ca_only_when_asked():
    from demo_platform.provenance import sign_c2pa
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import load_spec

    spec, text = load_spec(ROOT / "examples" / "demo.yaml")
    assert spec.demo_platform.trust_own_ca
    signed = sign_c2pa(plain_jpeg(9), "image/jpeg", seed=spec.demo_platform.seed, item_id="x", title="x.jpg")
    trust = CampaignRun(spec, text)._c2pa_trust()
    trust = pickle.loads(pickle.dumps(trust))  # it travels to the Ray detector actors
    det = detection(C2PADetector(trust=trust), signed)
    assert fuse([det], 0.3).band == "confirmed_ai"
    assert det.details["trust"]["anchor"] == "Deepwatch Demo Root CA [the demo platform's own CA]"
    off = spec.model_copy(update={"demo_platform": spec.demo_platform.model_copy(update={"trust_own_ca": False})})
    assert fuse([detection(C2PADetector(trust=CampaignRun(off, text)._c2pa_trust()), signed)], 0.3).band == "likely_fake"


def test_source_type_table_is_one_entry_per_term_and_documented():
    assert lookup(IPTC + "trainedAlgorithmicMedia").category == GENERATIVE_AI
    assert lookup("compositeWithTrainedAlgorithmicMedia").category == AI_EDITED
    assert lookup(IPTC + "algorithmicMedia/").category == SYNTHETIC
    assert lookup("digitalCapture").declares_ai is False
    assert lookup(IPTC + "somethingNew").category == "unknown"
    assert {s.term for s in TABLE.values()} == set(TABLE)
    doc = (ROOT / "docs" / "provenance.md").read_text()
    assert markdown_table() in doc


def test_unsigned_metadata_uses_the_same_table():
    from detectors.metadata import judge

    algorithmic = judge([("xmp:digitalsourcetype", IPTC + "algorithmicMedia")])
    assert algorithmic[0] == "inconclusive" and algorithmic[2]["ai_declared"] is False
    assert algorithmic[2]["digital_source_types"][0]["category"] == SYNTHETIC
    trained = judge([("xmp:digitalsourcetype", IPTC + "trainedAlgorithmicMedia")])
    assert trained[0] == "fake" and trained[2]["digital_source_types"][0]["category"] == GENERATIVE_AI


def test_detector_describes_its_trust(fresh, tmp_path):
    (_, _, ca_pem), _ = fresh
    described = C2PADetector(trust=TrustSettings.build(anchors=[_write(tmp_path, "ca.pem", ca_pem)])).describe()
    assert described["trust"]["c2pa_trust_list"] is True
    assert described["trust"]["anchors"] == [f"deepwatch test CA (deepwatch tests) [{tmp_path / 'ca.pem'}]"]
    assert json.dumps(described)  # goes into the run report as is


def test_scan_takes_anchors_and_shows_the_trust(fresh, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    (_, _, ca_pem), signed = fresh
    monkeypatch.chdir(tmp_path)  # no demo model here: C2PA, watermark and metadata only
    (tmp_path / "signed.jpg").write_bytes(signed)
    ca = _write(tmp_path, "ca.pem", ca_pem)
    runner = CliRunner()
    plain = runner.invoke(app, ["scan", "signed.jpg"], env={"COLUMNS": "400"})
    assert plain.exit_code == 0, plain.output
    assert "signed.jpg  likely_fake" in plain.output
    assert "C2PA trust: signer deepwatch test signer (deepwatch tests), issuer deepwatch test CA (deepwatch tests); " \
           "not on the trust list (signingCredential.untrusted); no timestamp" in plain.output
    trusted = runner.invoke(app, ["scan", "--json", "--trust-anchor", str(ca), "signed.jpg"])
    assert trusted.exit_code == 0, trusted.output
    result = json.loads(trusted.output.strip().splitlines()[-1])
    assert result["verdict"]["band"] == "confirmed_ai"
    assert result["c2pa_trust"]["trusted"] and result["c2pa_trust"]["anchor"] == f"deepwatch test CA (deepwatch tests) [{ca}]"
    bad = runner.invoke(app, ["scan", "--trust-anchor", "nope.pem", "signed.jpg"])
    assert bad.exit_code != 0 and "nope.pem: cannot read it" in bad.output


def test_demo_worlds_signed_fakes_stay_confirmed_and_its_real_images_unflagged():
    """The demo's planted C2PA fakes through the real pipeline with the demo campaign's trust."""
    from demo_platform.world import build_world
    from detectors.pipeline import DetectionPipeline
    from orchestrator.campaign import CampaignRun
    from orchestrator.spec import load_spec

    spec, text = load_spec(ROOT / "examples" / "demo.yaml")
    world = build_world(seed=spec.demo_platform.seed, n_posts=30)
    pipe = DetectionPipeline(classifier_model=None, watermark=False, metadata=False,
                             c2pa_trust=CampaignRun(spec, text)._c2pa_trust())
    signed = [p for p, t in world.truth.items() if t.fake_kind == "c2pa"]
    reals = [p for p, t in world.truth.items() if t.label == "real" and t.kind == "image"][:5]
    assert signed and reals
    items = [MediaInput(str(i), world.truth[p].kind, world.media[p].data,
                        world.media[p].content_type) for i, p in enumerate(signed + reals)]
    bands = [a.verdict.band for a in pipe.analyse(items)]
    assert bands[:len(signed)] == ["confirmed_ai"] * len(signed)
    assert "confirmed_ai" not in bands[len(signed):] and "likely_fake" not in bands[len(signed):]
