"""Takedown packets: one folder per evidence record, readable by people and by systems.

Layout:
    evidence.json      the record, its detections and sightings (for systems)
    index.html         the same for people (every untrusted string escaped)
    media/<sha256>.<ext>, screenshot.png, capture.html   the files the record rests on
    MANIFEST.sha256    `sha256  path` for every other file (the `sha256sum -c` format)
"""
from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from storage.blobs import BlobStore
from storage.db import Store
from storage.queries import evidence_detail

_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
}


class PacketError(RuntimeError):
    pass


def export_packet(store: Store, blobs: BlobStore, evidence_id: int, out_dir: str | Path, *, actor: str) -> Path:
    """Write the packet and log an "exported" custody event naming `actor` (the person exporting)."""
    if not actor or not actor.strip():
        raise PacketError("an export needs the name of the person exporting (actor)")
    record = evidence_detail(store, evidence_id)
    if record is None:
        raise PacketError(f"no evidence record with id {evidence_id}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise PacketError(f"output folder {out} is not empty; choose a new one")
    (out / "media").mkdir(parents=True, exist_ok=True)

    files: dict[str, str] = {}
    media = record["media"]
    media_name = f"media/{media['sha256']}{_EXT.get(media['mime'], '.bin')}"
    _copy_blob(blobs, media["sha256"], out / media_name)
    files["media"] = media_name
    if record["screenshot_sha256"]:
        _copy_blob(blobs, record["screenshot_sha256"], out / "screenshot.png")
        files["screenshot"] = "screenshot.png"
    if record["capture_html_sha256"]:
        _copy_blob(blobs, record["capture_html_sha256"], out / "capture.html")
        files["capture_html"] = "capture.html"

    packet = {
        "packet_version": 1,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "generator": f"deepwatch {_version()}",
        "notice": {
            "exact_urls": [record["post"]["url"], media["url"]],
            "explanation": _explanation(record),
            "good_faith_statement": (
                "The sender believes in good faith that the information in this notice is accurate "
                "and that the content identified is manipulated or synthetic media."
            ),
        },
        "evidence": record,
        "files": files,
    }
    (out / "evidence.json").write_text(json.dumps(packet, indent=2, ensure_ascii=False, default=str), "utf-8")
    (out / "index.html").write_text(_render_html(packet), "utf-8")
    _write_manifest(out)
    from evidence.custody import append_event  # storage stays importable without evidence/

    manifest = (out / "MANIFEST.sha256").read_bytes()
    append_event(store, evidence_id, "exported", actor.strip(), {
        "kind": "evidence export", "packet_path": str(out.resolve()),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
    })
    return out


def verify_packet(folder: str | Path) -> list[str]:
    """Problems found re-hashing a packet against its manifest (empty list: intact)."""
    folder = Path(folder)
    problems = []
    manifest = folder / "MANIFEST.sha256"
    if not manifest.exists():
        return ["MANIFEST.sha256 is missing"]
    listed = set()
    for line in manifest.read_text("utf-8").splitlines():
        digest, name = line.split("  ", 1)
        listed.add(name)
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: content changed")
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != "MANIFEST.sha256" and rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


def _copy_blob(blobs: BlobStore, sha256: str, target: Path) -> None:
    data = blobs.get(sha256)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PacketError(f"blob {sha256} no longer matches its hash: the blob store was altered")
    target.write_bytes(data)


def _write_manifest(out: Path) -> None:
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256"):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(out).as_posix()}")
    (out / "MANIFEST.sha256").write_text("\n".join(lines) + "\n", "utf-8")


def _explanation(record: dict[str, Any]) -> str:
    reasons = "; ".join(record["reasons"]) or "no reasons recorded"
    return (
        f"The media at {record['media']['url']} (sha256 {record['media']['sha256']}) in the post "
        f"{record['post']['url']} by {record['post']['account']} was judged '{record['verdict']}' "
        f"by deepwatch: {reasons}."
    )


def _version() -> str:
    try:
        return metadata.version("deepwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def _render_html(packet: dict[str, Any]) -> str:
    e = html.escape
    rec = packet["evidence"]
    post, media = rec["post"], rec["media"]
    det_rows = "".join(
        f"<tr><td>{e(str(d['detector']))}</td><td>{e(str(d['model_id'] or ''))}</td>"
        f"<td>{e(str(d['outcome']))}</td><td>{_num(d['score'])}</td><td>{_num(d['threshold'])}</td>"
        f"<td>{e('; '.join(d['reasons']))}</td></tr>"
        for d in rec["detections"]
    )
    sight_rows = "".join(
        f"<tr><td>{e(s['platform'])}</td><td>{e(s['account'])}</td><td>{_link(s['post_url'])}</td>"
        f"<td>{e(str(s['seen_at']))}</td></tr>"
        for s in rec["sightings"]
    )
    files = packet["files"]
    media_tag = (
        f'<video src="{e(files["media"])}" controls width="480"></video>'
        if media["kind"] == "video"
        else f'<img src="{e(files["media"])}" style="max-width:480px">'
    )
    shot = '<h2>Screenshot</h2><img src="screenshot.png" style="max-width:100%">' if "screenshot" in files else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>Takedown evidence #{rec['id']}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top;word-break:keep-all;overflow-wrap:break-word}}a,code{{overflow-wrap:anywhere}}table{{border-collapse:collapse}}</style>
</head><body>
<h1>Evidence #{rec['id']}: {e(str(rec['verdict']))}</h1>
<p><b>Post:</b> {_link(post['url'])} by {e(post['account'])} on {e(post['platform'])}, posted {e(str(post['created_at']))}</p>
<p><b>Post text:</b> {e(post['text'])}</p>
<p><b>Media:</b> {_link(media['url'])}<br>sha256 <code>{e(media['sha256'])}</code>, pHash <code>{e(str(media['phash']))}</code></p>
{media_tag}
<p><b>Captured at (UTC):</b> {e(str(rec['captured_at']))}</p>
<h2>Why</h2><p>{e(packet['notice']['explanation'])}</p>
<h2>Detections</h2><table><tr><th>detector</th><th>model</th><th>outcome</th><th>score</th><th>threshold</th><th>reasons</th></tr>{det_rows}</table>
<h2>Sightings</h2><table><tr><th>platform</th><th>account</th><th>post</th><th>seen (UTC)</th></tr>{sight_rows}</table>
{shot}
<h2>Statement</h2><p>{e(packet['notice']['good_faith_statement'])}</p>
<p><small>Generated {e(packet['generated_at'])} by {e(packet['generator'])}. File digests in MANIFEST.sha256.</small></p>
</body></html>
"""


# The page shows hostile text (post text, account names, URLs from the platform): no script may
# run, nothing may load from outside the packet, no form may post anywhere.
CSP = ("default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _link(url: object) -> str:
    """A link only for http(s) URLs; anything else (javascript:, data:, file:) is shown as text."""
    text = html.escape(str(url or ""))
    if isinstance(url, str) and re.match(r"(?i)^https?://[^\s]+$", url):
        return f'<a href="{text}" rel="noopener noreferrer">{text}</a>'
    return f"<code>{text}</code>"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
