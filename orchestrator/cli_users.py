"""`deepwatch user`: console accounts, their API tokens, and revoking them.

Passwords are read from a hidden prompt (typed twice) or, for scripts, from the first line of
stdin with --password-stdin; never from an argument, where shell history and `ps` would keep
them. Every change is written to the audit log as the operating-system user who ran it.
"""
from __future__ import annotations

import getpass
import hashlib
import sys
from typing import Optional

import typer
from rich.cells import cell_len
from rich.markup import escape

from orchestrator.cli import DbOpt, _fail, _open_store, app, console, err

user_app = typer.Typer(help="Console accounts and API tokens.", no_args_is_help=True)
app.add_typer(user_app, name="user")

PasswordStdinOpt = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin")


def _operator() -> str:
    """Who ran the command, for the audit log (the CLI has no console login)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container: still audit, anonymously
        return "cli:unknown"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            _fail("--password-stdin: nothing on stdin")
        return line.rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _time(value) -> str:
    from storage.db import as_utc

    value = as_utc(value)
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _line(*cells: str, widths: tuple[int, ...] = (24, 13, 7, 20, 20)) -> None:
    """One row of a listing: the first cells padded, the last as it is; no markup is read."""
    # Pad by terminal cells, not characters: a Korean syllable takes two.
    padded = [cell + " " * max(0, width - cell_len(cell)) for cell, width in zip(cells, widths)]
    padded += list(cells[len(widths):])
    console.print("  ".join(padded).rstrip(), markup=False, highlight=False, soft_wrap=True)


@user_app.command("add")
def user_add(name: str = typer.Argument(..., help="Username: letters, digits, . _ - @"),
             role: str = typer.Option("viewer", "--role", help="viewer | investigator | admin"),
             password_stdin: bool = PasswordStdinOpt, db: Optional[str] = DbOpt) -> None:
    """Create an account (the password is asked for, or read with --password-stdin)."""
    from console.audit import audit
    from console.auth import ROLES, AuthError, create_user, get_user, normalise_username

    store = _open_store(db, new_ok=True)
    try:
        # Check what can be checked before asking for a password.
        if get_user(store, normalise_username(name)) is not None:
            raise AuthError(f"user {normalise_username(name)!r} already exists")
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
        user = create_user(store, name, _read_password(password_stdin), role)
        audit(store, _operator(), "user_add", f"user:{user.username}", {"role": user.role})
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"user {escape(user.username)} created with role {user.role}", highlight=False)


@user_app.command("passwd")
def user_passwd(name: str = typer.Argument(...), password_stdin: bool = PasswordStdinOpt,
                db: Optional[str] = DbOpt) -> None:
    """Set a new password; the user's browser sessions end."""
    from console.audit import audit
    from console.auth import AuthError, get_user, set_password

    store = _open_store(db)
    try:
        if get_user(store, name) is None:  # say so before asking for a password
            raise AuthError(f"no user named {name!r}")
        user = set_password(store, name, _read_password(password_stdin))
        audit(store, _operator(), "user_passwd", f"user:{user.username}")
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"password of {escape(user.username)} changed; their sessions were ended", highlight=False)


@user_app.command("unlock")
def user_unlock(name: str = typer.Argument(...), db: Optional[str] = DbOpt) -> None:
    """Clear the login backoff on an account, from every address (after a guessing attack)."""
    from console.audit import audit
    from console.auth import AuthError, get_user
    from console.throttle import unlock

    store = _open_store(db)
    try:
        user = get_user(store, name)
        if user is None:
            raise AuthError(f"no user named {name!r}")
        cleared = unlock(store, user.username)
        audit(store, _operator(), "user_unlock", f"user:{user.username}", {"cleared": cleared})
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"{escape(user.username)}: {cleared} login backoff(s) cleared", highlight=False)


@user_app.command("grant")
def user_grant(name: str = typer.Argument(...), campaign: str = typer.Argument(..., help="Campaign name"),
               db: Optional[str] = DbOpt) -> None:
    """Let a user see a campaign. Once any user is granted one, non-admins see only their campaigns."""
    _membership(name, campaign, db, add=True)


@user_app.command("ungrant")
def user_ungrant(name: str = typer.Argument(...), campaign: str = typer.Argument(..., help="Campaign name"),
                 db: Optional[str] = DbOpt) -> None:
    """Stop a user seeing a campaign in the console."""
    _membership(name, campaign, db, add=False)


def _membership(name: str, campaign: str, db: Optional[str], *, add: bool) -> None:
    from console.audit import audit
    from console.auth import AuthError
    from console.scope import grant, revoke

    store = _open_store(db)
    try:
        changed = (grant if add else revoke)(store, name, campaign)
        audit(store, _operator(), "user_grant" if add else "user_ungrant", f"user:{name}", {"campaign": campaign})
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    verb = ("now sees" if changed else "already saw") if add else ("no longer sees" if changed else "did not see")
    console.print(f"{escape(name)} {verb} campaign {escape(campaign)}", highlight=False)


@user_app.command("revoke")
def user_revoke(name: str = typer.Argument(...), db: Optional[str] = DbOpt) -> None:
    """Deactivate an account: its sessions end and its API tokens are revoked."""
    from console.audit import audit
    from console.auth import AuthError, set_active

    store = _open_store(db)
    try:
        user = set_active(store, name, False)
        audit(store, _operator(), "user_revoke", f"user:{user.username}")
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"user {escape(user.username)} deactivated; sessions ended, API tokens revoked", highlight=False)


@user_app.command("activate")
def user_activate(name: str = typer.Argument(...), db: Optional[str] = DbOpt) -> None:
    """Re-activate an account (old sessions and tokens stay revoked)."""
    from console.audit import audit
    from console.auth import AuthError, set_active

    store = _open_store(db)
    try:
        user = set_active(store, name, True)
        audit(store, _operator(), "user_activate", f"user:{user.username}")
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"user {escape(user.username)} active", highlight=False)


@user_app.command("role")
def user_role(name: str = typer.Argument(...), role: str = typer.Argument(..., help="viewer | investigator | admin"),
              db: Optional[str] = DbOpt) -> None:
    """Change an account's role (applies from the user's next request)."""
    from console.audit import audit
    from console.auth import AuthError, get_user, set_role

    store = _open_store(db)
    try:
        before = get_user(store, name)
        user = set_role(store, name, role)
        audit(store, _operator(), "user_role", f"user:{user.username}",
              {"from": before.role if before else None, "to": user.role})
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"user {escape(user.username)} now has role {user.role}", highlight=False)


@user_app.command("list")
def user_list(db: Optional[str] = DbOpt) -> None:
    """Every account with its role, state and live API tokens."""
    from console.auth import list_tokens, list_users

    store = _open_store(db)
    try:
        users = list_users(store)
        live = {u.username: sum(1 for t in list_tokens(store, u.username) if t.revoked_at is None) for u in users}
    finally:
        store.close()
    if not users:
        console.print("no users yet: add one with 'deepwatch user add NAME --role admin'")
        return
    # Plain lines, one per account, so the output greps and never wraps mid-name.
    _line("USERNAME", "ROLE", "ACTIVE", "CREATED", "PASSWORD CHANGED", "LIVE TOKENS")
    for u in users:
        _line(u.username, u.role, "yes" if u.active else "no", _time(u.created_at),
              _time(u.password_changed_at), str(live[u.username]))


@user_app.command("token")
def user_token(name: str = typer.Argument(...),
               label: str = typer.Option(..., "--name", help="Who or what uses the token, e.g. 'platform-x intake'"),
               db: Optional[str] = DbOpt) -> None:
    """Issue an API token. It is printed once, alone on stdout; only its hash is kept."""
    from console.audit import audit
    from console.auth import AuthError, issue_token, list_tokens

    store = _open_store(db)
    try:
        token = issue_token(store, name, label)
        digest = hashlib.sha256(token.encode()).hexdigest()
        token_id = next(t.id for t in list_tokens(store, name) if t.token_sha256 == digest)
        audit(store, _operator(), "token_issue", f"user:{name}", {"token_id": token_id, "name": label})
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    err.print(f"API token {token_id} for {escape(name)} ('{escape(label)}'); it will not be shown again:",
              highlight=False)
    typer.echo(token)


@user_app.command("tokens")
def user_tokens(name: str = typer.Argument(...), db: Optional[str] = DbOpt) -> None:
    """A user's API tokens (never the secrets): id, name, created, last used, revoked."""
    from console.auth import AuthError, list_tokens

    store = _open_store(db)
    try:
        tokens = list_tokens(store, name)
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    if not tokens:
        console.print(f"{escape(name)} has no API tokens", highlight=False)
        return
    _line("ID", "CREATED", "LAST USED", "REVOKED", "NAME", widths=(6, 20, 20, 20))
    for t in tokens:
        _line(str(t.id), _time(t.created_at), _time(t.last_used_at), _time(t.revoked_at), t.name,
              widths=(6, 20, 20, 20))


@user_app.command("revoke-token")
def user_revoke_token(token_id: int = typer.Argument(..., help="The id shown by 'deepwatch user tokens'"),
                      db: Optional[str] = DbOpt) -> None:
    """Revoke one API token."""
    from console.audit import audit
    from console.auth import AuthError, revoke_token

    store = _open_store(db)
    try:
        revoke_token(store, token_id)
        audit(store, _operator(), "token_revoke", f"token:{token_id}")
    except AuthError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"API token {token_id} revoked")
