"""Investigators' commands on evidence: review, legal assessment, seals and verification,
liveness re-checks, takedown packets and their tracking.

Registered on the `deepwatch` app by orchestrator/cli.py. Every change to an evidence record is a
custody event, and a record changed by a person is sealed again (signed, timestamped when a
timestamp authority is configured) so that `evidence verify` can tell it from tampering.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli import BlobsOpt, DbOpt, _blobs, _fail, _open_store, app, console, evidence_app

takedown_app = typer.Typer(help="Takedown notices to platforms: build packets, track their outcome.", no_args_is_help=True)
app.add_typer(takedown_app, name="takedown")

TsaUrlOpt = typer.Option(None, "--tsa-url", help="RFC 3161 timestamp authority [env DEEPWATCH_TSA_URL]")
TsaCertOpt = typer.Option(None, "--tsa-cert", help="The authority's CA certificate (PEM) [env DEEPWATCH_TSA_CERT]")
ActorOpt = typer.Option(..., "--actor", help="Who does this (recorded in the custody log)")
_TRISTATE = {"yes": True, "no": False, "unknown": None}


def _tristate(value: Optional[str], name: str) -> Any:
    if value is None:
        from evidence.review import _UNSET

        return _UNSET
    if value.lower() not in _TRISTATE:
        _fail(f"--{name}: answer yes, no or unknown, not {value!r}")
    return _TRISTATE[value.lower()]


def _signer() -> Any:
    from evidence.signing import Signer, SigningError

    try:
        return Signer.load_or_create()
    except (SigningError, OSError) as exc:
        _fail(f"signing key: {exc}")


def _tsa(url: Optional[str], cert: Optional[Path]) -> tuple[Optional[str], Optional[bytes]]:
    url = url or os.environ.get("DEEPWATCH_TSA_URL") or None
    cert_path = cert or (Path(os.environ["DEEPWATCH_TSA_CERT"]) if os.environ.get("DEEPWATCH_TSA_CERT") else None)
    try:
        return url, cert_path.read_bytes() if cert_path else None
    except OSError as exc:
        _fail(f"{cert_path}: cannot read the TSA certificate: {exc.strerror or exc}")


def _seal(store: Any, evidence_id: int, actor: str, tsa_url: Optional[str], tsa_cert: Optional[bytes],
          check_previous: bool = True) -> Any:
    from evidence.seal import SealError, seal_evidence
    from evidence.tsa import TimestampError
    from evidence.verify import TamperedError

    try:
        return seal_evidence(store, evidence_id, _signer(), tsa_url=tsa_url, tsa_cert=tsa_cert, actor=actor,
                             check_previous=check_previous)
    except TamperedError as exc:
        _fail(str(exc), code=1)
    except (SealError, TimestampError) as exc:
        _fail(f"evidence {evidence_id}: not sealed: {exc}", code=1)


def _say_sealed(evidence_id: int, seal: Any) -> None:
    stamp = f", timestamped by {seal.tsa_url}" if seal.tsa_token else ""
    console.print(f"evidence {evidence_id} sealed: sha256 {seal.record_sha256}, key {seal.key_id[:16]}{stamp}")


# -- review and assessment ------------------------------------------------------------------------
@evidence_app.command("review")
def evidence_review(
    evidence_id: int = typer.Argument(...),
    confirm: bool = typer.Option(False, "--confirm", help="The item is a deepfake"),
    dismiss: bool = typer.Option(False, "--dismiss", help="The item is not a deepfake"),
    reviewer: str = typer.Option(..., "--reviewer", help="Your name (kept with the decision)"),
    rationale: str = typer.Option(..., "--rationale", help="Why: what you saw, what you checked"),
    case: Optional[str] = typer.Option(None, "--case", help="Case id for the known-fakes bank (confirmations)"),
    tsa_url: Optional[str] = TsaUrlOpt,
    tsa_cert: Optional[Path] = TsaCertOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Confirm or dismiss an evidence record. Confirmed fakes enter the known-fakes bank."""
    from evidence.review import ReviewError, review_evidence

    if confirm == dismiss:
        _fail("say --confirm or --dismiss (one of them)")
    store = _open_store(db)
    try:
        outcome = review_evidence(store, evidence_id, "confirmed" if confirm else "dismissed", reviewer, rationale, case_id=case)
    except ReviewError as exc:
        _fail(str(exc))
    bank = f"; {outcome.banked} hash(es) banked" if outcome.banked else ""
    bank += f"; {outcome.unbanked} bank entr(ies) removed" if outcome.unbanked else ""
    console.print(f"evidence {evidence_id}: {outcome.review.decision} by {outcome.review.reviewer}{bank}")
    # review_evidence checked the record against its seal before changing it
    _say_sealed(evidence_id, _seal(store, evidence_id, reviewer, *_tsa(tsa_url, tsa_cert), check_previous=False))


@evidence_app.command("assess")
def evidence_assess(
    evidence_id: int = typer.Argument(...),
    actor: str = ActorOpt,
    ban_window: Optional[str] = typer.Option(None, "--ban-window", help="Posted inside the pre-vote ban window: yes/no/unknown"),
    ai_label: Optional[str] = typer.Option(None, "--ai-label", help="The post said it was AI-made: yes/no/unknown"),
    purpose: Optional[str] = typer.Option(None, "--purpose", help="Made to influence the election: yes/no/unknown"),
    notes: Optional[str] = typer.Option(None, "--notes", help="Legal notes"),
    tsa_url: Optional[str] = TsaUrlOpt,
    tsa_cert: Optional[Path] = TsaCertOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Set the legal assessment of an evidence record (only the fields given)."""
    from evidence.review import ReviewError, assess_evidence

    store = _open_store(db)
    try:
        row = assess_evidence(store, evidence_id, actor, in_ban_window=_tristate(ban_window, "ban-window"),
                              ai_label_present=_tristate(ai_label, "ai-label"),
                              campaign_purpose=_tristate(purpose, "purpose"), notes=notes)
    except ReviewError as exc:
        _fail(str(exc))
    shown = {True: "yes", False: "no", None: "unknown"}
    console.print(f"evidence {evidence_id}: ban window {shown[row.in_ban_window]}, AI label {shown[row.ai_label_present]}, "
                  f"campaign purpose {shown[row.campaign_purpose]}", highlight=False)
    _say_sealed(evidence_id, _seal(store, evidence_id, actor, *_tsa(tsa_url, tsa_cert), check_previous=False))


@evidence_app.command("history")
def evidence_history(evidence_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json"),
                     db: Optional[str] = DbOpt) -> None:
    """The custody log of one evidence record: every event, in order, with its chain hash."""
    from evidence.custody import events_for

    events = events_for(_open_store(db), evidence_id)
    if not events:
        _fail(f"no custody events for evidence {evidence_id}")
    rows = [{"seq": e.seq, "at": e.at.isoformat(), "action": e.action, "actor": e.actor, "details": e.details,
             "hash": e.hash} for e in events]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    for r in rows:
        console.print(f"{r['seq']:>6}  {r['at']}  {r['action']:<18} {r['actor']:<24} {r['hash'][:16]}", highlight=False, markup=False)


# -- seals and verification ------------------------------------------------------------------------
@evidence_app.command("seal")
def evidence_seal(
    evidence_id: Optional[int] = typer.Argument(None),
    all_records: bool = typer.Option(False, "--all", help="Seal every record not sealed yet"),
    actor: str = typer.Option("system", "--actor"),
    tsa_url: Optional[str] = TsaUrlOpt,
    tsa_cert: Optional[Path] = TsaCertOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Sign an evidence record (Ed25519) and, with a timestamp authority, timestamp it."""
    from sqlmodel import select

    from storage import models as m

    if (evidence_id is None) == (not all_records):
        _fail("give an evidence ID or --all")
    store = _open_store(db)
    tsa = _tsa(tsa_url, tsa_cert)
    if evidence_id is not None:
        ids = [evidence_id]
    else:
        with store.session() as s:
            sealed = set(s.exec(select(m.Seal.evidence_id)).all())
            ids = [i for i in s.exec(select(m.Evidence.id).order_by(m.Evidence.id)).all() if i not in sealed]
    for ev in ids:
        _say_sealed(ev, _seal(store, ev, actor, *tsa))
    if not ids:
        console.print("every record is sealed already")


@evidence_app.command("verify")
def evidence_verify(
    evidence_id: Optional[int] = typer.Argument(None),
    all_records: bool = typer.Option(False, "--all", help="Every record and the whole custody log"),
    tsa_cert: Optional[Path] = TsaCertOpt,
    trusted_keys: Optional[Path] = typer.Option(
        None, "--trusted-keys", help="Public keys to trust (from `deepwatch keys export`); no private key needed"),
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Recompute every hash and signature; report any edit to a row, a blob or the custody log.
    Exits 1 when something was tampered with, 2 for a record that never existed."""
    from evidence.custody import verify_chain
    from evidence.keyring import KeyringError, load_trusted
    from evidence.verify import NoSuchEvidence, trusted_keys as deployment_keys, verify_all, verify_evidence
    from storage.blobs import open_blobs

    if (evidence_id is None) == (not all_records):
        _fail("give an evidence ID or --all")
    try:
        keys = load_trusted(trusted_keys) if trusted_keys is not None else deployment_keys()
    except KeyringError as exc:
        _fail(str(exc))
    store, blob_store = _open_store(db), open_blobs(_blobs(blobs))
    cert = _tsa(None, tsa_cert)[1]
    chain = verify_chain(store)
    if evidence_id is not None:
        try:
            reports = [verify_evidence(store, blob_store, evidence_id, key_ids=keys, tsa_cert=cert, chain=chain)]
        except NoSuchEvidence as exc:
            _fail(str(exc), code=2)
    else:
        reports = verify_all(store, blob_store, key_ids=keys, tsa_cert=cert)
    chain_problems = [f"seq {p.seq}: {p.message}" for p in chain] if all_records else []
    if as_json:
        typer.echo(json.dumps({
            "records": [{"evidence_id": r.evidence_id, "status": r.status, "sealed_at": r.sealed_at,
                         "problems": r.problems, "warnings": r.warnings} for r in reports],
            "custody_log": chain_problems,
        }, indent=2, ensure_ascii=False))
    else:
        for r in reports:
            colour = {"ok": "green", "TAMPERED": "bold red"}.get(r.status, "yellow")
            stamp = f", timestamp {r.timestamp.gen_time.isoformat()}" if r.timestamp else ""
            sealed = f" (sealed {r.sealed_at}{stamp})" if r.sealed_at else ""
            console.print(f"evidence {r.evidence_id}: [{colour}]{r.status}[/]{sealed}")
            for p in r.problems:
                console.print(f"  ! {p}", markup=False, highlight=False)
            for w in r.warnings:
                console.print(f"  ~ {w}", markup=False, highlight=False)
        if all_records:
            console.print("custody log: " + ("intact" if not chain_problems else "BROKEN"))
            for p in chain_problems:
                console.print(f"  ! {p}", markup=False, highlight=False)
    if chain_problems or any(r.problems for r in reports):
        raise typer.Exit(1)


# -- liveness -----------------------------------------------------------------------------------------
@evidence_app.command("liveness")
def evidence_liveness(
    evidence_ids: Optional[list[int]] = typer.Argument(None, help="Records to check (default: all)"),
    actor: str = typer.Option("system", "--actor"),
    every: Optional[str] = typer.Option(None, "--every", help="With --watch: re-check records older than this (e.g. 6h)"),
    watch: bool = typer.Option(False, "--watch", help="Keep re-checking on a schedule (Ctrl-C to stop)"),
    allow_network: Optional[list[str]] = typer.Option(None, "--allow-network", help="CIDR the checks may reach (e.g. a local test platform)"),
    config: Optional[Path] = typer.Option(None, "--config", help="Takedown config (removal markers per platform)"),
    db: Optional[str] = DbOpt,
) -> None:
    """Check whether flagged posts are still online; a post gone after a notice marks it removed."""
    from agents.fetch import Fetcher, FetchPolicy
    from evidence.liveness import check_liveness, recheck_due
    from orchestrator.spec import parse_duration

    store = _open_store(db)
    cfg = _takedown_config(config)
    if watch and not every:
        _fail("--watch needs --every (e.g. --every 6h)")
    try:
        every_s = parse_duration(every) if every else None
    except ValueError as exc:
        _fail(f"--every: {exc}")
    with Fetcher(FetchPolicy(allow_networks=tuple(allow_network or ()))) as fetcher:
        while True:
            if every_s is not None:
                checks = recheck_due(store, fetcher, every_s, actor=actor, config=cfg)
            else:
                checks = check_liveness(store, fetcher, list(evidence_ids) if evidence_ids else None, actor=actor, config=cfg)
            for c in checks:
                console.print(f"evidence {c.evidence_id}: {c.state:<5} {c.http_status or '':>3} {c.url} {c.detail}",
                              markup=False, highlight=False)
            if not watch:
                return
            time.sleep(min(every_s, 300))


# -- takedown -------------------------------------------------------------------------------------------
def _takedown_config(path: Optional[Path]) -> Any:
    from evidence.takedown import TakedownError, load_takedown_config

    try:
        return load_takedown_config(path)
    except (TakedownError, OSError, ValueError) as exc:
        _fail(str(exc))


@takedown_app.command("build")
def takedown_build(
    evidence_ids: list[int] = typer.Argument(..., help="Evidence records for one platform"),
    platform: str = typer.Option(..., "--platform"),
    out: Path = typer.Option(..., "--out", help="A new, empty folder for the packet"),
    config: Optional[Path] = typer.Option(None, "--config", help="Takedown config YAML (sender, legal bases, platforms)"),
    actor: str = typer.Option(..., "--actor", help="Who builds the packet (recorded in each record's custody log)"),
    allow_unreviewed: bool = typer.Option(
        False, "--allow-unreviewed", help="Include records no investigator has confirmed; the notice marks them plainly"),
    db: Optional[str] = DbOpt,
    blobs: Optional[str] = BlobsOpt,
) -> None:
    """Build a signed takedown packet (HTML, PDF, JSON, evidence files, sha256 manifest).
    Refuses records not confirmed by an investigator (unless --allow-unreviewed) and records that
    no longer match their last seal."""
    from evidence.takedown import TakedownError, build_takedown
    from storage.blobs import open_blobs

    from orchestrator.cli_guards import ArgumentCheckError, check_ids, prepare_output_folder

    try:
        check_ids(list(evidence_ids))
        if out.exists() and not out.is_dir() or any(p.exists() and not p.is_dir() for p in out.parents):
            prepare_output_folder(out)  # says which part is a file
    except ArgumentCheckError as exc:
        _fail(str(exc), code=1)
    store = _open_store(db)
    try:
        request = build_takedown(store, open_blobs(_blobs(blobs)), list(evidence_ids), platform, out,
                                 _takedown_config(config), _signer(), actor=actor, allow_unreviewed=allow_unreviewed)
    except TakedownError as exc:
        _fail(str(exc), code=1)
    except OSError as exc:  # /proc/x and the like: the folder cannot be made
        _fail(f"cannot write the packet to {out}: {exc.strerror or exc}", code=1)
    console.print(f"takedown request {request.id} ({request.status}) for {platform}: {request.packet_path}\n"
                  f"manifest sha256 {request.packet_sha256}", highlight=False)


@takedown_app.command("verify")
def takedown_verify(
    folder: Optional[Path] = typer.Argument(None, help="A packet folder"),
    request: Optional[int] = typer.Option(None, "--request", help="Or: a takedown request id"),
    public_key: Optional[str] = typer.Option(None, "--public-key", help="Trusted Ed25519 public key (hex)"),
    db: Optional[str] = DbOpt,
) -> None:
    """Re-hash a packet and check its signature; exits 1 on any problem."""
    from evidence.takedown import TakedownError, verify_takedown_packet, verify_takedown_request

    if (folder is None) == (request is None):
        _fail("give a packet folder or --request N")
    try:
        problems = (verify_takedown_packet(folder, trusted_public_key=public_key) if folder is not None
                    else verify_takedown_request(_open_store(db), request, trusted_public_key=public_key))
    except TakedownError as exc:
        _fail(str(exc))
    for p in problems:
        console.print(f"! {p}", markup=False, highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print("OK: every file matches the signed manifest")


@takedown_app.command("status")
def takedown_status(
    request_id: int = typer.Argument(...),
    status: str = typer.Argument(..., help="sent | acknowledged | removed | refused"),
    actor: str = ActorOpt,
    at: Optional[str] = typer.Option(None, "--at", help="When (ISO 8601 with a zone; default now)"),
    note: str = typer.Option("", "--note"),
    db: Optional[str] = DbOpt,
) -> None:
    """Record what happened to a takedown request."""
    from evidence.takedown import TakedownError, get_takedown, set_takedown_status

    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            _fail(f"--at: not an ISO 8601 time: {at!r}")
    store = _open_store(db)
    try:
        before = get_takedown(store, request_id).status
        row = set_takedown_status(store, request_id, status, at=when, actor=actor, note=note)
    except TakedownError as exc:
        _fail(str(exc))
    console.print(f"request {request_id}: {before} -> {row.status} at {row.updated_at.isoformat()}")


@takedown_app.command("list")
def takedown_list(
    status: Optional[str] = typer.Option(None, "--status"),
    platform: Optional[str] = typer.Option(None, "--platform"),
    as_json: bool = typer.Option(False, "--json"),
    db: Optional[str] = DbOpt,
) -> None:
    """Takedown requests and where each stands."""
    from rich.table import Table

    from evidence.takedown import list_takedowns

    rows = list_takedowns(_open_store(db), status, platform=platform)
    fields = ("id", "platform", "status", "evidence_ids", "created_at", "sent_at", "acknowledged_at", "resolved_at", "packet_path")
    data = [{f: getattr(r, f) for f in fields} for r in rows]
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    table = Table(*fields)
    for d in data:
        table.add_row(*["" if d[f] is None else str(d[f]) for f in fields])
    console.print(table)
