"""Ed25519 signing of evidence bundles with a key kept outside the database.

The key is generated on first use and stored as a PEM file (mode 0600) in the key folder:
`DEEPWATCH_KEY_DIR`, else `var/keys` next to the database's default home. Someone who can edit the
database cannot re-sign what they changed without also holding this file; deployments should keep
the folder on a different volume (or an HSM-backed path) from the database.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DEFAULT_KEY_DIR = "var/keys"
KEY_FILE = "evidence-ed25519.pem"


class SigningError(RuntimeError):
    pass


def key_dir() -> Path:
    return Path(os.environ.get("DEEPWATCH_KEY_DIR", DEFAULT_KEY_DIR))


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey
    folder: Path | None = None  # the key folder (its keyring lists every key it has used)
    loaded_from: tuple[int, int] | None = None  # (inode, mtime_ns) of the PEM when it was read

    @classmethod
    def load_or_create(cls, folder: str | Path | None = None) -> "Signer":
        path = Path(folder) if folder is not None else key_dir()
        pem = path / KEY_FILE
        if pem.exists():
            try:
                key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise SigningError(f"{pem} is not a readable PEM private key: {exc}") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningError(f"{pem} holds a {type(key).__name__}, not an Ed25519 key")
            signer = cls(key, path, _stamp(pem))
            _register(signer, new=False)  # a key made before keyrings existed joins it now
            return signer
        path.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        _write_private(pem, key)
        signer = cls(key, path, _stamp(pem))
        _register(signer, new=True)
        return signer

    def current(self) -> "Signer":
        """This signer, or the folder's new key when it was rotated since this one was loaded: a
        long-running process (the console, a campaign) must not go on signing with a retired key,
        whose seals would fall outside its validity period."""
        if self.folder is None:
            return self
        pem = self.folder / KEY_FILE
        try:
            stamp = _stamp(pem)
        except OSError:
            return self
        return self if stamp == self.loaded_from else Signer.load_or_create(self.folder)

    @property
    def public_key_hex(self) -> str:
        return public_key_bytes(self.private_key.public_key()).hex()

    @property
    def key_id(self) -> str:
        return hashlib.sha256(bytes.fromhex(self.public_key_hex)).hexdigest()

    def sign(self, data: bytes) -> str:
        """Hex signature over `data`."""
        return self.private_key.sign(data).hex()


def rotate(folder: str | Path | None = None) -> tuple[str | None, "Signer"]:
    """Retire the folder's current key and make a new one; returns (old key id or None, new
    signer). The old key stays in the keyring (validity ended now), so its seals still verify;
    its PEM is kept as retired-<id>.pem for the operator to archive or destroy."""
    from evidence.keyring import retire

    path = Path(folder) if folder is not None else key_dir()
    pem = path / KEY_FILE
    old = None
    if pem.exists():
        current = Signer.load_or_create(path)
        old = current.key_id
        retire(path, old, datetime.now(timezone.utc))
        os.replace(pem, path / f"retired-{old[:16]}.pem")
    return old, Signer.load_or_create(path)


def _stamp(pem: Path) -> tuple[int, int]:
    st = pem.stat()
    return st.st_ino, st.st_mtime_ns


def _write_private(pem: Path, key: Ed25519PrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # Create with 0600 from the start: no moment where another user could read it.
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _register(signer: "Signer", *, new: bool) -> None:
    from evidence.keyring import KeyringError, register

    try:
        register(signer.folder, signer.key_id, signer.public_key_hex, new=new)
    except OSError:
        if not new:
            return  # a read-only key folder (a mounted secret) still signs; verify falls back to its key
        raise
    except KeyringError as exc:
        raise SigningError(f"cannot record the key in {signer.folder}'s keyring: {exc}") from None


def deployment_key_id(folder: str | Path | None = None) -> str | None:
    """The key id of the deployment's signing key, or None when no key was made yet. Unlike
    `Signer.load_or_create`, never creates one: verifying must not mint a key."""
    path = (Path(folder) if folder is not None else key_dir()) / KEY_FILE
    if not path.exists():
        return None
    return Signer.load_or_create(path.parent).key_id


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verify_signature(public_key_hex: str, signature_hex: str, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(bytes.fromhex(signature_hex), data)
        return True
    except (InvalidSignature, ValueError):
        return False
