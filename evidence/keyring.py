"""The deployment's keyring: every signing key it has used, so seals stay verifiable for ever.

`keyring.json` sits next to the private key (`evidence-ed25519.pem`) in the key folder and lists
each key's id (sha256 of the raw public key), public key and validity period. Only public parts
are in it. `deepwatch keys rotate` retires the current key (its validity ends now, its PEM is kept
as `retired-<id>.pem` so the operator can archive or destroy it) and makes a new one; seals made
with the retired key still verify, because verification looks keys up here, not in the PEM.

`export_public` writes the same list for outsiders (a court, an auditor, a platform):
`deepwatch evidence verify --trusted-keys FILE` verifies with that file alone. A seal verifies
only with a key in the trusted set, made inside that key's validity period (plus a small clock
slack: the sealing host's clock and the keyring's may differ by a few seconds).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

KEYRING_FILE = "keyring.json"
KEYRING_FORMAT = "deepwatch-keyring/1"
CLOCK_SLACK = timedelta(minutes=5)


class KeyringError(RuntimeError):
    """A keyring or trusted-keys file that cannot be used; the message says why."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    public_key: str  # hex raw Ed25519 public key
    not_before: datetime | None  # None: in use before the keyring recorded it
    not_after: datetime | None  # None: still the current key

    def valid_at(self, when: datetime) -> bool:
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        if self.not_before is not None and when < self.not_before - CLOCK_SLACK:
            return False
        return self.not_after is None or when <= self.not_after + CLOCK_SLACK

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id, "algorithm": "Ed25519", "public_key": self.public_key,
            "not_before": _iso(self.not_before), "not_after": _iso(self.not_after),
        }


def keyring_path(folder: str | Path) -> Path:
    return Path(folder) / KEYRING_FILE


def load_keyring(folder: str | Path) -> list[KeyInfo]:
    """The keys recorded in the folder's keyring, oldest first; [] when there is none yet."""
    path = keyring_path(folder)
    if not path.exists():
        return []
    return parse_keys(_read_json(path), str(path))


def load_trusted(path: str | Path) -> dict[str, KeyInfo]:
    """A trusted-keys file (from `deepwatch keys export`), by key id. Refuses a file that holds
    private key material or a key whose id is not the hash of its public key."""
    path = Path(path)
    if not path.is_file():
        raise KeyringError(f"{path}: no such trusted-keys file")
    text = path.read_text("utf-8", errors="replace")
    if "PRIVATE KEY" in text or '"private' in text:
        raise KeyringError(f"{path} holds private key material; a trusted-keys file must hold public keys only")
    keys = parse_keys(_read_json(path), str(path))
    if not keys:
        raise KeyringError(f"{path} lists no keys")
    return {k.key_id: k for k in keys}


def parse_keys(document: Any, where: str) -> list[KeyInfo]:
    if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
        raise KeyringError(f"{where} is not a deepwatch keyring (format {KEYRING_FORMAT!r} expected)")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyringError(f"{where}: 'keys' must be a list")
    keys = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise KeyringError(f"{where}: key {n} is not an object")
        public = str(entry.get("public_key") or "").lower()
        try:
            raw = bytes.fromhex(public)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise KeyringError(f"{where}: key {n} has no 32-byte hex Ed25519 public key")
        key_id = str(entry.get("key_id") or "")
        if hashlib.sha256(raw).hexdigest() != key_id:
            raise KeyringError(f"{where}: key {n}'s key_id is not the sha256 of its public key")
        keys.append(KeyInfo(key_id, public, _time(entry.get("not_before"), where, n), _time(entry.get("not_after"), where, n)))
    return keys


def register(folder: str | Path, key_id: str, public_key: str, *, new: bool) -> None:
    """Record the folder's current key in its keyring if it is not there yet. `new`: the key was
    just made (its validity starts now); otherwise it predates the keyring (open start)."""
    keys = load_keyring(folder)
    if any(k.key_id == key_id for k in keys):
        return
    keys.append(KeyInfo(key_id, public_key, _now() if new else None, None))
    _write(folder, keys)


def retire(folder: str | Path, key_id: str, at: datetime) -> None:
    """End the validity of `key_id` at `at` (the key was rotated out)."""
    keys = load_keyring(folder)
    updated = [KeyInfo(k.key_id, k.public_key, k.not_before, at) if k.key_id == key_id and k.not_after is None else k
               for k in keys]
    _write(folder, updated)


def export_public(folder: str | Path, out: str | Path) -> list[KeyInfo]:
    """Write every key the deployment has used, public parts only, to `out`."""
    keys = load_keyring(folder)
    if not keys:
        raise KeyringError(f"no keyring in {folder}: this deployment has not signed anything yet")
    Path(out).write_text(_dump(keys), "utf-8")
    return keys


def _write(folder: str | Path, keys: list[KeyInfo]) -> None:
    path = keyring_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary name: capture workers loading the key at once must not share one.
    fd, tmp = tempfile.mkstemp(prefix=".keyring-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_dump(keys))
        os.replace(tmp, path)  # a crash mid-write never leaves a half keyring
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump(keys: list[KeyInfo]) -> str:
    return json.dumps({"format": KEYRING_FORMAT, "keys": [k.to_json() for k in keys]}, indent=2) + "\n"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyringError(f"{path} is not readable JSON: {exc}") from None


def _time(value: Any, where: str, n: int) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise KeyringError(f"{where}: key {n} has an unreadable time {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def _now() -> datetime:
    return datetime.now(timezone.utc)
