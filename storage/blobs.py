"""Content-addressed blob store on a filesystem path (local disk or a shared mount).

Objects are named by the sha256 of their bytes and fanned out two levels deep, so the same
bytes are stored once however many posts carry them, and a write can be retried safely:
the object is written to a temporary name and renamed into place atomically.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
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
