"""Provenance marks on the demo world's "AI-generated" images: C2PA manifests and invisible watermarks.

C2PA: the world makes its own two-level PKI (a root CA and a leaf signing certificate, ES256 /
P-256) with `cryptography`, and signs with `c2pa.Builder`. Keys are derived from the world seed and
certificates are signed with deterministic ECDSA (RFC 6979), so the PKI is identical on every
run. The signed files are NOT byte-identical between runs: c2pa-rs puts fresh random salts into
the manifest's hashed assertions (there is no setting to fix them); the pixels, the manifest
label and instance id are the same every time.

Watermarks: the `invisible-watermark` library's `dwtDct` method with the payloads real generators
use (`detectors.watermark_payloads`). Its decoding fails on a fair share of images, so
`embed_watermark` verifies the payload reads back from the exact bytes it returns and reports
failure instead of handing out an image that does not carry its mark.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from detectors.watermark_payloads import KNOWN_WATERMARKS, WatermarkPayload

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR_NAME = "DreamCanvas"  # a fictional image generator
GENERATOR_VERSION = "3.1"
SIGNER_CN = "DreamCanvas Content Credentials"
SIGNER_ORG = "DreamCanvas Labs (demo)"
CA_CN = "Deepwatch Demo Root CA"

# P-256 group order: a derived private scalar must lie in [1, n - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: str  # leaf then CA, PEM
    key_pem: str  # leaf private key, PKCS#8 PEM
    ca_pem: str


def _derive_key(seed: int, role: str):
    from cryptography.hazmat.primitives.asymmetric import ec

    digest = hashlib.sha256(f"deepwatch-demo:{seed}:{role}".encode()).digest()
    scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _sign_cert(builder, key):
    from cryptography.hazmat.primitives import hashes

    try:
        # RFC 6979: the same certificate bytes on every run (cryptography >= 44).
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    except TypeError:
        return builder.sign(key, hashes.SHA256())


@lru_cache(maxsize=8)
def signing_identity(seed: int) -> SigningIdentity:
    """A CA and a leaf certificate fit for C2PA signing (digitalSignature, emailProtection EKU,
    subject and authority key identifiers), derived from `seed`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key, leaf_key = _derive_key(seed, "ca"), _derive_key(seed, "leaf")
    # Fixed validity window: deterministic, and it covers the demo's fictional 2026 election.
    not_before = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    not_after = dt.datetime(2035, 12, 31, tzinfo=dt.timezone.utc)
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, CA_CN),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Deepwatch Demo"),
    ])
    leaf_name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, SIGNER_CN),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIGNER_ORG),
    ])
    no_usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False)
    ca = _sign_cert(
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(0x5EED0000 + seed % 0xFFFF).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **no_usage),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False),
        ca_key,
    )
    leaf = _sign_cert(
        x509.CertificateBuilder()
        .subject_name(leaf_name).issuer_name(ca_name).public_key(leaf_key.public_key())
        .serial_number(0x5EED1000 + seed % 0xFFFF).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **no_usage),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False),
        ca_key,
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem).decode()
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    return SigningIdentity(chain_pem=leaf.public_bytes(pem).decode() + ca_pem, key_pem=key_pem, ca_pem=ca_pem)


def sign_c2pa(image: bytes, mime: str, *, seed: int, item_id: str, title: str) -> bytes:
    """Embed a signed C2PA manifest whose c2pa.created action declares trainedAlgorithmicMedia."""
    import c2pa

    ident = signing_identity(seed)
    # Manifest label and instance id from the item, so they are stable across builds.
    stable = uuid.UUID(bytes=hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:16], version=4)
    manifest = {
        "claim_generator_info": [{"name": GENERATOR_NAME, "version": GENERATOR_VERSION}],
        "label": f"urn:c2pa:{stable}",
        "instance_id": f"xmp:iid:{stable}",
        "title": title,
        "format": mime,
        "assertions": [{
            "label": "c2pa.actions",
            "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION},
            }]},
        }],
    }
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=ident.chain_pem.encode(),
                               private_key=ident.key_pem.encode(), ta_url=None)
    signer = c2pa.Signer.from_info(info)
    try:
        with c2pa.Builder(json.dumps(manifest)) as builder:
            dest = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(image), dest)
            return dest.getvalue()
    finally:
        signer.close()


def read_c2pa(data: bytes, mime: str) -> dict:
    """The manifest store as a dict (Reader.json()), plus the overall validation state."""
    import c2pa

    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        store = json.loads(reader.json())
        store["_validation_state"] = reader.get_validation_state()
        return store


def declared_source_types(store: dict) -> list[str]:
    types = []
    for manifest in store.get("manifests", {}).values():
        for assertion in manifest.get("assertions", []):
            if assertion.get("label", "").startswith("c2pa.actions"):
                for action in assertion.get("data", {}).get("actions", []):
                    if "digitalSourceType" in action:
                        types.append(action["digitalSourceType"])
    return types


def _payload_arg(payload: WatermarkPayload) -> tuple[str, object]:
    if payload.payload_type == "bytes":
        data = bytes(int("".join(map(str, payload.bits[i:i + 8])), 2) for i in range(0, len(payload.bits), 8))
        return "bytes", data
    return "bits", list(payload.bits)


def decode_watermark_bits(data: bytes, payload: WatermarkPayload, *, rgb_order: bool) -> tuple[int, ...] | None:
    """Decode `payload`'s length from image bytes; `rgb_order` feeds the decoder RGB instead of
    the BGR array cv2 gives (the diffusers convention). None when the image cannot be read."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return _decode_array(np.ascontiguousarray(bgr[:, :, ::-1]) if rgb_order else bgr, payload)


def _decode_array(arr: np.ndarray, payload: WatermarkPayload) -> tuple[int, ...]:
    from imwatermark import WatermarkDecoder

    decoded = WatermarkDecoder("bits", payload.length_bits).decode(arr, "dwtDct")
    return tuple(int(b) for b in decoded)


def embed_watermark(pixels: np.ndarray, payload_name: str, *, rgb_order: bool = False) -> bytes | None:
    """PNG bytes of `pixels` (RGB) carrying `payload_name` via dwtDct, or None when the payload
    does not read back exactly from those bytes (the caller then tries another image).

    `rgb_order=False` embeds into the BGR array as Stability's and CompVis's scripts do;
    True embeds into the RGB array as diffusers' SDXL watermarker does.
    """
    from imwatermark import WatermarkEncoder

    from demo_platform.imagery import png_bytes

    payload = KNOWN_WATERMARKS[payload_name]
    if min(pixels.shape[:2]) < 256:
        raise ValueError(f"dwtDct needs images of at least 256x256, got {pixels.shape[1]}x{pixels.shape[0]}")
    encoder = WatermarkEncoder()
    encoder.set_watermark(*_payload_arg(payload))
    arr = np.ascontiguousarray(pixels if rgb_order else pixels[:, :, ::-1])
    marked = encoder.encode(arr, "dwtDct")
    # Cheap pre-check on the array (PNG is lossless, so it decodes to the same array); most
    # failures happen on images with large flat colour areas, where dwtDct's votes go one way.
    if _decode_array(marked, payload) != payload.bits:
        return None
    rgb = marked if rgb_order else marked[:, :, ::-1]
    data = png_bytes(np.ascontiguousarray(rgb))
    if decode_watermark_bits(data, payload, rgb_order=rgb_order) != payload.bits:
        return None
    return data
