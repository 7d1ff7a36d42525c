"""Takedown packets: one notice to one platform about one or more evidence records, and its tracking.

A packet is a folder a platform's trust-and-safety or legal team can act on without access to
deepwatch:

    notice.json        every element a valid notice needs (EU DSA Art. 16: exact URLs, a
                       substantiated explanation, the sender, a good-faith statement) plus the
                       configured legal basis, detections, provenance, bank matches, reviews
    notice.html        the same notice for people (Jinja2, autoescaped: post text is hostile input)
    notice.pdf         notice.html printed by Chromium
    evidence/<id>/...  the files each record rests on, copied from the blob store by sha256
    MANIFEST.sha256    `sha256  path` of every file above (`sha256sum -c` format)
    MANIFEST.sig       hex Ed25519 signature over the bytes of MANIFEST.sha256
    public_key.hex     the signing key, so the packet verifies without the database

Who sends, on what legal basis, to which platform channel and in which language is deployment
configuration (`TakedownConfig`, a YAML file; `templates/takedown-default.yaml` is the example).
A request then moves drafted -> sent -> acknowledged -> removed | refused; every move is stamped
and written to the custody log of each record it covers.

This module builds, renders, signs and verifies packets. The configuration lives in
`evidence.takedown_config` and request tracking in `evidence.takedown_tracking`; their public
names are re-exported here, so `from evidence.takedown import ...` keeps working.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError
from sqlmodel import select

from evidence.custody import append_event
from evidence.notice_facts import (
    band_word,
    bank_entries_for,
    corroboration,
    crop_to_content,
    extra_hashtags,
    kind_word,
    localise_reasons,
    outcome_word,
    video_stills,
)
from evidence.signing import Signer, verify_signature
from evidence.takedown_config import (
    DEFAULT_CONFIG_PATH,
    TEMPLATES_DIR,
    Language,
    LegalBasis,
    LocalText,
    PlatformSettings,
    Sender,
    TakedownConfig,
    TakedownError,
    _zone_or_none,
    load_takedown_config,
    localise,
    parse_takedown_config,
)
from evidence.takedown_tracking import (
    NEXT_STATUSES,
    STATUSES,
    _record_request,
    get_takedown,
    list_takedowns,
    set_takedown_status,
)
from storage import models as m
from storage.blobs import BlobStore
from storage.db import Store, as_utc
from storage.queries import evidence_detail

__all__ = [
    # configuration (evidence.takedown_config)
    "DEFAULT_CONFIG_PATH",
    "TEMPLATES_DIR",
    "Language",
    "LegalBasis",
    "LocalText",
    "PlatformSettings",
    "Sender",
    "TakedownConfig",
    "TakedownError",
    "load_takedown_config",
    "localise",
    "parse_takedown_config",
    # building, rendering, manifest and signature (this module)
    "MANIFEST",
    "PROVENANCE_DETECTORS",
    "PUBLIC_KEY",
    "SIGNATURE",
    "build_takedown",
    "campaign_zone",
    "explain",
    "render_notice_html",
    "render_pdf",
    "verify_takedown_packet",
    "verify_takedown_request",
    # tracking (evidence.takedown_tracking)
    "NEXT_STATUSES",
    "STATUSES",
    "get_takedown",
    "list_takedowns",
    "set_takedown_status",
]

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sig"
PUBLIC_KEY = "public_key.hex"
_UNLISTED = {MANIFEST, SIGNATURE, PUBLIC_KEY}  # the files that certify the manifest cannot be in it

# Detectors whose findings are provenance (what the file says about its own origin), not a guess.
PROVENANCE_DETECTORS = ("c2pa", "invisible-watermark", "metadata-provenance")

_EXT = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
}


# -- building a packet ------------------------------------------------------------------------


def build_takedown(
    store: Store,
    blobs: BlobStore,
    evidence_ids: list[int],
    platform: str,
    out_dir: str | Path,
    config: TakedownConfig,
    signer: Signer,
    *,
    actor: str,
    allow_unreviewed: bool = False,
    sender_override: Sender | dict[str, str] | None = None,
) -> m.TakedownRequest:
    """Write one signed takedown packet for `platform` about `evidence_ids`; record it as drafted.

    Nothing is written unless everything checks: the records exist, all are on `platform`, none
    was dismissed by a reviewer, each was confirmed by one (or `allow_unreviewed`, and the notice
    then says so plainly), each still matches its last seal, every file they rest on is in the
    blob store unaltered, and Chromium printed the PDF. The packet is assembled in a scratch
    folder and moved into place at the end, so a failure never leaves a half-written packet.
    `actor`, the person exporting, is named in each record's "exported" custody event.
    """
    if not actor or not str(actor).strip():
        raise TakedownError("a takedown packet needs the name of the person building it (actor)")
    actor = str(actor).strip()
    signer = signer.current()  # a key rotated while this process ran: sign with the new one
    ids = _checked_ids(evidence_ids)
    settings = config.platform(platform)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TakedownError(f"output folder {out} is not empty; choose a new one")
    chromium = _chromium_path()  # checked before any work: no Chromium, no PDF, no packet
    sender = _sender(sender_override) if sender_override is not None else config.sender
    items = _gather(store, ids, platform, settings.language, allow_unreviewed)
    _ensure_all_intact(store, blobs, ids, signer, actor)

    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    scratch.chmod(out.parent.stat().st_mode & 0o777)  # mkdtemp makes it 0700; the packet is shared
    try:
        for item in items:
            item["files"] = _copy_files(blobs, item, scratch)
        generated = datetime.now(timezone.utc)
        notice = _notice(items, settings, config, sender, signer, generated)
        (scratch / "notice.json").write_text(
            json.dumps(notice, indent=2, ensure_ascii=False, sort_keys=False) + "\n", "utf-8"
        )
        (scratch / "notice.html").write_text(render_notice_html(notice, settings.template), "utf-8")
        render_pdf(scratch / "notice.html", scratch / "notice.pdf", chromium=chromium)
        manifest = _write_manifest(scratch)
        (scratch / SIGNATURE).write_text(signer.sign(manifest) + "\n", "ascii")
        (scratch / PUBLIC_KEY).write_text(signer.public_key_hex + "\n", "ascii")
        if out.exists():
            out.rmdir()  # empty (checked above); rename needs the name free
        os.replace(scratch, out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise

    packet_sha256 = hashlib.sha256(manifest).hexdigest()
    try:
        request = _record_request(store, ids, settings, config, sender, out, packet_sha256)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no row, no packet: a retry starts clean
        raise
    for evidence_id in ids:
        append_event(store, evidence_id, "exported", actor, {
            "takedown_request_id": request.id, "platform": platform, "packet_path": str(out),
            "packet_sha256": packet_sha256, "signing_key_id": signer.key_id, "sender": sender.one_line(),
            "unreviewed": evidence_id in {i["row"].id for i in items if not i["reviewed"]},
        })
    return request


def _ensure_all_intact(store: Store, blobs: BlobStore, ids: list[int], signer: Signer, actor: str) -> None:
    """Every record must still match its last seal (files and custody log included): a packet
    signed over an edited row would lend the deployment's signature to the edit."""
    from evidence.custody import verify_chain
    from evidence.seal import signer_keys
    from evidence.verify import TamperedError, ensure_intact, trusted_keys

    chain = verify_chain(store)  # once for all records: it walks the whole log
    keys = signer_keys(signer, trusted_keys)
    for evidence_id in ids:
        try:
            ensure_intact(store, evidence_id, actor=actor, action="takedown build", blobs=blobs, key_ids=keys, chain=chain)
        except TamperedError as exc:
            raise TakedownError(str(exc)) from None


def _sender(value: Sender | dict[str, str]) -> Sender:
    if isinstance(value, Sender):
        return value
    try:
        return Sender.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'sender'}: {e['msg']}" for e in exc.errors())
        raise TakedownError(f"invalid sender: {problems}") from None


def _checked_ids(evidence_ids: list[int]) -> list[int]:
    if not evidence_ids:
        raise TakedownError("a takedown request needs at least one evidence record; none given")
    ids: list[int] = []
    for value in evidence_ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TakedownError(f"evidence ids are integers, got {value!r}")
        if value not in ids:
            ids.append(value)
    return ids


def _chromium_path() -> str:
    from agents.browser import default_chromium

    path = default_chromium()
    if not os.path.exists(path):
        raise TakedownError(
            f"no Chromium at {path}: the PDF notice needs it; install chromium or set DEEPWATCH_CHROMIUM"
        )
    return path


def _gather(store: Store, ids: list[int], platform: str, lang: str = "en",
            allow_unreviewed: bool = False) -> list[dict[str, Any]]:
    """Everything the notice says about each record, read from the database."""
    with store.session() as s:
        rows = {r.id: r for r in s.exec(select(m.Evidence).where(m.Evidence.id.in_(ids))).all()}  # type: ignore[union-attr]
    missing = [i for i in ids if i not in rows]
    if missing:
        raise TakedownError(f"no evidence record with id {', '.join(map(str, missing))}")
    elsewhere = [f"#{i} is on {rows[i].platform!r}" for i in ids if rows[i].platform != platform]
    if elsewhere:
        raise TakedownError(
            f"a takedown packet goes to one platform ({platform!r}); " + "; ".join(elsewhere)
        )
    dismissed = [str(i) for i in ids if rows[i].review_status == "dismissed"]
    if dismissed:
        raise TakedownError(f"evidence {', '.join(dismissed)} was dismissed by a reviewer; a notice cannot cite it")
    unreviewed = [str(i) for i in ids if rows[i].review_status != "confirmed"]
    if unreviewed and not allow_unreviewed:
        raise TakedownError(f"evidence {', '.join(unreviewed)} has not been confirmed by an investigator; review it first, "
                            f"or allow unreviewed items (--allow-unreviewed; the console's checkbox; the API's "
                            f"allow_unreviewed) and the notice will say plainly that they were not reviewed")
    return [_item(store, rows[i], lang) for i in ids]


def _item(store: Store, ev: m.Evidence, lang: str = "en") -> dict[str, Any]:
    detail = evidence_detail(store, ev.id)
    with store.session() as s:
        media = s.get(m.Media, ev.media_sha256)
        campaign = s.get(m.Campaign, ev.campaign_id)
        reviews = s.exec(select(m.Review).where(m.Review.evidence_id == ev.id).order_by(m.Review.at, m.Review.id)).all()
    bank = bank_entries_for(store, ev, media.pdq)
    bank_rows = [
        {"case_id": b.case_id, "signal": b.signal, "hash": b.hash_hex, "media_sha256": b.media_sha256,
         "source": b.source, "added_at": as_utc(b.added_at)}
        for b in bank
    ]
    zone = campaign_zone(campaign.spec_yaml if campaign else "")
    detections = detail["detections"]
    return {
        "row": ev,
        "detail": detail,
        "zone": zone,
        "media_pdq": media.pdq,
        "bank_case": media.bank_case,
        "detections": [d for d in detections if d["detector"] not in PROVENANCE_DETECTORS],
        "provenance": [d for d in detections if d["detector"] in PROVENANCE_DETECTORS],
        "reviews": [
            {"decision": r.decision, "reviewer": r.reviewer, "rationale": r.rationale, "at": as_utc(r.at)}
            for r in reviews
        ],
        "corroboration": corroboration(store, ev, bank_rows, lang),
        "reviewed": ev.review_status == "confirmed",
    }


def campaign_zone(spec_yaml: str) -> str | None:
    """The `window.timezone` a campaign was run with, if its saved spec names a valid one."""
    try:
        spec = yaml.safe_load(spec_yaml or "") or {}
        zone = (spec.get("window") or {}).get("timezone")
    except (yaml.YAMLError, AttributeError):
        return None
    return zone if isinstance(zone, str) and _zone_or_none(zone) else None


def _copy_files(blobs: BlobStore, item: dict[str, Any], scratch: Path) -> list[dict[str, Any]]:
    """Copy each file the record rests on into evidence/<id>/, checking its bytes against its name."""
    ev: m.Evidence = item["row"]
    ext = _EXT.get(item["detail"]["media"]["mime"], ".bin")
    wanted = [("original media", ev.media_sha256, f"original{ext}", item["detail"]["media"]["mime"])]
    if ev.working_sha256 and ev.working_sha256 != ev.media_sha256:
        wanted.append(("working copy", ev.working_sha256, f"working{ext}", item["detail"]["media"]["mime"]))
    if ev.screenshot_sha256:
        wanted.append(("screenshot", ev.screenshot_sha256, "screenshot.png", "image/png"))
    if ev.wacz_sha256:
        wanted.append(("web archive (WACZ)", ev.wacz_sha256, "capture.wacz", "application/wacz"))
    if ev.capture_html_sha256:
        wanted.append(("rendered page HTML", ev.capture_html_sha256, "capture.html", "text/html"))
    folder = scratch / "evidence" / str(ev.id)
    folder.mkdir(parents=True)
    files = []
    for role, sha, name, mime in wanted:
        try:
            data = blobs.get(sha)
        except KeyError:
            raise TakedownError(f"evidence #{ev.id}: the {role} (sha256 {sha}) is missing from the blob store") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise TakedownError(f"evidence #{ev.id}: the {role} blob {sha} no longer matches its hash: the blob store was altered")
        (folder / name).write_bytes(data)
        files.append({"role": role, "path": f"evidence/{ev.id}/{name}", "sha256": sha, "bytes": len(data), "mime": mime})
        if role == "screenshot":
            files += _derived(folder, ev.id, [("screenshot, cropped to the post", "screenshot-post.png", "image/png",
                                               crop_to_content(data), None)])
        if role == "original media" and item["detail"]["media"]["kind"] == "video":
            segments = [seg for det in item["detections"] for seg in (det.get("details") or {}).get("segments") or []]
            files += _derived(folder, ev.id, [
                (st["role"], f"frames/{st['role'].split()[0]}-{st['t_s']:08.2f}s.jpg", "image/jpeg", st["jpeg"], st["t_s"])
                for st in video_stills(data, segments)])
    return files


def _derived(folder: Path, evidence_id: int, made: list[tuple[str, str, str, bytes | None, float | None]]) -> list[dict[str, Any]]:
    """Files made from the evidence for people to read (a crop, video stills); the originals stay
    beside them, so nothing is shown that cannot be checked against the full-resolution file."""
    out = []
    for role, name, mime, data, t_s in made:
        if data is None:
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entry = {"role": role, "path": f"evidence/{evidence_id}/{name}", "sha256": hashlib.sha256(data).hexdigest(),
                 "bytes": len(data), "mime": mime, "derived": True}
        out.append(entry | ({"t_s": t_s} if t_s is not None else {}))
    return out


def _when(value: datetime | None, zone: str) -> dict[str, str] | None:
    """A moment in UTC and in the zone the campaign (and its election) runs in."""
    if value is None:
        return None
    utc = as_utc(value)
    return {
        "utc": utc.isoformat().replace("+00:00", "Z"),
        "local": utc.astimezone(ZoneInfo(zone)).isoformat(),
        "zone": zone,
    }


def _notice(items: list[dict[str, Any]], settings: PlatformSettings, config: TakedownConfig,
            sender: Sender, signer: Signer, generated: datetime) -> dict[str, Any]:
    lang = settings.language
    bases = config.bases_for(settings)
    notice_zone = items[0]["zone"] or config.timezone
    entries = [_notice_item(item, config, lang) for item in items]
    statement = localise(config.good_faith_statement, lang)
    basis_titles = [localise(b.title, lang) for b in bases]
    return {
        "format": "deepwatch-takedown-notice",
        "format_version": 1,
        "generator": f"deepwatch {_version()}",
        "generated_at": _when(generated, notice_zone),
        "language": lang,
        "recipient": {"platform": settings.name, "display_name": settings.display_name,
                      "notice_channel": settings.notice_channel},
        "sender": sender.model_dump(),
        "legal_basis": [
            {"id": b.id, "title": localise(b.title, lang), "text": localise(b.text, lang)} for b in bases
        ],
        # The elements Art. 16(2) DSA requires of a notice, gathered in one place.
        "dsa_article_16": {
            "a_explanation": "\n\n".join(e["explanation"] for e in entries),
            "b_exact_urls": [u for e in entries for u in (e["post"]["url"], e["media"]["url"]) if u],
            "c_notifier": {"name": f"{sender.contact_name} ({sender.organisation})", "email": sender.email},
            "d_good_faith_statement": statement,
            "legal_basis": basis_titles,
        },
        "items": entries,
        "signing": {"algorithm": "Ed25519", "key_id": signer.key_id, "public_key": signer.public_key_hex,
                    "signed_file": MANIFEST, "signature_file": SIGNATURE},
    }


def _notice_item(item: dict[str, Any], config: TakedownConfig, lang: str) -> dict[str, Any]:
    ev: m.Evidence = item["row"]
    d = item["detail"]
    zone = item["zone"] or config.timezone
    entry = {
        "evidence_id": ev.id,
        "campaign": d["campaign"],
        "post": {
            "platform": d["post"]["platform"], "post_id": d["post"]["post_id"], "url": d["post"]["url"],
            "account": d["post"]["account"], "text": d["post"]["text"], "lang": d["post"]["lang"],
            "hashtags": d["post"]["hashtags"], "posted_at": _when(d["post"]["created_at"], zone),
            # the tags the text does not already show (printing both repeated every tag)
            "hashtags_not_in_text": extra_hashtags(d["post"]["text"], d["post"]["hashtags"]),
        },
        "media": {
            "url": d["media"]["url"], "sha256": d["media"]["sha256"], "kind": d["media"]["kind"],
            "kind_local": kind_word(d["media"]["kind"], lang),
            "mime": d["media"]["mime"], "size": d["media"]["size"], "width": d["media"]["width"],
            "height": d["media"]["height"], "duration_s": d["media"]["duration_s"],
            "phash": d["media"]["phash"], "pdq": item["media_pdq"], "working_sha256": ev.working_sha256,
        },
        "verdict": {"band": ev.verdict, "band_local": band_word(ev.verdict or "", lang), "score": ev.score,
                    "reasons": list(ev.reasons or []), "reasons_local": localise_reasons(list(ev.reasons or []), lang),
                    "review_status": ev.review_status, "reviewed_by_investigator": item["reviewed"],
                    "matched_sha256": ev.matched_sha256, "match_distance": ev.match_distance},
        "detections": [_detection(x, lang) for x in item["detections"]],
        "provenance": [_detection(x, lang) | {"details": x["details"]} for x in item["provenance"]],
        # Who vouches for a C2PA claim: signer, issuer, trusted or not and by which anchor, TSA.
        "c2pa_trust": next((x["details"]["trust"] for x in item["provenance"]
                            if x["detector"] == "c2pa" and (x["details"] or {}).get("trust")), None),
        # Only entries independent of this file corroborate it; entries made from this very
        # file (its own verdict or review) are listed apart, for completeness.
        "bank_matches": [_bank(b, zone) for b in item["corroboration"]["independent"]],
        "bank_entries_not_independent": [_bank(b, zone) for b in item["corroboration"]["not_independent"]],
        "other_copies": item["corroboration"]["other_copies"],
        "bank_case": item["bank_case"],
        # The authentic original an altered copy was compared with, and where it was published.
        "reference_matches": [
            {k: (x.get("details") or {}).get(k) for k in
             ("reference", "reference_sha256", "owner", "source_url", "altered", "segments", "heatmap_sha256")}
            for x in item["detections"] if x["detector"] == "reference-library" and (x.get("details") or {}).get("reference")],
        "reviews": [r | {"at": _when(r["at"], zone)} for r in item["reviews"]],
        "legal_assessment": {"in_ban_window": ev.in_ban_window, "ai_label_present": ev.ai_label_present,
                             "campaign_purpose": ev.campaign_purpose, "notes": ev.legal_notes},
        "capture": {"captured_at": _when(ev.captured_at, zone), "tool": ev.capture_tool,
                    "operator": ev.capture_operator, "ip": ev.capture_ip,
                    "headers": dict(ev.capture_headers or {})},
        "sightings": [s | {"seen_at": _when(s["seen_at"], zone)} for s in d["sightings"]],
        "files": item["files"],
    }
    entry["explanation"] = explain(entry, lang)
    return entry


def _detection(d: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    out = {k: d[k] for k in ("detector", "version", "model_id", "model_revision", "weights_digest",
                             "outcome", "score", "threshold", "reasons", "media_sha256")}
    return out | {"outcome_local": outcome_word(d["outcome"], lang), "reasons_local": localise_reasons(list(d["reasons"] or []), lang)}


def _bank(b: dict[str, Any], zone: str) -> dict[str, Any]:
    return b | {"added_at": _when(b["added_at"], zone)}


# The sentences of a substantiated explanation (DSA Art. 16(2)(a)), per notice language.
_PHRASES = {
    "en": {
        "judged": "The {kind} at {media_url} (sha256 {sha}) in the post {post_url} by {account}, posted {posted}, "
                  "was judged '{band}' by deepwatch{score}.",
        "reasons": "Reasons: {reasons}.",
        "detection": "Detector {detector}{model} concluded '{outcome}'{scored}.",
        "provenance": "Provenance check {detector}: {reasons}.",
        "bank": "The file matches the known-fakes bank entry {case} ({signal}).",
        "review": "Investigator {reviewer} {decision} it on {at}: {rationale}",
        "ban_window": {True: "It was posted inside the pre-vote ban window.",
                       False: "It was posted outside the pre-vote ban window."},
        "ai_label": {True: "The post carried a label saying it was made with AI.",
                     False: "The post carried no label saying it was made with AI."},
        "purpose": {True: "It was made for election campaign purposes.",
                    False: "It was not found to be made for election campaign purposes."},
        "notes": "Legal notes: {notes}",
        "confirmed": "confirmed", "dismissed": "dismissed",
        "unreviewed": "NOT REVIEWED: no investigator has confirmed this item yet; it is reported on the automatic analysis alone.",
    },
    "ko": {
        "judged": "{account} 계정이 {posted}에 게시한 {post_url} 게시물의 {kind}({media_url}, sha256 {sha})은(는) "
                  "deepwatch 분석 결과 '{band}'(으)로 판정되었습니다{score}.",
        "reasons": "판정 근거: {reasons}.",
        "detection": "탐지기 {detector}{model}의 결론: '{outcome}'{scored}.",
        "provenance": "출처 확인 {detector}: {reasons}.",
        "bank": "해당 파일은 알려진 딥페이크 목록의 {case} 항목({signal})과 일치합니다.",
        "review": "조사관 {reviewer}이(가) {at}에 {decision}했습니다: {rationale}",
        "ban_window": {True: "선거일 전 금지 기간 안에 게시되었습니다.",
                       False: "선거일 전 금지 기간 밖에서 게시되었습니다."},
        "ai_label": {True: "게시물에 인공지능으로 만든 정보라는 표시가 있었습니다.",
                     False: "게시물에 인공지능으로 만든 정보라는 표시가 없었습니다."},
        "purpose": {True: "선거운동 목적으로 제작되었습니다.",
                    False: "선거운동 목적이 확인되지 않았습니다."},
        "notes": "법률 검토 메모: {notes}",
        "confirmed": "확인", "dismissed": "기각",
        "unreviewed": "검토되지 않음: 조사관이 아직 이 항목을 확인하지 않았으며, 자동 분석 결과만으로 신고합니다.",
    },
}


def explain(entry: dict[str, Any], lang: str) -> str:
    """A plain-language explanation of why this item is reported, built from the recorded facts."""
    p = _PHRASES.get(lang, _PHRASES["en"])
    v = entry["verdict"]
    parts = [p["judged"].format(
        kind=kind_word(entry["media"]["kind"], lang), media_url=entry["media"]["url"], sha=entry["media"]["sha256"],
        post_url=entry["post"]["url"], account=entry["post"]["account"],
        posted=entry["post"]["posted_at"]["local"] if entry["post"]["posted_at"] else "?",
        band=v.get("band_local") or v["band"], score=f" ({v['score']:.2f})" if v["score"] is not None else "",
    )]
    if v.get("reviewed_by_investigator") is False:
        parts.insert(0, p["unreviewed"])
    reasons = v.get("reasons_local", v["reasons"])
    if reasons:
        parts.append(p["reasons"].format(reasons="; ".join(reasons)))
    for det in entry["detections"]:
        model = f" ({det['model_id']}, weights {det['weights_digest'][:12]})" if det["model_id"] and det["weights_digest"] else (
            f" ({det['model_id']})" if det["model_id"] else "")
        scored = ""
        if det["score"] is not None and det["threshold"] is not None:
            scored = f": {det['score']:.2f} ≥ {det['threshold']:.2f}" if det["score"] >= det["threshold"] else f": {det['score']:.2f} < {det['threshold']:.2f}"
        parts.append(p["detection"].format(detector=det["detector"], model=model,
                                           outcome=det.get("outcome_local", det["outcome"]), scored=scored))
        # A learned detector's domain check (issue 15): whether its score counted at all.
        domain = [r for r in det.get("reasons") or [] if r.startswith("domain check:")]
        parts += [f"{r[0].upper()}{r[1:]}." for r in localise_reasons(domain, lang) if domain]
    for det in entry["provenance"]:
        reasons = det.get("reasons_local", det["reasons"])
        if reasons:
            parts.append(p["provenance"].format(detector=det["detector"], reasons="; ".join(reasons)))
    for match in entry["bank_matches"]:
        parts.append(f"{match['text']}." if match.get("text") else p["bank"].format(case=match["case_id"], signal=match["signal"]))
    copies = entry.get("other_copies") or {}
    if copies.get("text"):
        parts.append(copies["text"] + ".")
    for r in entry["reviews"]:
        parts.append(p["review"].format(reviewer=r["reviewer"], decision=p.get(r["decision"], r["decision"]),
                                        at=r["at"]["local"], rationale=r["rationale"]))
    legal = entry["legal_assessment"]
    for key, phrase in (("in_ban_window", "ban_window"), ("ai_label_present", "ai_label"), ("campaign_purpose", "purpose")):
        if legal[key] is not None:
            parts.append(p[phrase][legal[key]])
    if legal["notes"]:
        parts.append(p["notes"].format(notes=legal["notes"]))
    return " ".join(parts)


def _version() -> str:
    try:
        return metadata.version("deepwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- rendering -----------------------------------------------------------------------------


def _environment() -> Environment:
    # autoescape on for every template: post text, account names and URLs come from the platform
    # and may be written to attack whoever opens the notice.
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=StrictUndefined)
    env.filters["web_link"] = _web_link
    env.filters["num"] = lambda x: "" if x is None else f"{x:.3f}"
    env.filters["yesno"] = lambda x, yes, no, unknown: unknown if x is None else (yes if x else no)
    return env


def _web_link(url: Any) -> str | None:
    """The URL if it is safe to make clickable (http or https), else None: shown as text only."""
    return url if isinstance(url, str) and re.match(r"(?i)^https?://", url) else None


def render_notice_html(notice: dict[str, Any], template: str) -> str:
    return _environment().get_template(f"notice-{template}.html").render(notice=notice)


def render_pdf(html_path: Path, pdf_path: Path, *, chromium: str | None = None, timeout_s: float = 60) -> None:
    """Print a local HTML file to PDF with headless Chromium, offline and with scripts off."""
    chromium = chromium or _chromium_path()
    # Playwright's sync API refuses to run inside an asyncio loop; a worker thread has none.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepwatch-pdf") as pool:
        pool.submit(_print_pdf, Path(html_path).resolve(), Path(pdf_path), chromium, timeout_s).result()


def _print_pdf(html_path: Path, pdf_path: Path, chromium: str, timeout_s: float) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from agents.browser import CHROMIUM_ARGS

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
            try:
                context = browser.new_context(java_script_enabled=False)
                page = context.new_page()
                page.set_default_timeout(timeout_s * 1000)
                # Only the packet's own files may load: nothing in a notice reaches the network.
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
                page.goto(html_path.as_uri(), wait_until="load")
                page.pdf(path=str(pdf_path), format="A4", print_background=True,
                         margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
            finally:
                browser.close()
    except PlaywrightError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TakedownError(f"Chromium at {chromium} could not print the notice to PDF: {first}") from None


# -- manifest and signature ----------------------------------------------------------------


def _write_manifest(folder: Path) -> bytes:
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in _UNLISTED:
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    (folder / MANIFEST).write_bytes(data)
    return data


def verify_takedown_packet(folder: str | Path, *, trusted_public_key: str | None = None) -> list[str]:
    """Problems found re-checking a packet (empty list: intact and signed).

    Every file is re-hashed against MANIFEST.sha256, files the manifest does not list are named,
    and the manifest's Ed25519 signature is checked with public_key.hex. A packet re-signed by
    someone else verifies against its own key, so pass `trusted_public_key` (the deployment's key,
    hex) to also require that the signer is who it should be.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [f"{MANIFEST} is missing"]
    manifest = manifest_path.read_bytes()
    problems = _check_listed_files(folder, manifest)
    problems += _check_signature(folder, manifest, trusted_public_key)
    return problems


def _check_listed_files(folder: Path, manifest: bytes) -> list[str]:
    problems, listed = [], set()
    try:
        lines = manifest.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return [f"{MANIFEST} is not UTF-8 text"]
    root = folder.resolve()
    for number, line in enumerate(lines, 1):
        digest, sep, name = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            problems.append(f"{MANIFEST} line {number} is not 'sha256  path': {line[:80]!r}")
            continue
        path = (folder / name).resolve()
        if root not in path.parents:
            problems.append(f"{MANIFEST} line {number} points outside the packet: {name!r}")
            continue
        listed.add(name)
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: content changed (sha256 no longer {digest[:12]}…)")
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in listed and rel not in _UNLISTED:
            problems.append(f"{rel}: not in the manifest")
    return problems


def _check_signature(folder: Path, manifest: bytes, trusted_public_key: str | None) -> list[str]:
    sig_path, key_path = folder / SIGNATURE, folder / PUBLIC_KEY
    missing = [p.name for p in (sig_path, key_path) if not p.is_file()]
    if missing:
        return [f"{name} is missing: the manifest is unsigned" for name in missing]
    signature = sig_path.read_text("ascii", errors="replace").strip()
    public_key = key_path.read_text("ascii", errors="replace").strip()
    problems = []
    if trusted_public_key is not None and public_key.lower() != trusted_public_key.strip().lower():
        problems.append(f"{PUBLIC_KEY}: signed by key {public_key[:16]}…, not the trusted key {trusted_public_key[:16]}…")
    if not verify_signature(public_key, signature, manifest):
        problems.append(f"{SIGNATURE}: the signature does not match {MANIFEST} and {PUBLIC_KEY}")
    return problems


def verify_takedown_request(store: Store, request_id: int, *, trusted_public_key: str | None = None) -> list[str]:
    """verify_takedown_packet on a request's packet, plus: is it still the packet that was recorded?"""
    request = get_takedown(store, request_id)
    if not request.packet_path:
        return [f"takedown request {request_id} has no packet"]
    problems = verify_takedown_packet(request.packet_path, trusted_public_key=trusted_public_key)
    manifest = Path(request.packet_path) / MANIFEST
    if manifest.is_file() and hashlib.sha256(manifest.read_bytes()).hexdigest() != request.packet_sha256:
        problems.append(f"{MANIFEST}: not the manifest recorded for request {request_id} (sha256 {request.packet_sha256[:12]}…)")
    return problems
