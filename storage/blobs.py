"""Content-addressed blob stores: a filesystem path (local disk or a shared mount), or an
S3-compatible object store (storage/s3blobs.py) that every node of a cluster can reach.

Objects are named by the sha256 of their bytes and fanned out two levels deep, so the same
bytes are stored once however many posts carry them, and a write can be retried safely:
the object is written to a temporary name and renamed into place atomically.

`open_blobs(location)` picks the store from a configured location: `s3://bucket/prefix`
is the object store, a plain path the filesystem store (the default, on one machine).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from storage.s3blobs import S3BlobStore

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class BlobStoreError(OSError):
    """The store itself cannot be used (unreachable, refused, misconfigured); names the store."""


def check_sha256(sha256: str) -> str:
    """The name of a blob, or ValueError: keeps '../etc/passwd' and the like out of paths and keys."""
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


@runtime_checkable
class ContentStore(Protocol):
    """What every blob store offers; only the filesystem store also has `path()`."""

    def put(self, data: bytes) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def verify(self, sha256: str) -> bool: ...


def open_blobs(location: str | os.PathLike[str]) -> BlobStore | S3BlobStore:
    """The blob store a configured location names.

    `s3://bucket/prefix[?endpoint=URL]` -> S3BlobStore (endpoint from the query or
    DEEPWATCH_S3_ENDPOINT, credentials from the standard AWS chain); a filesystem path ->
    BlobStore. Any other `scheme://` is refused rather than made into a folder of that name.
    """
    text = os.fspath(location)
    match = _URL_SCHEME.match(text) if isinstance(text, str) else None
    if match:
        scheme = match.group(1).lower()
        if scheme == "s3":
            from storage.s3blobs import S3BlobStore

            return S3BlobStore.from_location(text)
        if scheme != "file":
            raise ValueError(f"blob store location {text!r}: unknown scheme {scheme!r} "
                             f"(use a filesystem path or s3://bucket/prefix)")
        text = text[len("file://"):]
    return BlobStore(text)


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"blob {sha256} is not in the store at {self.root}") from None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def verify(self, sha256: str) -> bool:
        """True when the stored bytes still hash to their name (tamper or bit-rot check)."""
        return hashlib.sha256(self.get(sha256)).hexdigest() == sha256
