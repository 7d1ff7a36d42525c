"""`deepwatch evidence verify`: recompute every hash and signature and say what changed.

For each record: the latest seal's JSON still hashes to its digest, the signature verifies with
the key it names and that key is the deployment's; the RFC 3161 token covers the digest; the
record as the database holds it now is compared field by field with the sealed one; every file it
names is in the blob store and still hashes to its name; the custody rows about it are intact
and the log still holds the row the seal anchored. A record never sealed is a warning.

Problems are tampering (or damage); warnings are not (not sealed, things added since the seal).
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from evidence.custody import ChainProblem, append_event, verify_chain
from evidence.seal import SEAL_FORMAT, SealError, canonical_record, detection_key, latest_seal, sighting_key
from evidence.keyring import KeyInfo, KeyringError, load_keyring
from evidence.signing import deployment_key_id, key_dir, verify_signature
from evidence.tsa import TimestampError, TimestampInfo, verify_token
from storage import models as m
from storage.blobs import BlobStore
from storage.db import Store, as_utc


@dataclass
class Report:
    evidence_id: int
    seal_id: int | None = None
    sealed_at: str | None = None
    timestamp: TimestampInfo | None = None
    problems: list[str] = field(default_factory=list)  # tampering or damage
    warnings: list[str] = field(default_factory=list)  # worth knowing, not tampering

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.problems:
            return "TAMPERED"
        return "ok" if self.seal_id is not None else "not sealed"


class NoSuchEvidence(LookupError):
    """No evidence row, seal or custody event names this id: it never existed."""


class TamperedError(SealError):
    """A record no longer matches its last seal; nothing may build on it until that is explained.
    A SealError, so a campaign that cannot re-seal drops the step with this message."""

    def __init__(self, evidence_id: int, problems: list[str]):
        self.evidence_id, self.problems = evidence_id, problems
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        super().__init__(f"evidence {evidence_id} does not match its last seal, refusing: {shown}")


# A key id with no KeyInfo (a caller's bare set of ids) is trusted at any time.
Trusted = dict[str, "KeyInfo | None"]


def trusted_keys(key_ids: "Collection[str] | dict[str, KeyInfo] | None" = None, folder=None) -> Trusted:
    """The keys a verification trusts: the caller's (ids or KeyInfo by id), else every key in the
    deployment's keyring (so seals made before a rotation still verify), else its current key."""
    if isinstance(key_ids, dict):
        return dict(key_ids)
    if key_ids is not None:
        return {k: None for k in key_ids}
    keys: Trusted = {k.key_id: k for k in load_keyring(folder if folder is not None else key_dir())}
    if not keys:
        keys = {k: None for k in _deployment_keys()}
    return keys


def ensure_intact(store: Store, evidence_id: int, *, actor: str, action: str, blobs: BlobStore | None = None,
                  key_ids: "Collection[str] | dict[str, KeyInfo] | None" = None,
                  chain: "bool | list[ChainProblem]" = False) -> None:
    """Refuse (TamperedError, and an "integrity_refused" custody event naming `action` and
    `actor`) when the record no longer matches its last seal. Called before anything builds on
    a record (a re-seal, a review, an assessment, a takedown packet), so an edited row is never
    re-sealed or sent out as if it were genuine. A record never sealed passes. `blobs` also
    re-hashes its files; `chain` True also walks the custody log (costly: the whole log), or is
    verify_chain's result when the caller already has it."""
    if latest_seal(store, evidence_id) is None:
        return
    try:
        trusted = trusted_keys(key_ids)
    except KeyringError as exc:
        raise TamperedError(evidence_id, [f"the deployment keyring cannot be read: {exc}"]) from None
    known = chain if isinstance(chain, list) else (None if chain else [])
    report = verify_evidence(store, blobs, evidence_id, key_ids=trusted, chain=known)
    if report.ok:
        return
    append_event(store, evidence_id, "integrity_refused", actor or "system",
                 {"attempted": action, "problems": report.problems[:20]})
    raise TamperedError(evidence_id, report.problems)


def _format_of(seal: m.Seal | None) -> str:
    """The format a seal was written in (what the current record must be built as to compare);
    no seal, or an unreadable one (which _check_seal reports), compares as the current format."""
    if seal is None:
        return SEAL_FORMAT
    try:
        document = json.loads(seal.record_json)
    except (TypeError, ValueError):
        return SEAL_FORMAT
    return (document.get("format") if isinstance(document, dict) else None) or SEAL_FORMAT


def verify_evidence(store: Store, blobs: BlobStore | None, evidence_id: int, *,
                    key_ids: "Collection[str] | dict[str, KeyInfo] | None" = None,
                    tsa_cert: bytes | None = None, chain: list[ChainProblem] | None = None) -> Report:
    """Check one record. `key_ids`: the signing keys trusted (ids, or KeyInfo by id with validity
    periods; default: the deployment's keyring); `tsa_cert`: the authority's certificates (PEM),
    to check token signatures; `chain`: verify_chain's result, when the caller already has it;
    `blobs` None skips re-hashing the files. NoSuchEvidence when nothing knows the id."""
    trusted = trusted_keys(key_ids)
    report = Report(evidence_id)
    seal = latest_seal(store, evidence_id)
    if seal is None and not _known(store, evidence_id):
        raise NoSuchEvidence(f"no such evidence record: {evidence_id}")
    chain = verify_chain(store) if chain is None else chain
    try:
        current = canonical_record(store, evidence_id, _format_of(seal))
    except SealError:
        current = None
    if current is None:
        report.problems.append(f"evidence {evidence_id} no longer exists" +
                               (" (it was sealed)" if seal else " (the custody log names it)"))
    sealed_record = _check_seal(store, seal, evidence_id, trusted, tsa_cert, report) if seal else None
    if seal is None and current is not None:
        report.warnings.append(f"evidence {evidence_id} is not sealed: nothing to compare it with")
    if sealed_record is not None and current is not None:
        changes_before = len(report.problems)
        _diff_record(evidence_id, sealed_record, current, report)
        if len(report.problems) > changes_before:
            _hint_later_events(store, seal, report)
    if blobs is not None:
        _check_blobs(blobs, [r for r in (current, sealed_record) if r is not None], report)
    report.problems.extend(p.message for p in chain if p.evidence_id == evidence_id)
    return report


def verify_all(store: Store, blobs: BlobStore, *, key_ids: "Collection[str] | dict[str, KeyInfo] | None" = None,
               tsa_cert: bytes | None = None) -> list[Report]:
    """Every record the database knows of: evidence rows, sealed ids and ids the custody log
    names (so a record deleted with its seals still shows). Pair it with `verify_chain(store)`
    for the problems of the log itself."""
    trusted = trusted_keys(key_ids)
    chain = verify_chain(store)
    with store.session() as s:
        ids = set(s.exec(select(m.Evidence.id)).all())
        ids |= set(s.exec(select(m.Seal.evidence_id)).all())
        ids |= {i for i in s.exec(select(m.CustodyEvent.evidence_id)).all() if i is not None}
    return [verify_evidence(store, blobs, i, key_ids=trusted, tsa_cert=tsa_cert, chain=chain) for i in sorted(ids)]


def _known(store: Store, evidence_id: int) -> bool:
    with store.session() as s:
        if s.get(m.Evidence, evidence_id) is not None:
            return True
        return s.exec(select(m.CustodyEvent.seq).where(m.CustodyEvent.evidence_id == evidence_id).limit(1)).first() is not None


def _deployment_keys() -> set[str]:
    key_id = deployment_key_id()
    return {key_id} if key_id else set()


# -- the seal itself ---------------------------------------------------------------------------------

def _check_seal(store: Store, seal: m.Seal, evidence_id: int, trusted: Trusted, tsa_cert: bytes | None,
                report: Report) -> dict[str, Any] | None:
    """Check the seal row; returns the sealed record when its JSON can be read."""
    report.seal_id, report.sealed_at = seal.id, as_utc(seal.sealed_at).isoformat()
    where = f"evidence {evidence_id}: seal {seal.id}"
    digest_hex = hashlib.sha256(seal.record_json.encode("utf-8")).hexdigest()
    if digest_hex != seal.record_sha256:
        report.problems.append(f"{where}: its stored JSON no longer hashes to its digest (the seal row was edited)")
    if hashlib.sha256(_hex_bytes(seal.public_key)).hexdigest() != seal.key_id:
        report.problems.append(f"{where}: its key id does not match its public key")
    if not verify_signature(seal.public_key, seal.signature, _hex_bytes(seal.record_sha256)):
        report.problems.append(f"{where}: the signature does not verify with the public key it names")
    _check_token(seal, where, tsa_cert, report)
    _check_key(seal, where, trusted, report)
    try:
        document = json.loads(seal.record_json)
    except ValueError:
        report.problems.append(f"{where}: its stored JSON cannot be read")
        return None
    if document.get("evidence_id") != evidence_id:
        report.problems.append(f"{where}: it seals evidence {document.get('evidence_id')}, not this record")
    _check_anchor(store, document.get("custody_anchor"), where, report)
    return document.get("record")


def _check_key(seal: m.Seal, where: str, trusted: Trusted, report: Report) -> None:
    """The key must be in the trusted set, be the very public key listed there, and have been
    valid when the seal was made (the authority's time when there is a token, else the row's)."""
    if seal.key_id not in trusted:
        report.problems.append(f"{where}: signed by an unknown key {seal.key_id[:16]}... (not in the trusted keys)")
        return
    info = trusted[seal.key_id]
    if info is None:
        return
    if info.public_key != (seal.public_key or "").lower():
        report.problems.append(f"{where}: its public key is not the trusted key {seal.key_id[:16]}...")
    when = report.timestamp.gen_time if report.timestamp is not None else as_utc(seal.sealed_at)
    if not info.valid_at(when):
        period = f"{info.not_before.isoformat() if info.not_before else 'the start'} to {info.not_after.isoformat() if info.not_after else 'now'}"
        report.problems.append(f"{where}: made at {when.isoformat()} with key {seal.key_id[:16]}..., "
                               f"which was valid only from {period}")


def _check_token(seal: m.Seal, where: str, tsa_cert: bytes | None, report: Report) -> None:
    if not seal.tsa_token:
        if seal.tsa_url:
            report.problems.append(f"{where}: the timestamp token from {seal.tsa_url} is missing")
        return
    try:
        token = base64.b64decode(seal.tsa_token, validate=True)
        report.timestamp = verify_token(token, _hex_bytes(seal.record_sha256), tsa_cert)
    except (TimestampError, ValueError) as exc:
        report.problems.append(f"{where}: timestamp token: {exc}")


def _check_anchor(store: Store, anchor: dict[str, Any] | None, where: str, report: Report) -> None:
    """The custody row the seal anchored must still be there with the hash it had."""
    if not anchor:
        return
    with store.session() as s:
        row = s.exec(select(m.CustodyEvent).where(m.CustodyEvent.seq == anchor["seq"])).first()
    if row is None:
        report.problems.append(f"{where}: custody log row seq {anchor['seq']}, anchored by the seal, is missing")
    elif row.hash != anchor["hash"]:
        report.problems.append(f"{where}: custody log row seq {anchor['seq']} differs from the one the seal anchored "
                               f"(the log was rewritten up to there)")


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except (ValueError, TypeError):
        return b""


def _hint_later_events(store: Store, seal: m.Seal, report: Report) -> None:
    """Changes after custody events (a review) may be legitimate: say which, so the investigator
    knows whether a re-seal was forgotten or the database was edited behind the log's back."""
    with store.session() as s:
        sealed_at = s.exec(select(m.CustodyEvent.seq).where(
            m.CustodyEvent.evidence_id == seal.evidence_id, m.CustodyEvent.action == "sealed")
            .order_by(m.CustodyEvent.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
        later = s.exec(select(m.CustodyEvent).where(
            m.CustodyEvent.evidence_id == seal.evidence_id, m.CustodyEvent.seq > (sealed_at or 0))
            .order_by(m.CustodyEvent.seq)).all()
    if later:
        names = ", ".join(f"{e.action} (seq {e.seq}, by {e.actor})" for e in later)
        report.warnings.append(f"evidence {seal.evidence_id}: custody events since the seal: {names}; "
                               f"a legitimate change must be re-sealed")


# -- the record, field by field ------------------------------------------------------------------------

def _diff_record(evidence_id: int, sealed: dict[str, Any], current: dict[str, Any], report: Report) -> None:
    say = f"evidence {evidence_id}:"
    _diff_fields(f"{say} field", sealed.get("evidence", {}), current["evidence"], report)
    _diff_fields(f"{say} media field", sealed.get("media", {}), current["media"], report)
    _diff_fields(f"{say} post field", sealed.get("post", {}), current["post"], report)
    _diff_keyed(say, "detection", sealed.get("detections", []), current["detections"], detection_key,
                _detection_name, report)
    _diff_keyed(say, "sighting", sealed.get("sightings", []), current["sightings"], sighting_key,
                _sighting_name, report)
    _diff_reviews(say, sealed.get("reviews", []), current["reviews"], report)


def _diff_fields(prefix: str, old: dict[str, Any], new: dict[str, Any], report: Report) -> None:
    for name in sorted(set(old) | set(new)):
        if name not in new:
            report.problems.append(f"{prefix} '{name}' was removed (sealed value {_show(old[name])})")
        elif name not in old:
            report.warnings.append(f"{prefix} '{name}' is new since the seal (value {_show(new[name])})")
        elif old[name] != new[name]:
            report.problems.append(f"{prefix} '{name}' changed: {_show(old[name])} -> {_show(new[name])}")


def _diff_keyed(say: str, kind: str, old: list[dict], new: list[dict], key, name, report: Report) -> None:
    old_by, new_by = {key(x): x for x in old}, {key(x): x for x in new}
    for k in sorted(set(old_by) | set(new_by)):
        if k not in new_by:
            report.problems.append(f"{say} {kind} {name(old_by[k])} was removed")
        elif k not in old_by:
            # New detections (a new model) and sightings (a re-upload) arrive after sealing.
            report.warnings.append(f"{say} {kind} {name(new_by[k])} was added since the seal")
        else:
            for field_name in sorted(set(old_by[k]) | set(new_by[k])):
                before, after = old_by[k].get(field_name), new_by[k].get(field_name)
                if before != after:
                    report.problems.append(f"{say} {kind} {name(old_by[k])} {field_name} changed: "
                                           f"{_show(before)} -> {_show(after)}")


def _diff_reviews(say: str, old: list[dict], new: list[dict], report: Report) -> None:
    for i, sealed in enumerate(old):
        if i >= len(new):
            report.problems.append(f"{say} review {i + 1} ({sealed.get('decision')} by {sealed.get('reviewer')}) was removed")
        elif new[i] != sealed:
            fields = ", ".join(f"{k}: {_show(sealed.get(k))} -> {_show(new[i].get(k))}"
                               for k in sorted(set(sealed) | set(new[i])) if sealed.get(k) != new[i].get(k))
            report.problems.append(f"{say} review {i + 1} changed: {fields}")
    for extra in new[len(old):]:
        report.warnings.append(f"{say} review ({extra.get('decision')} by {extra.get('reviewer')}) was added since the seal")


def _detection_name(d: dict[str, Any]) -> str:
    model = f" (model {d['model_key']})" if d.get("model_key") else ""
    return f"{d['detector']}{model} on {d['media_sha256'][:12]}"


def _sighting_name(sg: dict[str, Any]) -> str:
    return f"of {sg['media_url']} in post {sg['platform']}/{sg['post_id']}"


def _show(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, (int, float)) and not isinstance(value, bool) else json.dumps(value, ensure_ascii=False, default=str)
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the files ---------------------------------------------------------------------------------------

_BLOB_ROLES = (
    ("evidence", "media_sha256", "original media"),
    ("evidence", "matched_sha256", "matched original"),
    ("evidence", "screenshot_sha256", "screenshot"),
    ("evidence", "capture_html_sha256", "capture html"),
    ("evidence", "wacz_sha256", "WACZ"),
    ("evidence", "working_sha256", "working copy"),
    ("post", "screenshot_sha256", "post screenshot"),
)


def _check_blobs(blobs: BlobStore, records: list[dict[str, Any]], report: Report) -> None:
    """Every file the record names (now or when sealed) must exist and re-hash to its name."""
    named: dict[str, str] = {}
    for record in records:
        for section, column, role in _BLOB_ROLES:
            sha = (record.get(section) or {}).get(column)
            if sha and sha not in named:
                named[sha] = role
    for sha, role in named.items():
        try:
            intact = blobs.verify(sha)
        except KeyError:
            report.problems.append(f"evidence {report.evidence_id}: blob {sha} ({role}) is missing")
            continue
        except ValueError:
            report.problems.append(f"evidence {report.evidence_id}: {role} names {sha!r}, which is not a sha256")
            continue
        if not intact:
            report.problems.append(f"evidence {report.evidence_id}: blob {sha} ({role}) was altered: "
                                   f"its bytes no longer hash to its name")
