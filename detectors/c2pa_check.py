"""C2PA Content Credentials: does the file carry a signed statement that AI made it?

Reads the manifest store with c2pa-python's Reader and judges it from the validation
status codes rather than the overall state alone, because the overall state mixes three
different things:

* credential problems (an untrusted or since-expired signing certificate): the signature
  still checks out, so the claims are what the signer said; this is NOT a forgery, but who
  the signer is decides what the claim is worth (detectors/c2pa_trust.py: only a signer whose
  chain ends in a configured trust anchor can confirm AI);
* tampering (a data-hash mismatch): the pixels were changed after signing;
* a broken signature or altered manifest: nothing in it can be relied on.
"""
from __future__ import annotations

import io
import json
from typing import Any

from detectors.base import Detection, MediaInput
from detectors.c2pa_trust import TrustSettings, assess, cert_facts, trust_words
from detectors.hashing import sniff_mime
from detectors.source_types import SYNTHETIC, lookup

DETECTOR_VERSION = "2.0"  # 2.0: trust list decides; IPTC source types mapped term by term
# Failure codes about the certificate or the clock, not about what was signed.
_CREDENTIAL_PREFIXES = ("signingCredential.untrusted", "signingCredential.expired",
                        "signingCredential.ocsp", "timeStamp.")
_CREDENTIAL_CODES = {"claimSignature.outsideValidity"}  # cert expired by signing time
# Hard-binding hash mismatches: the asset bytes differ from what was signed.
_TAMPER_CODES = {
    "assertion.dataHash.mismatch",
    "assertion.bmffHash.mismatch",
    "assertion.boxesHash.mismatch",
    "assertion.collectionHash.mismatch",
}


def _is_credential_only(code: str) -> bool:
    return code in _CREDENTIAL_CODES or code.startswith(_CREDENTIAL_PREFIXES)


def _codes(entries: list[dict[str, Any]] | None) -> list[str]:
    seen: list[str] = []
    for entry in entries or []:
        code = entry.get("code")
        if code and code not in seen:
            seen.append(code)
    return seen


def _source_types(value: Any) -> list[str]:
    """Every digitalSourceType value anywhere inside an assertion's data."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.lower().endswith("digitalsourcetype") and isinstance(inner, str):
                found.append(inner)
            else:
                found.extend(_source_types(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(_source_types(inner))
    return found


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    if manifest.get("claim_generator"):
        return str(manifest["claim_generator"])
    parts = [
        f"{info.get('name', '?')}/{info['version']}" if info.get("version") else str(info.get("name", "?"))
        for info in manifest.get("claim_generator_info") or []
    ]
    return " ".join(parts) or None


def _signer(manifest: dict[str, Any]) -> dict[str, Any]:
    info = manifest.get("signature_info") or {}
    return {k: info.get(k) for k in ("common_name", "issuer", "alg", "time") if info.get(k)}


def _signer_words(signer: dict[str, Any]) -> str:
    name = signer.get("common_name") or signer.get("issuer") or "an unnamed signer"
    issuer = signer.get("issuer")
    return f"{name} (issuer {issuer})" if issuer and issuer != name else name


def analyse_store(store: dict[str, Any], signature: dict[str, Any] | None = None,
                  trust: TrustSettings | None = None) -> dict[str, Any]:
    """The facts fusion and investigators need from a Reader.json() manifest store.

    `signature`: the active manifest's crJSON `signature` object (certificate and timestamp
    details); `trust`: the settings the store was validated with (to name the anchor).
    """
    manifests: dict[str, Any] = store.get("manifests") or {}
    active_label = store.get("active_manifest")
    active = manifests.get(active_label, {}) if active_label else {}
    results = (store.get("validation_results") or {}).get("activeManifest")
    if results is not None:
        success, info, failure = (_codes(results.get(k)) for k in ("success", "informational", "failure"))
    else:  # older readers give only the failure list
        success, info, failure = [], [], _codes(store.get("validation_status"))
    ingredient_failures: list[str] = []
    for delta in (store.get("validation_results") or {}).get("ingredientDeltas") or []:
        ingredient_failures += _codes((delta.get("validationDeltas") or {}).get("failure"))

    tamper = [c for c in failure if c in _TAMPER_CODES]
    credential = [c for c in failure if _is_credential_only(c)]
    broken = [c for c in failure if c not in tamper and c not in credential]
    signed_valid = bool(manifests) and not broken and (
        results is None or "claimSignature.validated" in success
    )

    declarations = []
    for label, manifest in manifests.items():
        for assertion in manifest.get("assertions") or []:
            for uri in _source_types(assertion.get("data")):
                known = lookup(uri)
                declarations.append(
                    {
                        "manifest": label,
                        "active": label == active_label,
                        "assertion": assertion.get("label"),
                        "type": known.term,
                        "category": known.category,
                        "meaning": known.meaning,
                        "uri": uri,
                        "claim_generator": _claim_generator(manifest),
                        "signer": _signer(manifest),
                    }
                )
    generative = [d for d in declarations if lookup(d["type"]).declares_ai]
    synthetic = [d for d in declarations if d["category"] == SYNTHETIC]
    signer_trust = assess(results, cert_facts(signature), trust, fallback_signer=_signer(active)) if manifests else None
    return {
        "manifest_present": bool(manifests),
        "manifest_count": len(manifests),
        "active_manifest": active_label,
        "validation_state": store.get("validation_state"),
        "validation_codes": {"success": success, "informational": info, "failure": failure},
        "ingredient_failure_codes": sorted(set(ingredient_failures)),
        "claim_generator": _claim_generator(active),
        "signer": _signer(active),
        "digital_source_types": declarations,
        "generative_ai_declared": bool(generative),
        "generative_source_types": sorted({d["type"] for d in generative}),
        "synthetic_source_types": sorted({d["type"] for d in synthetic}),
        "signed_valid": signed_valid,
        "trusted": bool(signer_trust and signer_trust["trusted"]),
        "trust": signer_trust,
        "credential_codes": credential,
        "tampered": bool(tamper),
        "tamper_codes": tamper,
        "signature_failure_codes": broken,
    }


def judge(facts: dict[str, Any]) -> tuple[str, list[str]]:
    """Outcome and plain-words reasons from `analyse_store` facts."""
    if not facts["manifest_present"]:
        return "inconclusive", ["no C2PA manifest"]
    reasons: list[str] = []
    outcome = "real"
    declared = [d for d in facts["digital_source_types"] if lookup(d["type"]).declares_ai]
    synthetic = [d for d in facts["digital_source_types"] if d.get("category") == SYNTHETIC]
    if declared:
        first = next((d for d in declared if d["active"]), declared[0])
        where = "" if first["active"] else " in an ingredient's manifest"
        reasons.append(
            f"C2PA manifest{where} declares {first['type']} (signed by "
            f"{_signer_words(first['signer'])}, claim generator {first['claim_generator'] or 'unknown'})"
        )
        outcome = "fake"
    elif synthetic:
        first = next((d for d in synthetic if d["active"]), synthetic[0])
        reasons.append(
            f"C2PA manifest declares {first['type']} ({first['meaning']}): other synthetic or algorithmic "
            "media, not generative AI; a finding, not flagged on its own"
        )
        outcome = "inconclusive"
    else:
        reasons.append(
            f"C2PA manifest present (signed by {_signer_words(facts['signer'])}, claim generator "
            f"{facts['claim_generator'] or 'unknown'}) with no generative-AI source type declared"
        )
    if facts["tampered"]:
        reasons.insert(0, 
            f"C2PA content hash mismatch ({', '.join(facts['tamper_codes'])}): the file was "
            "altered after it was signed (tampering)"
        )
        if outcome == "real":
            outcome = "inconclusive"
    if not facts["signed_valid"]:
        codes = ", ".join(facts["signature_failure_codes"]) or "claimSignature.validated missing"
        reasons.append(f"C2PA signature or manifest does not validate ({codes}): its claims cannot be relied on")
        outcome = "inconclusive"
    elif facts.get("trust"):
        trust = facts["trust"]
        if trust["trusted"]:
            reasons.append(f"C2PA signer trusted: {trust_words(trust)}")
        else:
            reasons.append(
                f"C2PA signer untrusted: {trust_words(trust)}; the signature itself is valid, so this is "
                "not a forgery, but anyone can make such a certificate"
            )
    return outcome, reasons


class C2PADetector:
    """Reads C2PA manifests from image and video bytes."""

    name = "c2pa"
    kinds = ("image", "video")

    def __init__(self, *, trust: TrustSettings | None = None) -> None:
        """`trust`: whose signatures count (default: the bundled C2PA trust list plus the anchors
        and allowed signers named in DEEPWATCH_C2PA_TRUST_ANCHORS / _ALLOWED_SIGNERS)."""
        import c2pa

        self._c2pa = c2pa
        self.trust = trust if trust is not None else TrustSettings.from_env()
        self.version = f"{DETECTOR_VERSION}+c2pa-python-{c2pa.__version__}+c2pa-rs-{c2pa.sdk_version()}"
        self._context = c2pa.Context.from_dict(self.trust.sdk_settings())

    def read_store(self, data: bytes, mime: str | None) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """(Reader.json(), the active manifest's crJSON signature) or None when the file has no
        manifest. Raises C2paError."""
        fmt = sniff_mime(data) or (mime or None)
        reader = self._c2pa.Reader.try_create(fmt, io.BytesIO(data), None, self._context)
        if reader is None:
            return None
        with reader:
            store = json.loads(reader.json())
            try:  # certificate and timestamp details live only in the crJSON view
                signature = _active_signature(json.loads(reader.crjson()), store.get("active_manifest"))
            except Exception:  # an older reader or an odd manifest: trust is judged without names
                signature = None
            return store, signature

    def detect_one(self, item: MediaInput) -> Detection:
        err = self._c2pa.C2paError
        try:
            store = self.read_store(item.data, item.mime)
        except err.NotSupported:
            return self._result("inconclusive", ["file format not supported by the C2PA reader"], {})
        except err.RemoteManifest as exc:
            return self._result(
                "inconclusive", [f"C2PA manifest is stored remotely and was not fetched: {exc}"], {}
            )
        except err as exc:
            return self._result("error", [f"C2PA reader could not parse the file: {exc}"], {})
        except Exception as exc:  # one odd file must not fail the batch
            return self._result("error", [f"C2PA reader failed: {type(exc).__name__}: {exc}"], {})
        if store is None:
            return self._result("inconclusive", ["no C2PA manifest"], {"manifest_present": False})
        facts = analyse_store(store[0], store[1], self.trust)
        outcome, reasons = judge(facts)
        return self._result(outcome, reasons, facts)

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        return [self.detect_one(item) for item in items]

    def _result(self, outcome: str, reasons: list[str], details: dict[str, Any]) -> Detection:
        return Detection(
            detector=self.name,
            version=self.version,
            outcome=outcome,  # type: ignore[arg-type]
            reasons=reasons,
            details=details,
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "trust": self.trust.describe()}


def _active_signature(crjson: dict[str, Any], label: str | None) -> dict[str, Any] | None:
    """The crJSON `signature` object of the manifest labelled `label`."""
    manifests = crjson.get("manifests") or []
    if isinstance(manifests, dict):
        manifests = list(manifests.values())
    for manifest in manifests:
        if not label or manifest.get("label") == label:
            return manifest.get("signature")
    return None
