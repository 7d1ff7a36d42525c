"""Whose signature is it? The trust list that decides whether a signed C2PA claim counts.

A valid C2PA signature proves only that the holder of some certificate signed the claim; anyone
can make a certificate in a minute. So a declaration of generative AI confirms AI only when the
signer's chain ends in a configured trust anchor:

* the C2PA Conformance Program's trust list (bundled in detectors/trust/, CC BY 4.0, see its
  NOTICE.md), on by default;
* the deployment's own anchors (PEM files): a newsroom's or a platform's CA, the demo's CA;
* an allow-list of end-entity signing certificates (PEM files), trusted one by one.

These go to c2pa-rs as its trust settings (`trust.trust_anchors`, `trust.user_anchors`, and
`trust.anchors` entries for allowed signers and the C2PA TSA list), which validates the chain;
this module then reads the verdict back and names the anchor (matched by the issuer's
distinguished name) and the timestamp authority. A
certificate that has expired since signing still counts when a trusted timestamp shows it was
valid at signing time.

Configured from the environment (`DEEPWATCH_C2PA_TRUST_ANCHORS`, `DEEPWATCH_C2PA_ALLOWED_SIGNERS`:
PEM paths separated by the OS path separator), a campaign spec (`detectors.c2pa_trust`) or
`deepwatch scan --trust-anchor/--allowed-signer`.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

TRUST_DIR = Path(__file__).parent / "trust"
C2PA_TRUST_LIST = TRUST_DIR / "C2PA-TRUST-LIST.pem"
C2PA_TSA_TRUST_LIST = TRUST_DIR / "C2PA-TSA-TRUST-LIST.pem"
C2PA_LIST_NAME = "the C2PA trust list"
ENV_ANCHORS = "DEEPWATCH_C2PA_TRUST_ANCHORS"
ENV_ALLOWED = "DEEPWATCH_C2PA_ALLOWED_SIGNERS"
ENV_NO_C2PA_LIST = "DEEPWATCH_C2PA_NO_DEFAULT_TRUST_LIST"

# Distinguished-name attributes compared when matching a certificate named in a manifest to one
# on a list (the manifest reader reports these short names).
_DN_KEYS = ("CN", "O", "OU", "C", "L", "ST")
# Failure codes about the certificate's lifetime: waived when a trusted timestamp covers signing.
_EXPIRY_CODES = {"signingCredential.expired", "claimSignature.outsideValidity"}
# Failure codes that no configuration overrides.
_FATAL_CODES = {"signingCredential.revoked", "signingCredential.invalid"}
_LIST_IN_EXPLANATION = re.compile(r"found in \[(\w+)\]")


class TrustConfigError(ValueError):
    """A trust anchor or allowed-signer file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Cert:
    """One certificate from a trust file: what matching and reports need."""

    subject: tuple[tuple[str, str], ...]
    issuer: tuple[tuple[str, str], ...]
    serial: int
    pem: str
    source: str  # where it came from, in words ("the C2PA trust list", a file path)

    @property
    def name(self) -> str:
        return dn_words(dict(self.subject))


def _dn(name: Any) -> tuple[tuple[str, str], ...]:
    out = []
    for attr in name:
        key = attr.rfc4514_attribute_name
        if key in _DN_KEYS:
            out.append((key, str(attr.value)))
    return tuple(sorted(out))


def dn_words(dn: dict[str, str] | None) -> str:
    """'CN (O)' or whichever of them the name has."""
    if not dn:
        return "an unnamed party"
    cn, org = dn.get("CN"), dn.get("O")
    if cn and org and org not in cn:
        return f"{cn} ({org})"
    return cn or org or ", ".join(f"{k}={v}" for k, v in sorted(dn.items()))


def _dn_key(dn: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in (dn or {}).items() if k in _DN_KEYS))


def _parse(data: bytes, source: str) -> tuple[Cert, ...]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TrustConfigError(f"C2PA trust file {source}: not PEM certificates ({exc})") from exc
    pem = serialization.Encoding.PEM
    return tuple(
        Cert(subject=_dn(c.subject), issuer=_dn(c.issuer), serial=c.serial_number,
             pem=c.public_bytes(pem).decode(), source=source)
        for c in certs
    )


def load_certs(path: str | Path, source: str | None = None) -> tuple[Cert, ...]:
    """Every certificate in a PEM file. Raises TrustConfigError naming the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TrustConfigError(f"C2PA trust file {p}: cannot read it ({exc.strerror or exc})") from exc
    certs = _parse(data, str(p))
    return tuple(Cert(c.subject, c.issuer, c.serial, c.pem, source) for c in certs) if source else certs


def certs_from_pem(text: str, source: str) -> tuple[Cert, ...]:
    """Certificates from PEM text held in memory (e.g. the demo platform's own CA)."""
    return _parse(text.encode(), source)


@lru_cache(maxsize=1)
def c2pa_trust_list() -> tuple[Cert, ...]:
    return load_certs(C2PA_TRUST_LIST, C2PA_LIST_NAME)


@lru_cache(maxsize=1)
def c2pa_tsa_list() -> tuple[Cert, ...]:
    return load_certs(C2PA_TSA_TRUST_LIST, "the C2PA TSA trust list")


@dataclass(frozen=True)
class TrustSettings:
    """Which signers count. `anchors` and `allowed_signers` are the deployment's own additions."""

    use_c2pa_list: bool = True
    anchors: tuple[Cert, ...] = ()
    allowed_signers: tuple[Cert, ...] = field(default=())

    @classmethod
    def build(cls, *, anchors: list[str | Path] = (), allowed_signers: list[str | Path] = (),
              use_c2pa_list: bool = True, extra_anchor_pem: dict[str, str] | None = None) -> "TrustSettings":
        """From PEM paths (and in-memory PEMs keyed by a name for reports)."""
        own = [c for p in anchors for c in load_certs(p)]
        for name, text in (extra_anchor_pem or {}).items():
            own += certs_from_pem(text, name)
        allowed = [c for p in allowed_signers for c in load_certs(p)]
        if not use_c2pa_list and not own and not allowed:
            raise TrustConfigError("C2PA trust: the default trust list is switched off and no anchors or "
                                   "allowed signers are given, so no signed claim could ever be trusted")
        return cls(use_c2pa_list=use_c2pa_list, anchors=tuple(own), allowed_signers=tuple(allowed))

    @classmethod
    def from_env(cls, *, anchors: list[str | Path] = (), allowed_signers: list[str | Path] = (),
                 use_c2pa_list: bool = True, extra_anchor_pem: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> "TrustSettings":
        """`build` with DEEPWATCH_C2PA_TRUST_ANCHORS / _ALLOWED_SIGNERS (PEM paths joined by the
        OS path separator) added, and DEEPWATCH_C2PA_NO_DEFAULT_TRUST_LIST=1 dropping the C2PA list."""
        env = os.environ if env is None else env

        def paths(name: str) -> list[str]:
            return [p for p in env.get(name, "").split(os.pathsep) if p.strip()]

        off = env.get(ENV_NO_C2PA_LIST, "").strip().lower() in ("1", "true", "yes")
        return cls.build(anchors=paths(ENV_ANCHORS) + list(anchors),
                         allowed_signers=paths(ENV_ALLOWED) + list(allowed_signers),
                         use_c2pa_list=use_c2pa_list and not off, extra_anchor_pem=extra_anchor_pem)

    def sdk_settings(self) -> dict[str, Any]:
        """The settings dict c2pa-python's Context takes (c2pa-rs trust settings).

        Claim-signing anchors go in c2pa-rs's `trust_anchors` (the C2PA list) and `user_anchors`
        (ours), which its explanations name ("found in [system_anchors]"). c2pa-rs 0.91 ignored
        the older `trust.allowed_list` in our tests, while an entry of its newer `trust.anchors`
        list with an `allowed_list` is honoured; that list also takes the C2PA TSA list (kind
        "tsa"), beside the SDK's built-in legacy timestamp authorities.
        """
        trust: dict[str, Any] = {}
        lists: list[dict[str, str]] = []
        if self.use_c2pa_list:
            trust["trust_anchors"] = C2PA_TRUST_LIST.read_text()
            lists.append({"trust_kind": "tsa", "trust_anchors": C2PA_TSA_TRUST_LIST.read_text()})
        if self.anchors:
            trust["user_anchors"] = "".join(c.pem for c in self.anchors)
        if self.allowed_signers:
            lists.append({"trust_kind": "manifest", "trust_anchors": "",
                          "allowed_list": "".join(c.pem for c in self.allowed_signers)})
        if lists:
            trust["anchors"] = lists
        return {"trust": trust, "verify": {"verify_trust": True}}

    def describe(self) -> dict[str, Any]:
        return {
            "c2pa_trust_list": self.use_c2pa_list,
            "anchors": [f"{c.name} [{c.source}]" for c in self.anchors],
            "allowed_signers": [f"{c.name} [{c.source}]" for c in self.allowed_signers],
        }

    def all_anchors(self) -> tuple[Cert, ...]:
        return (c2pa_trust_list() if self.use_c2pa_list else ()) + self.anchors


# ------------------------------------------------------------------------------- assessment


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def cert_facts(signature: dict[str, Any] | None) -> dict[str, Any]:
    """Signer, issuer, serial, validity and timestamp from a crJSON `signature` object."""
    signature = signature or {}
    info = signature.get("certificateInfo") or {}
    ts = signature.get("timeStampInfo") or {}
    ts_cert = ts.get("certificateInfo") or {}
    return {
        "subject": info.get("subject") or {},
        "issuer": info.get("issuer") or {},
        "serial": info.get("serialNumber"),
        "not_before": (info.get("validity") or {}).get("notBefore"),
        "not_after": (info.get("validity") or {}).get("notAfter"),
        "timestamp": ts.get("timestamp"),
        "tsa": ts_cert.get("subject") or {},
        "tsa_issuer": ts_cert.get("issuer") or {},
    }


def _explanations(results: dict[str, Any] | None, code: str) -> list[str]:
    return [e.get("explanation") or "" for k in ("success", "informational", "failure")
            for e in (results or {}).get(k) or [] if e.get("code") == code]


def assess(results: dict[str, Any] | None, cert: dict[str, Any], settings: TrustSettings | None,
           fallback_signer: dict[str, Any] | None = None) -> dict[str, Any]:
    """Is the active manifest's signer trusted, by which anchor, and with which timestamp?

    `results`: the reader's validationResults.activeManifest; `cert`: `cert_facts` output;
    `fallback_signer`: Reader.json()'s signature_info, when the certificate details are missing.
    """
    success = {e.get("code") for e in (results or {}).get("success") or []}
    failure = {e.get("code") for e in (results or {}).get("failure") or []}
    subject, issuer = cert.get("subject") or {}, cert.get("issuer") or {}
    if not subject and fallback_signer:
        subject = {"CN": fallback_signer.get("common_name")} if fallback_signer.get("common_name") else {}
        issuer = issuer or ({"O": fallback_signer["issuer"]} if fallback_signer.get("issuer") else {})

    ts_time = _when(cert.get("timestamp"))
    ts_trusted = "timeStamp.trusted" in success
    nb, na = _when(cert.get("not_before")), _when(cert.get("not_after"))
    covered = bool(ts_trusted and ts_time and nb and na and nb <= ts_time <= na)
    expiry = failure & _EXPIRY_CODES
    fatal = failure & _FATAL_CODES

    allowed = None
    try:
        serial = int(str(cert.get("serial")), 16)
    except ValueError:
        serial = None
    if settings is not None and serial is not None:
        key = _dn_key(issuer)
        allowed = next((c for c in settings.allowed_signers if c.serial == serial and c.issuer == key), None)
    # Only c2pa-rs's verdict makes a signer trusted: it checked the certificate bytes. Issuer name
    # and serial (all the manifest report gives us) can be copied by a self-made CA, so they only
    # name which allowed certificate it was.
    chain_ok = "signingCredential.trusted" in success
    trusted = bool(chain_ok and not fatal and (not expiry or covered))

    anchor, trust_list = None, None
    if chain_ok:
        listed = [m.group(1) for x in _explanations(results, "signingCredential.trusted")
                  for m in [_LIST_IN_EXPLANATION.search(x)] if m]
        pool = settings.all_anchors() if settings else ()
        if listed and listed[0] == "system_anchors":
            trust_list = C2PA_LIST_NAME
            pool = tuple(a for a in pool if a.source == C2PA_LIST_NAME)
        elif listed and listed[0] == "user_anchors":
            trust_list = "the deployment's own anchors"
            pool = settings.anchors if settings else ()
        # Named by the issuer's distinguished name, within the list c2pa-rs says it found.
        match = next((a for a in pool if a.subject == _dn_key(issuer)), None)
        if match is not None:
            anchor = f"{match.name} [{match.source}]"
            trust_list = trust_list or match.source
        elif allowed is not None:
            trust_list = "the allowed signers"
            anchor = f"allowed signing certificate {allowed.name} [{allowed.source}]"
        else:
            anchor = f"a CA above the issuer {dn_words(issuer)} [{trust_list or 'configured anchors'}]"

    tsa = cert.get("tsa") or {}
    tsa_issuer_key = _dn_key(cert.get("tsa_issuer"))
    tsa_listed = bool(tsa) and any(c.subject == tsa_issuer_key for c in c2pa_tsa_list())
    problems = sorted(c for c in failure if c.startswith("signingCredential.") or c in _EXPIRY_CODES
                      or c.startswith("timeStamp."))
    return {
        "signer": dn_words(subject) if subject else None,
        "signer_dn": subject,
        "issuer": dn_words(issuer) if issuer else None,
        "issuer_dn": issuer,
        "serial": cert.get("serial"),
        "not_before": cert.get("not_before"),
        "not_after": cert.get("not_after"),
        "trusted": trusted,
        "trust_list": trust_list if trusted else None,
        "anchor": anchor if trusted else None,
        # c2pa-rs judges a timestamped signature at signing time and then reports no expiry at
        # all; the report still says the certificate has expired since.
        "expired_but_timestamped": bool(trusted and covered and (expiry or (na and na < dt.datetime.now(dt.timezone.utc)))),
        "timestamp": {
            "time": cert.get("timestamp"),
            "tsa": dn_words(tsa) if tsa else None,
            "tsa_issuer": dn_words(cert.get("tsa_issuer")) if cert.get("tsa_issuer") else None,
            "trusted": ts_trusted if cert.get("timestamp") else None,
            "tsa_on_c2pa_tsa_list": tsa_listed,
        } if cert.get("timestamp") else None,
        "problems": problems,
        "settings_used": settings is not None,
    }


def trust_words(trust: dict[str, Any]) -> str:
    """One line for reports: signer, issuer, trusted or not (by which anchor), timestamp."""
    who = f"signer {trust.get('signer') or 'unnamed'}, issuer {trust.get('issuer') or 'unknown'}"
    if trust.get("trusted"):
        state = f"trusted via {trust['anchor']}"
        if trust.get("expired_but_timestamped"):
            state += " (certificate expired since, valid when signed per the trusted timestamp)"
    else:
        state = "not on the trust list" + (f" ({', '.join(trust['problems'])})" if trust.get("problems") else "")
    ts = trust.get("timestamp")
    stamp = (f"; timestamp {ts['time']} by {ts['tsa'] or 'an unnamed TSA'}"
             f" ({'trusted' if ts.get('trusted') else 'untrusted'})") if ts else "; no timestamp"
    return f"{who}; {state}{stamp}"


def trust_of(detections: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The C2PA signer's trust record among stored detection dicts, if a manifest was read."""
    return next((d["details"]["trust"] for d in detections
                 if d.get("detector") == "c2pa" and (d.get("details") or {}).get("trust")), None)
