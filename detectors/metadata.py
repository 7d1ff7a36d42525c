"""Unsigned provenance metadata: what a file's own tags say about how it was made.

Reads, without decoding any pixels:

* XMP packets anywhere in the file (JPEG APP1, PNG iTXt, WebP, MP4 and others all embed the same
  `<x:xmpmeta>` packet), for the IPTC `DigitalSourceType` and tool names (CreatorTool, Credit...);
* PNG text chunks (tEXt, zTXt, iTXt), where Stable Diffusion front ends write their settings;
* EXIF (Software, ImageDescription, UserComment...) of images;
* the container tags of videos.

None of this is signed. Generators and editors write it in good faith, but anyone can strip it
(most platforms do on upload) or forge it (to make a real photo look machine-made). So a finding
here is "fake" for this detector, and fusion lets it ask for a review or back up another
detector's signal; only a validly signed C2PA manifest can make an item "confirmed AI". Finding
nothing says nothing about the content.

The generators recognised, and the words shown for each, are the one table `GENERATOR_SIGNS`.
"""
from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from detectors.base import Detection, MediaInput
from detectors.hashing import sniff_mime
from detectors.source_types import AI_CATEGORIES, lookup

DETECTOR_VERSION = "1.0"

# ------------------------------------------------------------------------------------ vocabulary

# IPTC digital source types: one table for C2PA, metadata and reports (detectors/source_types.py).
_DST_URI = re.compile(r"https?://cv\.iptc\.org/newscodes/digitalsourcetype/([A-Za-z]+)")

# Which metadata fields name the tool that made or last saved a file.
_TOOL_FIELDS = ("exif:software", "xmp:creatortool", "png:software", "xmp:software",
                "video:encoder", "video:software", "video:comment", "exif:artist", "xmp:credit",
                "png:author", "png:source")
# Free-text descriptions, where some generators put the prompt and a job id.
_DESCRIPTION_FIELDS = ("png:description", "exif:imagedescription", "xmp:description", "png:comment")


@dataclass(frozen=True)
class GeneratorSign:
    generator: str
    fields: tuple[str, ...]  # normalised field names (see `_fields`) the pattern is tried on
    pattern: re.Pattern[str]
    says: str  # plain words: what the field holds when the pattern matches


def _sign(generator: str, fields: tuple[str, ...], pattern: str, says: str) -> GeneratorSign:
    return GeneratorSign(generator, fields, re.compile(pattern, re.IGNORECASE | re.DOTALL), says)


# One row per known trace a generator leaves. Patterns are specific on purpose: a false "AI"
# reading of a real photo is the expensive mistake here.
GENERATOR_SIGNS: tuple[GeneratorSign, ...] = (
    _sign("Stable Diffusion web UI (AUTOMATIC1111, Forge, SD.Next)", ("png:parameters", "exif:usercomment"),
          r"Steps: \d+.*Sampler: ", "generation settings of Stable Diffusion web UI (steps, sampler, seed)"),
    _sign("ComfyUI", ("png:prompt",), r'"class_type"\s*:', "a ComfyUI generation graph"),
    _sign("ComfyUI", ("png:workflow",), r'"nodes"\s*:', "a ComfyUI workflow"),
    _sign("NovelAI", _TOOL_FIELDS, r"\bNovelAI\b", "the NovelAI image generator's name"),
    _sign("NovelAI", ("png:comment",), r'"(?:uncond_scale|noise_schedule|sampler)"\s*:.*"steps"\s*:|'
          r'"steps"\s*:.*"(?:uncond_scale|noise_schedule|sampler)"\s*:', "NovelAI generation settings"),
    _sign("InvokeAI", ("png:invokeai_metadata", "png:invokeai_graph", "png:sd-metadata", "png:dream"),
          r"\S", "InvokeAI generation metadata"),
    _sign("Fooocus", ("png:fooocus_scheme", "png:parameters"), r"fooocus", "Fooocus generation metadata"),
    _sign("Midjourney", _DESCRIPTION_FIELDS, r"Job ID: [0-9a-f]{8}-[0-9a-f]{4}-",
          "a Midjourney job id"),
    _sign("Midjourney", _TOOL_FIELDS, r"\bMidjourney\b", "the Midjourney generator's name"),
    _sign("DALL-E (OpenAI)", _TOOL_FIELDS, r"\bDALL[\s·\-]?E\b|\bOpenAI\b|\bChatGPT\b",
          "an OpenAI image generator's name"),
    _sign("Adobe Firefly", _TOOL_FIELDS, r"\bAdobe Firefly\b", "Adobe Firefly's name"),
    _sign("Google generative AI", ("xmp:credit", "exif:artist"), r"Made with Google AI",
          "Google's generative-AI credit line"),
    _sign("Stable Diffusion", _TOOL_FIELDS, r"\bStable[ -]?Diffusion\b|\bDiffusionBee\b|\bDraw Things\b",
          "a Stable Diffusion application's name"),
)

# Scanning limits: metadata is small; anything past these is not metadata we need.
_MAX_XMP_PACKETS = 16
_MAX_XMP_BYTES = 2_000_000
_MAX_TEXT_BYTES = 2_000_000  # one PNG text value, after decompression
_EXCERPT = 160


# ------------------------------------------------------------------------------------ reading


def _xmp_packets(data: bytes) -> Iterator[bytes]:
    """Every `<x:xmpmeta>...</x:xmpmeta>` packet stored uncompressed anywhere in the bytes."""
    start = 0
    for _ in range(_MAX_XMP_PACKETS):
        begin = data.find(b"<x:xmpmeta", start)
        if begin < 0:
            return
        end = data.find(b"</x:xmpmeta>", begin, begin + _MAX_XMP_BYTES)
        if end < 0:
            return
        end += len(b"</x:xmpmeta>")
        yield data[begin:end]
        start = end


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_RDF_RESOURCE = _RDF + "resource"


def _is_structure(el: Any) -> bool:
    """rdf:RDF, rdf:Description, rdf:Alt/Seq/Bag/li and x:xmpmeta hold properties; they are none."""
    return el.tag.startswith(_RDF) or _local(el.tag) == "xmpmeta"


def _xmp_fields(packet: bytes) -> tuple[list[tuple[str, str]], str | None]:
    """(field, value) pairs of one XMP packet, and a note when it did not parse as XML."""
    from lxml import etree

    # No entities, no network: the packet is untrusted input.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=False)
    try:
        root = etree.fromstring(packet, parser)
    except etree.XMLSyntaxError as exc:
        # Fall back to the URIs themselves: a damaged packet can still name its source type.
        text = packet.decode("utf-8", "replace")
        return [("xmp:digitalsourcetype", m.group(0)) for m in _DST_URI.finditer(text)], (
            f"an XMP packet is not well-formed XML ({exc}); only its source-type URIs were read"
        )
    fields: list[tuple[str, str]] = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue  # comments, processing instructions
        for name, value in el.attrib.items():
            if name == _RDF_RESOURCE:
                owner = _property_of(el) if _is_structure(el) else el
                if owner is not None:
                    fields.append((f"xmp:{_local(owner.tag)}", value))
            elif not name.startswith((_RDF, "{http://www.w3.org/XML/1998/namespace}")):
                fields.append((f"xmp:{_local(name)}", value))
        text = (el.text or "").strip()
        if text and len(el) == 0:
            owner = _property_of(el) if _is_structure(el) else el
            if owner is not None:
                fields.append((f"xmp:{_local(owner.tag)}", text))
    return fields, None


def _property_of(el: Any) -> Any:
    """The XMP property an rdf:li (or rdf:Alt/Seq/Bag) value belongs to."""
    parent = el.getparent()
    while parent is not None and _is_structure(parent):
        parent = parent.getparent()
    return parent


def _png_text(data: bytes) -> Iterator[tuple[str, str]]:
    """(keyword, text) of every tEXt, zTXt and iTXt chunk, read straight from the chunk list.

    Walking the chunks ourselves reads text stored after the image data too (Pillow only sees
    it after decoding every pixel) and bounds what a compressed chunk may inflate to.
    """
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if len(body) < length or ctype == b"IEND":
            return
        if ctype not in (b"tEXt", b"zTXt", b"iTXt") or b"\x00" not in body:
            continue
        key_raw, rest = body.split(b"\x00", 1)
        key = key_raw.decode("latin-1")
        try:
            if ctype == b"tEXt":
                yield key, rest.decode("latin-1")
            elif ctype == b"zTXt":
                yield key, _inflate(rest[1:]).decode("latin-1")
            else:  # iTXt: flag, method, language\0, translated keyword\0, text (UTF-8)
                compressed = rest[:1] == b"\x01"
                _lang, _translated, text = rest[2:].split(b"\x00", 2)
                yield key, (_inflate(text) if compressed else text).decode("utf-8", "replace")
        except (zlib.error, ValueError):
            continue  # one damaged chunk: the others may still be readable


def _inflate(raw: bytes) -> bytes:
    """zlib data, cut at _MAX_TEXT_BYTES: a small chunk may not inflate into gigabytes."""
    return zlib.decompressobj().decompress(raw, _MAX_TEXT_BYTES)


_EXIF_TAGS = {0x0131: "software", 0x010E: "imagedescription", 0x013B: "artist", 0x010F: "make",
              0x0110: "model", 0x8298: "copyright"}
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


def _exif_fields(data: bytes) -> tuple[list[tuple[str, str]], str | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the headers only, no pixels
            exif = img.getexif()
            fields = [(f"exif:{name}", _text(exif[tag])) for tag, name in _EXIF_TAGS.items() if tag in exif]
            comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return [], f"EXIF could not be read ({type(exc).__name__}: {exc})"
    if comment is not None:
        fields.append(("exif:usercomment", _user_comment(comment)))
    return [(k, v) for k, v in fields if v], None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00 ")
    return str(value).strip("\x00 ")


def _user_comment(raw: Any) -> str:
    """EXIF UserComment: an 8-byte character-code header, then the text."""
    if not isinstance(raw, bytes):
        return _text(raw)
    head, body = raw[:8], raw[8:]
    if head.startswith(b"UNICODE"):
        # The standard leaves the byte order to the writer; piexif (AUTOMATIC1111) writes
        # big-endian, others little. Generation settings are mostly ASCII: the right order is
        # the one that reads as more of it.
        readings = [body.decode(order, "replace") for order in ("utf-16-be", "utf-16-le")]
        best = max(readings, key=lambda text: sum(c.isascii() for c in text))
        return best.strip("\x00 ")
    return body.decode("utf-8" if not head.startswith(b"ASCII") else "ascii", "replace").strip("\x00 ")


def _video_fields(data: bytes) -> tuple[list[tuple[str, str]], str | None]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            tags = dict(container.metadata)
            for stream in container.streams:
                tags.update({k: v for k, v in stream.metadata.items() if k not in tags})
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return [], f"the container tags could not be read ({exc})"
    return [(f"video:{k.lower()}", str(v)) for k, v in tags.items() if str(v).strip()], None


# ------------------------------------------------------------------------------------ judging


def _field_words(field: str) -> str:
    """'png:parameters' -> "PNG text chunk 'parameters'", for investigators."""
    source, name = field.split(":", 1)
    return {
        "png": f"PNG text chunk '{name}'",
        "exif": f"EXIF {name}",
        "xmp": f"XMP {name}",
        "video": f"video tag '{name}'",
    }[source]


def _excerpt(value: str) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…"


def find_signs(fields: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Every GENERATOR_SIGNS row matched by a field, once per (generator, field)."""
    hits: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for sign in GENERATOR_SIGNS:
        for field, value in fields:
            if field in sign.fields and (sign.generator, field) not in seen and sign.pattern.search(value):
                seen.add((sign.generator, field))
                hits.append({"generator": sign.generator, "field": field, "says": sign.says,
                             "excerpt": _excerpt(value)})
    return hits


def source_types(fields: list[tuple[str, str]]) -> list[dict[str, str]]:
    """IPTC DigitalSourceType declarations among XMP fields, with their category."""
    found: list[dict[str, str]] = []
    for field, value in fields:
        if field != "xmp:digitalsourcetype":
            continue
        match = _DST_URI.search(value)
        term = match.group(1) if match else value.strip().rsplit("/", 1)[-1]
        known = lookup(term)
        entry = {"term": known.term, "uri": value.strip(), "category": known.category, "meaning": known.meaning}
        if entry not in found:
            found.append(entry)
    return found


UNSIGNED_CAVEAT = (
    "this metadata is unsigned: anyone can strip or forge it, so it can ask for a review or back "
    "up another detector, but it never confirms AI on its own"
)


def judge(fields: list[tuple[str, str]]) -> tuple[str, list[str], dict[str, Any]]:
    """Outcome, plain-words reasons and details from the collected (field, value) pairs."""
    declared = source_types(fields)
    signs = find_signs(fields)
    # Only generative AI and AI-edited count; other synthetic media is a finding, never a claim of AI.
    ai_types = [d for d in declared if d["category"] in AI_CATEGORIES]
    reasons = [
        f"unsigned XMP metadata declares the IPTC digital source type {d['term']} ({d['meaning']})"
        for d in ai_types
    ]
    reasons += [f"{_field_words(s['field'])} holds {s['says']} ({s['generator']})" for s in signs]
    details: dict[str, Any] = {
        "signed": False,
        "ai_declared": bool(reasons),
        "digital_source_types": declared,
        "generator_signs": signs,
        "generators": sorted({s["generator"] for s in signs}),
        "fields_read": sorted({f for f, _ in fields}),
    }
    if reasons:
        return "fake", reasons + [UNSIGNED_CAVEAT], details
    other = [f"unsigned metadata declares {d['term']} ({d['meaning']}); not relied on" for d in declared]
    return "inconclusive", other + [
        "no AI generator metadata or IPTC digital source type of AI found (metadata is easily "
        "stripped, so its absence says nothing about the content)"
    ], details


class MetadataProvenanceDetector:
    """Reads IPTC/XMP digital source types and known generators' traces; no learned weights."""

    name = "metadata-provenance"
    kinds = ("image", "video")

    def __init__(self) -> None:
        self.version = DETECTOR_VERSION

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    def collect(self, data: bytes, kind: str) -> tuple[list[tuple[str, str]], list[str]]:
        """Every (field, value) found, and notes on parts that could not be read."""
        fields: list[tuple[str, str]] = []
        notes: list[str] = []
        for packet in _xmp_packets(data):
            found, note = _xmp_fields(packet)
            fields += found
            if note:
                notes.append(note)
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            for key, text in _png_text(data):
                if key == "XML:com.adobe.xmp":  # XMP in a compressed iTXt chunk: not seen raw
                    found, note = _xmp_fields(text.encode("utf-8"))
                    fields += found
                    notes += [note] if note else []
                else:
                    fields.append((f"png:{key.lower()}", text))
        readers = (_video_fields,) if kind == "video" else (_exif_fields,)
        for read in readers:
            found, note = read(data)
            fields += found
            if note:
                notes.append(note)
        return fields, notes

    def detect_one(self, item: MediaInput) -> Detection:
        if not item.data:
            return self._result("error", ["empty file"], {})
        sniffed = sniff_mime(item.data)
        if sniffed and not sniffed.startswith(("image/", "video/")):
            return self._result("error", [f"not an {item.kind}: sniffed {sniffed}"], {})
        try:
            fields, notes = self.collect(item.data, item.kind)
        except Exception as exc:  # one odd file must not fail the batch
            return self._result("error", [f"metadata could not be read: {type(exc).__name__}: {exc}"], {})
        outcome, reasons, details = judge(fields)
        if notes:
            details["unreadable"] = notes
        return self._result(outcome, reasons, details)

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        return [self.detect_one(item) for item in items]

    def _result(self, outcome: str, reasons: list[str], details: dict[str, Any]) -> Detection:
        return Detection(detector=self.name, version=self.version, outcome=outcome,  # type: ignore[arg-type]
                         reasons=reasons, details=details)
