"""C2PADetector on the c2pa-rs fixture files and on manifests signed here with a local CA."""
from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import pytest

from tests.conftest import fixtures_dir

from detectors.base import MediaInput
from detectors.c2pa_check import C2PADetector, analyse_store, judge
from detectors.c2pa_trust import TrustSettings

c2pa = pytest.importorskip("c2pa")

from tests.conftest import FIXTURES
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4"}
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def fixture_dir(sub: str) -> Path:
    return fixtures_dir() / sub


def item(path: Path) -> MediaInput:
    kind = "video" if path.suffix == ".mp4" else "image"
    return MediaInput("0" * 64, kind, path.read_bytes(), MIME[path.suffix])


@pytest.fixture(scope="module")
def detector() -> C2PADetector:
    return C2PADetector()


# ---------------------------------------------------------------------------- signing helpers


def make_signing_chain(leaf_serial: int | None = None) -> tuple[bytes, bytes, bytes]:
    """(leaf+CA chain PEM, leaf private key PEM, CA PEM): an ES256 CA and a signing leaf (with
    `leaf_serial`, else a random serial number)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepwatch tests")]
        )

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("deepwatch test CA")).issuer_name(name("deepwatch test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("deepwatch test signer")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(leaf_serial or x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem, ca.public_bytes(pem)


def sign_jpeg(jpeg: bytes, source_type: str | None = TRAINED, chain=None) -> bytes:
    """Embed a manifest with one c2pa.created action (declaring `source_type`) into a JPEG."""
    cert_chain, key, _ = chain or make_signing_chain()
    action = {"action": "c2pa.created"}
    if source_type:
        action["digitalSourceType"] = source_type
    manifest = {
        "claim_generator_info": [{"name": "deepwatch-test-generator", "version": "1.0"}],
        "title": "generated.jpg",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", cert_chain, key, None))
    out = io.BytesIO()
    c2pa.Builder(manifest).sign(signer, "image/jpeg", io.BytesIO(jpeg), out)
    return out.getvalue()


def plain_jpeg(seed: int = 0) -> bytes:
    from tests.test_hashing import make_image

    return make_image(seed, size=(128, 96), fmt="JPEG")


# ---------------------------------------------------------------------------- fixture files


def test_every_signed_valid_fixture(detector):
    folder = fixture_dir("c2pa/signed_valid")
    files = sorted(folder.iterdir())
    assert len(files) >= 5
    for path in files:
        result = detector.detect_one(item(path))
        facts = result.details
        assert facts["manifest_present"] and facts["signed_valid"], path.name
        assert not facts["tampered"], path.name
        # The test certificates are untrusted here: noted, and not held against the manifest.
        assert "signingCredential.untrusted" in facts["credential_codes"], path.name
        assert any("not a forgery" in r for r in result.reasons), path.name
        # C.jpg declares algorithmicMedia: other synthetic media, a finding, not AI.
        expected = "inconclusive" if path.name == "C.jpg" else "real"
        assert result.outcome == expected, (path.name, result.reasons)
        assert result.detector == "c2pa" and "c2pa-python-" in result.version


def test_c_jpg_declares_algorithmic_media(detector):
    result = detector.detect_one(item(fixture_dir("c2pa/signed_valid") / "C.jpg"))
    assert result.outcome == "inconclusive"
    assert result.details["generative_source_types"] == []
    assert result.details["synthetic_source_types"] == ["algorithmicMedia"]
    assert result.reasons[0].startswith("C2PA manifest declares algorithmicMedia (made by an algorithm not based")
    assert "not generative AI; a finding, not flagged on its own" in result.reasons[0]
    assert result.details["signer"]["common_name"] == "C2PA Signer"
    assert result.details["validation_state"] == "Valid"


def test_xca_jpg_is_tampered(detector):
    result = detector.detect_one(item(fixture_dir("c2pa/signed_invalid") / "XCA.jpg"))
    facts = result.details
    assert facts["tampered"] and facts["tamper_codes"] == ["assertion.dataHash.mismatch"]
    assert facts["validation_state"] == "Invalid"
    assert facts["signed_valid"]  # the claim's signature itself still validates
    assert result.outcome == "inconclusive"
    assert "altered after it was signed (tampering)" in result.reasons[0]


def test_files_without_manifest_are_inconclusive(detector):
    files = sorted(fixture_dir("c2pa/no_manifest").iterdir())
    assert {p.suffix for p in files} >= {".jpg", ".png", ".webp", ".mp4"}
    for path in files:
        result = detector.detect_one(item(path))
        assert (result.outcome, result.reasons) == ("inconclusive", ["no C2PA manifest"]), path.name
        assert result.details["manifest_present"] is False


def test_recorded_reader_json_gives_the_same_facts(detector):
    """The stored Reader.json() output and a live read agree on what matters."""
    recorded = fixture_dir("c2pa/reader_json")
    for path in sorted(recorded.glob("*.json")):
        name = path.name.split(".c2pa-python")[0]
        source = next((d / name for d in (FIXTURES / "c2pa/signed_valid", FIXTURES / "c2pa/signed_invalid") if (d / name).exists()))
        stored = analyse_store(json.loads(path.read_text()))
        live = detector.detect_one(item(source)).details
        for key in ("generative_source_types", "tampered", "signed_valid", "validation_state", "claim_generator"):
            assert stored[key] == live[key], (name, key)


# ---------------------------------------------------------------------------- own manifests


def test_own_manifest_declaring_trained_algorithmic_media_is_fake(tmp_path):
    chain = make_signing_chain()
    signed = sign_jpeg(plain_jpeg(), TRAINED, chain)
    result = C2PADetector().detect_one(MediaInput("0" * 64, "image", signed, "image/jpeg"))
    assert result.outcome == "fake"
    assert result.details["signed_valid"] is True and result.details["trusted"] is False
    assert result.reasons[0] == (
        "C2PA manifest declares trainedAlgorithmicMedia (signed by deepwatch test signer "
        "(issuer deepwatch tests), claim generator deepwatch-test-generator/1.0)"
    )
    # With our CA as a trust anchor the same file is also trusted.
    (tmp_path / "ca.pem").write_bytes(chain[2])
    trusting = C2PADetector(trust=TrustSettings.build(anchors=[tmp_path / "ca.pem"]))
    trusted = trusting.detect_one(MediaInput("0" * 64, "image", signed, "image/jpeg"))
    assert trusted.details["trusted"] and trusted.details["validation_state"] == "Trusted"
    assert trusted.outcome == "fake" and not trusted.details["credential_codes"]


def test_own_manifest_altered_after_signing_is_tampered():
    signed = bytearray(sign_jpeg(plain_jpeg(1), TRAINED))
    end = signed.rindex(b"\xff\xd9")
    signed[end - 40] ^= 0x01  # one bit of the picture data, after the manifest was signed
    result = C2PADetector().detect_one(MediaInput("0" * 64, "image", bytes(signed), "image/jpeg"))
    assert result.details["tampered"] and result.details["generative_ai_declared"]
    assert result.outcome == "fake"  # the declaration stands; fusion weighs the tampering
    assert "tampering" in result.reasons[0]


def test_own_manifest_without_ai_declaration_is_real():
    signed = sign_jpeg(plain_jpeg(2), "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture")
    result = C2PADetector().detect_one(MediaInput("0" * 64, "image", signed, "image/jpeg"))
    assert result.outcome == "real" and not result.details["generative_ai_declared"]
    assert result.details["digital_source_types"][0]["type"] == "digitalCapture"


# ---------------------------------------------------------------------------- judging codes


def _store(failure: list[str], success: tuple[str, ...] = ("claimSignature.validated",)) -> dict:
    manifest = {
        "claim_generator": "gen/1",
        "signature_info": {"common_name": "Signer", "issuer": "CA"},
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": TRAINED}]}}],
    }
    return {
        "active_manifest": "m",
        "manifests": {"m": manifest},
        "validation_results": {
            "activeManifest": {
                "success": [{"code": c} for c in success],
                "informational": [],
                "failure": [{"code": c} for c in failure],
            }
        },
    }


def test_expired_or_untrusted_certificates_are_not_forgery():
    facts = analyse_store(_store(["signingCredential.expired", "claimSignature.outsideValidity", "timeStamp.untrusted"]))
    assert facts["signed_valid"] and not facts["tampered"]
    assert judge(facts)[0] == "fake"


def test_broken_signature_makes_the_declaration_unreliable():
    facts = analyse_store(_store(["claimSignature.mismatch"], success=()))
    assert not facts["signed_valid"] and facts["signature_failure_codes"] == ["claimSignature.mismatch"]
    outcome, reasons = judge(facts)
    assert outcome == "inconclusive"
    assert any("cannot be relied on" in r for r in reasons)


def test_unreadable_bytes(detector):
    corrupt = detector.detect_one(MediaInput("0" * 64, "image", b"\xff\xd8\xff\xe0" + b"0" * 40, "image/jpeg"))
    assert corrupt.outcome == "error" and "could not parse" in corrupt.reasons[0]
    html = detector.detect_one(MediaInput("0" * 64, "image", b"<html><body>x</body></html>", "image/jpeg"))
    assert html.outcome == "inconclusive" and "not supported" in html.reasons[0]
    batch = detector.detect_batch([MediaInput("0" * 64, "image", b"", "image/png"), item(fixture_dir("c2pa/signed_valid") / "C.jpg")])
    assert [d.outcome for d in batch][1] == "inconclusive"  # algorithmicMedia: read, not flagged
    assert batch[1].details["synthetic_source_types"] == ["algorithmicMedia"]
