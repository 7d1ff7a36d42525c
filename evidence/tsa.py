"""RFC 3161 trusted timestamps: proof from an outside authority that a sealed record existed at
a time, which our own clock and key alone cannot give.

What the authority stamps is the 32-byte sha256 digest of the sealed record, taken as the
message: the token's imprint is sha256(digest). The Ed25519 signature covers the same 32 bytes,
so one file (`digest.bin`) checks both, e.g. `openssl ts -verify -data digest.bin -in token.tsr
-CAfile tsa-ca.pem`.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import cryptography.x509
import httpx
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

SHA256_OID = cryptography.x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
QUERY_TYPE = "application/timestamp-query"
MAX_RESPONSE_BYTES = 256 * 1024  # a token with its certificate chain is a few KB
MAX_CLOCK_SKEW_S = 300  # how far the stamped time may be from when we asked


class TimestampError(RuntimeError):
    """The authority refused, could not be reached, or its token does not prove what it should."""


@dataclass(frozen=True)
class TimestampInfo:
    gen_time: datetime  # UTC, as the authority states it
    serial: int
    tsa_name: str | None  # the authority's name from the token, when it gives one


def timestamp(digest: bytes, tsa_url: str, client: httpx.Client | None = None, timeout_s: float = 10.0) -> bytes:
    """Ask the authority at `tsa_url` to stamp `digest`; returns the DER TimeStampResp.

    The request carries a fresh nonce and asks for the authority's certificates; the answer must
    be granted, echo the nonce (so it is not a replay) and carry our imprint."""
    _check_digest(digest)
    request = (
        TimestampRequestBuilder(nonce=True, cert_req=True)
        .data(digest)
        .hash_algorithm(HashAlgorithm.SHA256)
        .build()
    )
    # A plain httpx POST, not agents.fetch.Fetcher: the fetcher only GETs, and its SSRF guard is
    # for URLs taken from posts; a TSA URL comes from the operator's configuration.
    if urlsplit(str(tsa_url)).scheme not in ("http", "https"):
        raise TimestampError(f"timestamp authority URL {str(tsa_url)[:200]!r} is not http(s)")
    own_client = client is None
    http = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
    asked_at = datetime.now(timezone.utc)
    try:
        status, body = _post_bounded(http, tsa_url, request.as_bytes(), timeout_s)
    except httpx.HTTPError as exc:
        raise TimestampError(f"timestamp authority {tsa_url} could not be reached: {exc}") from None
    finally:
        if own_client:
            http.close()
    if status != 200:
        raise TimestampError(f"timestamp authority {tsa_url} answered HTTP {status}")
    response = _decode(body, f"the answer of {tsa_url}")
    _require_granted(response, tsa_url)
    if response.tst_info.nonce != request.nonce:
        raise TimestampError(f"timestamp authority {tsa_url} answered with another nonce (a replayed or misrouted answer)")
    _require_imprint(response, digest)
    _require_current(response, asked_at, tsa_url)
    return response.as_bytes()


def _post_bounded(http: httpx.Client, url: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
    """POST and read at most MAX_RESPONSE_BYTES within one overall deadline (issue 16): a hostile
    or broken authority can neither fill memory nor drip bytes to hold a seal forever."""
    deadline = time.monotonic() + timeout_s
    with http.stream("POST", url, content=body, headers={"Content-Type": QUERY_TYPE}, timeout=timeout_s) as answer:
        if answer.status_code != 200:
            return answer.status_code, b""
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
            raise TimestampError(f"timestamp authority {url} sent {int(declared):,} bytes; an answer is at most "
                                 f"{MAX_RESPONSE_BYTES:,}")
        data = bytearray()
        for chunk in answer.iter_raw():
            data += chunk
            if len(data) > MAX_RESPONSE_BYTES:
                raise TimestampError(f"timestamp authority {url} sent more than {MAX_RESPONSE_BYTES:,} bytes")
            if time.monotonic() > deadline:
                raise TimestampError(f"timestamp authority {url} did not finish its answer within {timeout_s:g} s")
        return answer.status_code, bytes(data)


def _require_current(response: TimeStampResponse, asked_at: datetime, who: str) -> None:
    """The stamped time must be now: an authority that back- or forward-dates a seal would put a
    false time on the evidence."""
    gen_time = response.tst_info.gen_time.astimezone(timezone.utc)
    if abs((gen_time - asked_at).total_seconds()) > MAX_CLOCK_SKEW_S:
        raise TimestampError(f"timestamp authority {who} stamped {gen_time.isoformat()}, but it was asked at "
                             f"{asked_at.isoformat()} (more than {MAX_CLOCK_SKEW_S} s apart)")


def verify_token(token: bytes, digest: bytes, tsa_cert_pem: bytes | None = None) -> TimestampInfo:
    """Check that `token` (a DER TimeStampResp) stamps `digest`; with `tsa_cert_pem` (the
    authority's certificates: its CA root, and optionally its own certificate to pin it) also
    that the authority's signature verifies up to that root. Raises TimestampError otherwise."""
    _check_digest(digest)
    response = _decode(token, "the stored timestamp token")
    _require_granted(response, "the authority")
    _require_imprint(response, digest)
    if tsa_cert_pem is not None:
        verifier = _verifier(tsa_cert_pem)
        try:
            verifier.verify_message(response, digest)
        except VerificationError as exc:
            raise TimestampError(f"the timestamp token's signature does not verify against the configured TSA certificate: {exc}") from None
    info = response.tst_info
    return TimestampInfo(gen_time=info.gen_time.astimezone(timezone.utc), serial=info.serial_number,
                         tsa_name=_general_name_text(info.name))


def _check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ValueError("a timestamp is taken over a 32-byte sha256 digest")


def _decode(der: bytes, what: str) -> TimeStampResponse:
    try:
        return decode_timestamp_response(der)
    except Exception as exc:  # the Rust parser raises its own ValueError subclasses
        raise TimestampError(f"{what} is not an RFC 3161 TimeStampResp: {exc}") from None


def _require_granted(response: TimeStampResponse, who: str) -> None:
    status = PKIStatus(response.status)
    if status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        text = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(f"timestamp authority {who} refused: status {status.name.lower()} ({text})")


def _require_imprint(response: TimeStampResponse, digest: bytes) -> None:
    imprint = response.tst_info.message_imprint
    if imprint.hash_algorithm != SHA256_OID:
        raise TimestampError(f"the timestamp token uses hash algorithm {imprint.hash_algorithm.dotted_string}, not sha256")
    if imprint.message != hashlib.sha256(digest).digest():
        raise TimestampError(
            f"the timestamp token does not cover digest {digest.hex()} "
            f"(it stamps imprint {imprint.message.hex()})")


def _verifier(tsa_cert_pem: bytes):
    try:
        certs = cryptography.x509.load_pem_x509_certificates(tsa_cert_pem)
    except ValueError as exc:
        raise TimestampError(f"the configured TSA certificate is not PEM: {exc}") from None
    roots = [c for c in certs if c.issuer == c.subject]
    if not roots:
        raise TimestampError("the configured TSA certificate file holds no self-signed root: add the authority's CA certificate")
    builder = VerifierBuilder()
    for cert in roots:
        builder = builder.add_root_certificate(cert)
    for cert in certs:
        if cert.issuer != cert.subject:
            if _is_timestamping_leaf(cert):
                builder = builder.tsa_certificate(cert)  # pin: the token must be signed by this one
            else:
                builder = builder.add_intermediate_certificate(cert)
    return builder.build()


def _is_timestamping_leaf(cert: cryptography.x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(cryptography.x509.ExtendedKeyUsage).value
    except cryptography.x509.ExtensionNotFound:
        return False
    return cryptography.x509.ExtendedKeyUsageOID.TIME_STAMPING in eku


def _general_name_text(name) -> str | None:
    if name is None:
        return None
    value = getattr(name, "value", name)
    if isinstance(value, cryptography.x509.Name):
        return value.rfc4514_string()
    return str(value)
