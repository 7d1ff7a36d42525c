"""Capture a flagged post for evidence: the page and its media as a signed WACZ, plus the facts a
court asks about (Berkeley Protocol): what was fetched, from which address, when, by whom, with
what tool.

`capture_post` goes through the shared `Fetcher` (address guard, robots.txt, caps) with
`archive_get`, so the archive records the bytes and headers as the server sent them and the
address actually connected to. A media URL that fails is written into the capture's metadata
record with its reason; the capture still completes, because a post whose video was already
removed is evidence too.

`make_working_copy` makes the preview investigators look at (a JPEG, EXIF stripped, at most
1024 px a side; a poster frame for videos). The untouched original stays in the blob store under
its own sha256; the copy is a separate blob (`Evidence.working_sha256`).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

import lxml.html
from lxml.etree import ParserError
from PIL import Image, ImageOps

from agents.fetch import ArchivedResponse, Exchange, FetchError, Fetcher
from evidence.signing import Signer
from evidence.wacz import CapturedPage, build_wacz
from storage.blobs import BlobStore

PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
MEDIA_ACCEPT = "image/*,video/*;q=0.9,*/*;q=0.5"
PREVIEW_MAX_SIDE = 1024
PREVIEW_QUALITY = 85
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MediaCapture(NamedTuple):
    """One media URL of the post as captured; unpacks as (url, status, sha256, error)."""

    url: str
    status: int | None  # the final HTTP status; None when no answer came (refused, timeout...)
    sha256: str | None  # of the decoded body, which is also put in the blob store; None on failure
    error: str | None  # why it failed ("HTTP 404: ...", "blocked address: ..."); None on success


@dataclass(frozen=True)
class CaptureRecord:
    wacz_sha256: str  # the WACZ in the blob store
    page_url: str
    page_final_url: str  # after redirects
    page_ip: str | None  # the address the page was fetched from
    page_headers: dict[str, str]  # the page's response headers (repeated names joined with ", ")
    page_title: str
    captured_at: datetime  # UTC, when the capture began
    capture_tool: str  # "deepwatch/0.1.0 (warcio 1.8.1; Chromium 131.0)"
    operator: str
    media: tuple[MediaCapture, ...] = field(default_factory=tuple)


def capture_post(
    post_url: str,
    media_urls: Sequence[str],
    fetcher: Fetcher,
    blobs: BlobStore,
    *,
    screenshot_png: bytes | None,
    operator: str,
    signer: Signer,
    browser_version: str | None = None,
) -> CaptureRecord:
    """Archive the post page and each media URL into a signed WACZ stored in `blobs`.

    Raises FetchError when the page itself cannot be fetched (nothing is stored then), and
    ValueError for bad arguments. Media bodies are stored in `blobs` as well, decoded.
    """
    if not isinstance(operator, str) or not operator.strip():
        raise ValueError("operator must name who or what captured the post (an investigator or campaign:NAME)")
    if isinstance(media_urls, str) or not all(isinstance(u, str) for u in media_urls):
        raise ValueError(f"media_urls must be a list of URL strings, got {media_urls!r}")
    if screenshot_png is not None and not bytes(screenshot_png[:8]) == _PNG_SIGNATURE:
        raise ValueError("screenshot_png is not a PNG image (no PNG signature at the start)")
    captured_at = datetime.now(timezone.utc)
    page = fetcher.archive_get(post_url, accept=PAGE_ACCEPT)
    exchanges: list[Exchange] = list(page.exchanges)
    media: list[MediaCapture] = []
    media_facts: list[dict] = []
    stored_media: list[bytes] = []
    for url in media_urls:
        try:
            got = fetcher.archive_get(url, accept=MEDIA_ACCEPT)
        except FetchError as exc:
            error = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
            media.append(MediaCapture(url, _status_of(exc.reason), None, error))
            media_facts.append({"url": url, "outcome": "failed", "reason": exc.reason, "detail": exc.detail,
                                "at_url": exc.url})
            continue
        exchanges.extend(got.exchanges)
        digest = hashlib.sha256(got.body).hexdigest()
        stored_media.append(got.body)
        media.append(MediaCapture(url, got.final.status, digest, None))
        media_facts.append({
            "url": url, "outcome": "captured", "final_url": got.final_url, "status": got.final.status,
            "declared_mime": got.declared_mime, "sha256": digest, "bytes": len(got.body),
            "ip": got.final.peer_ip, "redirects": len(got.exchanges) - 1,
        })
    tool = capture_tool(browser_version)
    title = page_title(page)
    facts = {
        "capture_tool": tool,
        "software": _software_versions(),
        "browser": browser_version,
        "operator": operator,
        "captured_at": captured_at.isoformat(),
        "page": {
            "url": post_url, "final_url": page.final_url, "status": page.final.status, "title": title,
            "resolved_ip": page.final.peer_ip, "hops": [[e.url, e.status, e.peer_ip] for e in page.exchanges],
            "sha256": hashlib.sha256(page.body).hexdigest(),
        },
        "user_agent": fetcher.policy.user_agent,
        "screenshot": None if screenshot_png is None else {
            "sha256": hashlib.sha256(screenshot_png).hexdigest(), "bytes": len(screenshot_png)},
        "media": media_facts,
    }
    wacz = build_wacz(CapturedPage(
        page_url=post_url, title=title, captured_at=captured_at, exchanges=exchanges, operator=operator,
        software=f"deepwatch {_version('deepwatch')}", facts=facts, screenshot_png=screenshot_png,
    ), signer)
    for body in stored_media:  # only once the WACZ is built: a failed capture leaves no strays
        blobs.put(body)
    return CaptureRecord(
        wacz_sha256=blobs.put(wacz),
        page_url=post_url,
        page_final_url=page.final_url,
        page_ip=page.final.peer_ip,
        page_headers=header_dict(page.final.headers),
        page_title=title,
        captured_at=captured_at,
        capture_tool=tool,
        operator=operator,
        media=tuple(media),
    )


def capture_tool(browser_version: str | None = None) -> str:
    """"deepwatch/0.1.0 (warcio 1.8.1; Chromium 131.0)": what made the capture, for the record."""
    parts = [f"warcio {_version('warcio')}"]
    if browser_version:
        # Playwright's browser.version is a bare "131.0.6778.85"; a full product name is kept as is.
        named = browser_version.lower().startswith(("chrom", "headless"))
        parts.append(browser_version if named else f"Chromium {browser_version}")
    return f"deepwatch/{_version('deepwatch')} ({'; '.join(parts)})"


def page_title(page: ArchivedResponse) -> str:
    """The HTML <title> of the page, or "" (not HTML, no title, unparsable)."""
    if "html" not in page.declared_mime or not page.body.strip():
        return ""
    try:
        title = lxml.html.fromstring(page.body).findtext(".//title")
    except (ParserError, ValueError):
        return ""
    return " ".join((title or "").split())


def header_dict(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict: the first spelling of a name wins, repeated values are joined by ", "."""
    out: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in headers:
        key = spelled.setdefault(name.lower(), name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


# -- working copies ---------------------------------------------------------------------------


def make_working_copy(original: bytes, mime: str) -> bytes | None:
    """A preview JPEG (at most PREVIEW_MAX_SIDE px a side, no EXIF or other metadata) of an image,
    or of a video's first frame; None when the bytes cannot be decoded as either.

    `original` is only read: the evidence keeps the untouched bytes under their own sha256.
    """
    if not isinstance(original, (bytes, bytearray, memoryview)):
        raise TypeError(f"original must be bytes, got {type(original).__name__}")
    data = bytes(original)  # a private copy: nothing below can touch the caller's buffer
    kind = (mime or "").split("/", 1)[0].strip().lower()
    decoders = (_video_frame, _still_image) if kind == "video" else (_still_image, _video_frame)
    for decode in decoders:
        image = decode(data)
        if image is not None:
            return _preview_jpeg(image)
    return None


def _still_image(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))  # JPEGs decode at a reduced scale
        image.load()
        return ImageOps.exif_transpose(image)  # show it the right way up before EXIF is dropped
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _video_frame(data: bytes) -> Image.Image | None:
    import av  # imported here: PyAV loads FFmpeg, which image-only callers never need

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return None
            for frame in container.decode(video=0):
                return frame.to_image()
    except (av.FFmpegError, ValueError, OSError, IndexError):
        return None
    return None


def _preview_jpeg(image: Image.Image) -> bytes:
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))  # transparency shown on white, not black
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    else:
        image = image.convert("RGB")
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.LANCZOS)
    # Copy the pixels into a fresh image so no EXIF, XMP, ICC or comment rides along.
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=PREVIEW_QUALITY, optimize=True)
    return out.getvalue()


# -- helpers ----------------------------------------------------------------------------------


def _status_of(reason: str) -> int | None:
    """The HTTP status in a FetchError reason such as "HTTP 404"; None for non-HTTP failures."""
    if reason.startswith("HTTP ") and reason[5:].isdigit():
        return int(reason[5:])
    return None


def _software_versions() -> dict[str, str]:
    versions = {name: _version(name) for name in ("deepwatch", "warcio", "httpx", "httpcore", "cryptography")}
    versions["python"] = platform.python_version()
    return versions


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
