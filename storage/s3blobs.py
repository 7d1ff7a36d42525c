"""Content-addressed blob store in an S3-compatible object store (AWS S3, MinIO, Ceph, ...).

The same contract as the filesystem `BlobStore` (put/get/exists/verify, named by sha256) for a
cluster whose nodes share no disk. Keys are `prefix/ab/cd/<sha256>`, the local fan-out, so a
bucket and a local store can be copied into each other name for name. There is no `path()`:
callers that need a file on disk must go through `get()`.

Configured as `s3://bucket/prefix`. The endpoint comes from `?endpoint=URL` in the location or
DEEPWATCH_S3_ENDPOINT (unset: AWS itself); credentials and region from the standard AWS chain
(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/config, instance roles). The
credentials need s3:GetObject, s3:PutObject and s3:ListBucket on the bucket: without ListBucket
S3 answers a missing key with 403 instead of 404, and a missing blob would read as "refused".
The bucket must exist; the store never creates one (that is an operator's decision about
region, retention and access).
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

from storage.blobs import BlobStoreError, check_sha256

ENDPOINT_ENV = "DEEPWATCH_S3_ENDPOINT"
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId",
            "ExpiredToken", "InvalidToken", "AuthorizationHeaderMalformed", "AllAccessDisabled"}
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DAMAGED_IN_TRANSIT = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}


def parse_s3_location(location: str) -> tuple[str, str, str | None]:
    """`s3://bucket/prefix[?endpoint=URL]` -> (bucket, prefix, endpoint from the query or None)."""
    parts = urlsplit(location)
    if parts.scheme.lower() != "s3":
        raise ValueError(f"blob store location {location!r} is not an s3:// URL")
    bucket = parts.netloc
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"blob store location {location!r}: {bucket!r} is not a valid S3 bucket name "
                         f"(3-63 lowercase letters, digits, dots and hyphens)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"endpoint"})
    if unknown:
        raise ValueError(f"blob store location {location!r}: unknown option(s) {', '.join(unknown)} "
                         f"(only ?endpoint=URL is understood)")
    endpoint = query["endpoint"][-1] if "endpoint" in query else None
    return bucket, parts.path.strip("/"), endpoint


def _check_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"S3 endpoint {endpoint!r} must be an http:// or https:// URL with a host")
    return endpoint.rstrip("/")


class S3BlobStore:
    """Blobs as objects `prefix/ab/cd/<sha256>` in one bucket of an S3-compatible store."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, check: bool = True):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = _check_endpoint(endpoint_url) if endpoint_url else None
        # One session per store: boto3's default session is not safe to share between threads
        # while clients are being made, and each store may carry its own endpoint.
        session = boto3.session.Session()
        config = Config(
            connect_timeout=5, read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},  # a dead endpoint fails in seconds, not minutes
            # Self-hosted servers answer on one host name, not bucket.host.
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            # botocore's default CRC32 trailers are refused by several S3-compatible servers;
            # put() sends its own SHA-256 checksum, which every store that checks one checks.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = session.client("s3", endpoint_url=self.endpoint_url,
                                      region_name=session.region_name or "us-east-1", config=config)
        if session.get_credentials() is None:
            raise BlobStoreError(f"no AWS credentials for {self.location} at {self.endpoint}: set "
                                 f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials")
        if check:
            self._check_bucket()

    @classmethod
    def from_location(cls, location: str, *, check: bool = True) -> S3BlobStore:
        bucket, prefix, endpoint = parse_s3_location(location)
        return cls(bucket, prefix, endpoint_url=endpoint or os.environ.get(ENDPOINT_ENV) or None, check=check)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or self._client.meta.endpoint_url

    def __repr__(self) -> str:
        return f"S3BlobStore({self.location!r}, endpoint={self.endpoint!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # boto3 clients do not pickle; a copy sent to another process opens its own client.
        return (_reopen, (self.bucket, self.prefix, self.endpoint_url))

    def key(self, sha256: str) -> str:
        check_sha256(sha256)
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, data: bytes) -> str:
        data = bytes(data)
        raw_digest = hashlib.sha256(data).digest()
        digest = raw_digest.hex()
        key = self.key(digest)
        if self._head(key):
            return digest  # same name, same bytes: stored once however many posts carry them
        # Two nodes putting the same bytes at once both write identical content, so the race is
        # harmless. The checksum makes the server refuse bytes damaged on the way.
        self._call("store", digest, self._client.put_object, Bucket=self.bucket, Key=key, Body=data,
                   ChecksumSHA256=base64.b64encode(raw_digest).decode("ascii"),
                   ContentType="application/octet-stream", Metadata={"sha256": digest})
        return digest

    def get(self, sha256: str) -> bytes:
        key = self.key(sha256)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except Exception as exc:  # noqa: BLE001 - sorted into KeyError or BlobStoreError below
            if _error_code(exc) in _NOT_FOUND:
                raise KeyError(f"blob {sha256} is not in the store at {self.location} ({self.endpoint})") from None
            self._raise(exc, "read", sha256)

    def exists(self, sha256: str) -> bool:
        return self._head(self.key(sha256))

    def verify(self, sha256: str) -> bool:
        """True when the stored bytes still hash to their name (tamper or bit-rot check).

        The bytes are fetched and hashed here rather than trusting the checksum the server
        kept: the point is to catch an object rewritten behind the store's back."""
        return hashlib.sha256(self.get(sha256)).hexdigest() == sha256

    # -- plumbing ---------------------------------------------------------------------------------
    def _check_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in _NOT_FOUND | {"NoSuchBucket"}:
                raise BlobStoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint} "
                                     f"(blob store {self.location}); create it first") from None
            self._raise(exc, "open", None)

    def _head(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in _NOT_FOUND:
                return False
            self._raise(exc, "look up", key.rsplit("/", 1)[-1])

    def _call(self, action: str, sha256: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:  # noqa: BLE001
            self._raise(exc, action, sha256)

    def _raise(self, exc: Exception, action: str, sha256: str | None) -> NoReturn:
        """Turn botocore's errors into one that names the store, the endpoint and what to check."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

        what = f"blob {sha256} in {self.location}" if sha256 else self.location
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            raise BlobStoreError(f"cannot {action} {what} at {self.endpoint}: {exc}") from exc
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            message = exc.response.get("Error", {}).get("Message") or ""
            detail = f"{code}: {message}" if message else code
            if code in _REFUSED:
                raise BlobStoreError(f"S3 endpoint {self.endpoint} refused to {action} {what} ({detail}); "
                                     f"check the credentials and their access to bucket {self.bucket!r}") from exc
            if code in _DAMAGED_IN_TRANSIT:
                raise BlobStoreError(f"S3 endpoint {self.endpoint} refused {what}: the bytes it received do not "
                                     f"match their checksum ({detail}); nothing was stored") from exc
            raise BlobStoreError(f"S3 endpoint {self.endpoint} failed to {action} {what} ({detail})") from exc
        if isinstance(exc, BotoCoreError):
            raise BlobStoreError(f"cannot reach the S3 endpoint {self.endpoint} to {action} {what}: {exc}") from exc
        raise exc


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _reopen(bucket: str, prefix: str, endpoint_url: str | None) -> S3BlobStore:
    return S3BlobStore(bucket, prefix, endpoint_url=endpoint_url, check=False)
