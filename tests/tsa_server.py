"""A real RFC 3161 timestamp authority on loopback, for tests.

It generates its own CA and TSA certificate (the TSA certificate carries the critical
extendedKeyUsage id-kp-timeStamping that RFC 3161 section 2.3 requires), reads each
TimeStampReq with asn1crypto, and answers a TimeStampResp whose token is a CMS SignedData over
a TSTInfo, signed with the TSA key. Nothing is faked: the same bytes would satisfy
`openssl ts -verify`. `reject = True` makes it answer every request with status "rejection".
"""
from __future__ import annotations

import hashlib
import itertools
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY_OID = "1.3.6.1.4.1.99999.3161.1"  # a private-arc test policy


class _StatusOnlyResp(core.Sequence):
    """A TimeStampResp without a token, as RFC 3161 answers a refusal (asn1crypto's own class
    makes the token mandatory)."""

    _fields = [("status", tsp.PKIStatusInfo)]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepwatch tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer: x509.Name, public_key, signing_key, *, ca: bool) -> x509.Certificate:
    # Back-dated a day so a clock a little behind still finds the certificate valid.
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(signing_key, hashes.SHA256())


class TimestampAuthority:
    """Start with `start()` (returns the URL), stop with `stop()`; or use as a context manager."""

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = _certificate("deepwatch test CA", _name("deepwatch test CA"), self.ca_key.public_key(),
                                    self.ca_key, ca=True)
        self.tsa_key = ec.generate_private_key(ec.SECP256R1())
        self.tsa_cert = _certificate("deepwatch test TSA", self.ca_cert.subject, self.tsa_key.public_key(),
                                     self.ca_key, ca=False)
        self.reject = False
        self.requests = 0
        self._serials = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- certificates a verifier is given ---------------------------------------------------------
    @property
    def tsa_cert_pem(self) -> bytes:
        return self.tsa_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def ca_cert_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    # -- the protocol ------------------------------------------------------------------------------
    def respond(self, request_der: bytes) -> bytes:
        """A DER TimeStampResp for one DER TimeStampReq."""
        self.requests += 1
        try:
            request = tsp.TimeStampReq.load(request_der)
            imprint = request["message_imprint"]
            imprint.native  # parse fully now: a malformed request is a badDataFormat answer
        except (ValueError, TypeError):
            return self._failure("bad_data_format", "request is not a DER TimeStampReq")
        if self.reject:
            return self._failure("unaccepted_policy", "this authority is refusing requests (test mode)")
        if imprint["hash_algorithm"]["algorithm"].native != "sha256":
            return self._failure("bad_alg", "only sha256 imprints are accepted")
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": self._token(request)}).dump()

    def _failure(self, fail_info: str, text: str) -> bytes:
        return _StatusOnlyResp({
            "status": {"status": "rejection", "status_string": [text], "fail_info": {fail_info}},
        }).dump()

    def _token(self, request: tsp.TimeStampReq) -> cms.ContentInfo:
        info = {
            "version": "v1",
            "policy": POLICY_OID,
            "message_imprint": request["message_imprint"],
            "serial_number": next(self._serials),
            # DER GeneralizedTime: whole seconds are enough for a test authority.
            "gen_time": datetime.now(timezone.utc).replace(microsecond=0),
            "accuracy": {"seconds": 1},
            "tsa": asn1_x509.GeneralName(
                name="directory_name", value=asn1_x509.Name.load(self.tsa_cert.subject.public_bytes())),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"].native
        tst_der = tsp.TSTInfo(info).dump()

        tsa_der = self.tsa_cert.public_bytes(serialization.Encoding.DER)
        tsa_asn1 = asn1_x509.Certificate.load(tsa_der)
        signed_attrs = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
            # ESSCertIDv2 (RFC 5816): binds the signature to this very certificate.
            {"type": "signing_certificate_v2", "values": [{"certs": [{
                "hash_algorithm": {"algorithm": "sha256"},
                "cert_hash": hashlib.sha256(tsa_der).digest(),
            }]}]},
        ])
        # The signature covers the DER of the attributes as a SET (RFC 5652 section 5.4).
        signature = self.tsa_key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
                "issuer": tsa_asn1.issuer, "serial_number": tsa_asn1.serial_number}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
            "signature": signature,
        })
        certificates = []
        if request["cert_req"].native:
            certificates = [tsa_asn1, asn1_x509.Certificate.load(self.ca_cert.public_bytes(serialization.Encoding.DER))]
        signed_data = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(tst_der)},
            "certificates": certificates,
            "signer_infos": [signer],
        })
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})

    # -- the HTTP side -----------------------------------------------------------------------------
    def start(self) -> str:
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415, "expected application/timestamp-query")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = authority.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "TimestampAuthority":
        self.url = self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
