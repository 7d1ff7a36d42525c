"""`deepwatch keys`: the deployment's signing keys (list, export the public parts, rotate).

Registered on the `deepwatch` app by one import line at the bottom of orchestrator/cli.py. The
keys live in the key folder (`DEEPWATCH_KEY_DIR`); its keyring.json lists every key ever used, so
an outsider given `keys export`'s file can verify every seal, before and after a rotation.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestrator.cli import _fail, app, console

keys_app = typer.Typer(help="The evidence signing keys: list, export public keys, rotate.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every key the deployment has signed with, and when each was valid."""
    from evidence.keyring import KeyringError, load_keyring
    from evidence.signing import key_dir

    try:
        keys = load_keyring(key_dir())
    except KeyringError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([k.to_json() for k in keys], indent=2))
        return
    if not keys:
        console.print(f"no keys in {key_dir()}: nothing has been signed yet")
        return
    for k in keys:
        state = "current" if k.not_after is None else f"retired {k.not_after.isoformat()}"
        since = k.not_before.isoformat() if k.not_before else "(before the keyring)"
        console.print(f"{k.key_id}  from {since}  {state}", highlight=False)


@keys_app.command("export")
def keys_export(out: Path = typer.Argument(..., help="File to write (JSON; public keys only)")) -> None:
    """Write the public keys of every key the deployment has used, with ids and validity, for
    `deepwatch evidence verify --trusted-keys FILE` on another machine. No private part."""
    from evidence.keyring import KeyringError, export_public
    from evidence.signing import key_dir

    if out.exists():
        _fail(f"{out} exists; choose a new file")
    try:
        keys = export_public(key_dir(), out)
    except (KeyringError, OSError) as exc:
        _fail(str(exc))
    console.print(f"{len(keys)} public key(s) written to {out}")


@keys_app.command("rotate")
def keys_rotate(yes: bool = typer.Option(False, "--yes", help="Really retire the current key")) -> None:
    """Retire the current signing key and make a new one. Older seals stay verifiable: the
    retired key stays in the keyring with its validity period."""
    from evidence.signing import SigningError, key_dir, rotate

    if not yes:
        _fail("rotating retires the current signing key; say --yes to go ahead")
    try:
        old, new = rotate(key_dir())
    except (SigningError, OSError) as exc:
        _fail(f"rotation failed: {exc}")
    was = f"retired {old[:16]}..., " if old else ""
    console.print(f"{was}new signing key {new.key_id[:16]}...; export the public keys again for outside verifiers",
                  highlight=False)
