"""Telling what media bytes are, and perceptual hashes for finding the same picture again.

`probe_media` is the one call the dedup stage makes: it sniffs the real format from the
bytes (a server's Content-Type is often wrong, and an HTML error page served as
`image/jpeg` must not pass as an image), decodes fully to catch truncated or corrupt files,
and returns a pHash for images or per-frame pHashes for videos.
"""
from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageFile, ImageOps

if TYPE_CHECKING:
    import numpy as np

MAX_PIXELS = 50_000_000  # refuse bigger images: a decompression bomb, or nothing we need whole
PHASH_DRAFT_SIZE = (128, 128)


class MediaDecodeError(ValueError):
    """The bytes are not usable media; `str(exc)` says why in plain words, `reason` is the short
    stable part a run report counts by (no sizes or decoder messages in it)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class MediaInfo:
    kind: Literal["image", "video"]
    mime: str  # sniffed from the bytes, not the declared type
    width: int
    height: int
    duration_s: float | None  # videos only
    phash: str | None  # images only: 16 hex chars
    frame_hashes: tuple[str, ...] = ()  # videos only: pHash of sampled frames, in time order


# ---------------------------------------------------------------------------- sniffing

_FTYP_IMAGE_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
}


def sniff_mime(data: bytes) -> str | None:
    """The media type the bytes really are, from their leading magic bytes; None if unknown."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM" and len(data) > 26:
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_IMAGE_BRANDS:
            return _FTYP_IMAGE_BRANDS[brand]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide"):  # old QuickTime files start without ftyp
        return "video/quicktime"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML header: Matroska or its WebM profile
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    return _sniff_text(data[:1024])


def _sniff_text(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not text:
        return None
    if text.startswith(b"<"):
        if b"<svg" in text:
            return "image/svg+xml"
        if any(tag in text for tag in (b"<!doctype html", b"<html", b"<head", b"<body")):
            return "text/html"
        if text.startswith(b"<?xml"):
            return "application/xml"
    if text[:1] in (b"{", b"["):
        return "application/json"
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The 1024-byte cut may split the last character; anything earlier is not text.
        if exc.start < len(text) - 4:
            return None
        decoded = text[: exc.start].decode("utf-8")
    if decoded and all(c.isprintable() or c in "\t\r\n" for c in decoded):
        return "text/plain"
    return None


# ---------------------------------------------------------------------------- images


def decode_image(data: bytes, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode fully into an RGB image (EXIF rotation applied, alpha dropped).

    `draft_size` lets a JPEG decode at a reduced scale (1/2, 1/4 or 1/8, never below that
    size) straight from its DCT data, which is many times faster for large photos; other
    formats ignore it. Raises MediaDecodeError naming the problem.
    """
    return _decode(data, draft_size)[0]


def _decode(
    data: bytes, draft_size: tuple[int, int] | None, *, gray: bool = False
) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded RGB image and the full-size (width, height), upright as displayed.

    With `gray` the image comes back in mode "L"; a JPEG is then decoded from its luma
    channel only, which skips the colour IDCTs, upsampling and colour conversion.
    """
    mime = sniff_mime(data) if data else None
    if not data:
        raise MediaDecodeError("not an image: empty file")
    if mime is None:
        raise MediaDecodeError("not an image: unrecognised bytes")
    if not mime.startswith("image/"):
        raise MediaDecodeError(f"not an image: sniffed {mime}")
    if mime == "image/svg+xml":
        raise MediaDecodeError("unsupported image format: image/svg+xml is vector, not pixels")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched Pillow into padding truncated files with grey: we would miss them.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; truncated files would pass")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if mime in ("image/gif", "image/webp"):  # frames x pixels, before Pillow parses any frame
                from detectors.media_limits import check_animation

                check_animation(data, mime)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise MediaDecodeError(
                    f"corrupt image: {width}x{height} pixels is over the {MAX_PIXELS:,} pixel "
                    "limit (decompression bomb)", reason="corrupt image: decompression bomb",
                )
            if img.format == "JPEG" and (draft_size is not None or gray):
                img.draft("L" if gray else "RGB", draft_size or (width, height))
            img.load()
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations that turn by 90°
                width, height = height, width
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":
                img = img.convert("RGBA")  # palette transparency must go through RGBA to drop cleanly
            if img.mode != ("L" if gray else "RGB"):
                img = img.convert("L" if gray else "RGB")
    except MediaDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaDecodeError(f"corrupt image: decompression bomb ({exc})", reason="corrupt image: decompression bomb") from exc
    except Image.UnidentifiedImageError as exc:
        raise MediaDecodeError(f"unsupported image format: Pillow cannot read this {mime}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        message = str(exc)
        if "truncated" in message.lower() or isinstance(exc, EOFError):
            raise MediaDecodeError("corrupt image: truncated") from exc
        raise MediaDecodeError(f"corrupt image: {message}", reason="corrupt image") from exc
    except Exception as exc:  # malformed files trip odd errors inside decoders (struct, index...)
        raise MediaDecodeError(f"corrupt image: {type(exc).__name__}: {exc}", reason="corrupt image") from exc
    return img, (width, height)


def _phash_of(img: Image.Image) -> str:
    import imagehash

    return str(imagehash.phash(img))


def image_phash(data: bytes) -> str:
    """64-bit DCT perceptual hash (imagehash.phash) as 16 hex characters.

    Differs from calling imagehash on a plainly opened file in three ways: a JPEG is decoded
    in draft mode at 1/2-1/8 scale (never below 128x128), EXIF rotation is applied first,
    and alpha is dropped. Draft decoding moves a hash by a few bits (at most 4 on the test
    photos), well inside any match threshold, and keeps a 24-megapixel photo from being decoded at full size. PNGs
    and other formats hash exactly as imagehash does.
    """
    return _phash_of(decode_image(data, draft_size=PHASH_DRAFT_SIZE))


FAST_PHASH_DRAFT_SIZE = (64, 64)
_PHASH_SIDE = 32  # imagehash.phash's defaults: 32x32 grey image, 8x8 lowest DCT frequencies
_PHASH_LOW = 8


@functools.lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    import numpy as np

    # Unnormalised DCT-II basis, the first 8 frequencies only: the same transform as
    # scipy.fftpack.dct up to a constant factor, which cannot change a comparison with the median.
    k = np.arange(_PHASH_LOW, dtype=np.float64)[:, None]
    n = np.arange(_PHASH_SIDE, dtype=np.float64)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * _PHASH_SIDE))


def phash_from_gray(img: Image.Image) -> str:
    """imagehash.phash's algorithm on a grey image, as 16 hex characters.

    Resizes to 32x32 with Lanczos exactly as imagehash does, then takes only the 8x8 low
    frequencies of the 2-D DCT as two small matrix products instead of two full 32-point DCTs.
    """
    import numpy as np

    if img.mode != "L":
        img = img.convert("L")
    pixels = np.asarray(img.resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = _dct_rows()
    low = dct @ pixels @ dct.T
    bits = (low > np.median(low)).ravel()
    return np.packbits(bits).tobytes().hex()


def phash_fast(data: bytes) -> str:
    """imagehash's 64-bit DCT pHash of image bytes, computed ~3-4x faster; 16 hex chars.

    A JPEG is decoded from its luma channel only, at the smallest DCT scale (1/2-1/8) that
    keeps both sides at 64 px or more; nothing is converted to RGB. Against
    `str(imagehash.phash(Image.open(...)))` it differs bit-for-bit only through: the reduced
    luma decode (libjpeg's Y channel at 1/8 scale instead of Pillow's RGB->L of the full
    image), EXIF rotation applied first, alpha dropped, and float rounding when a coefficient
    sits at the median. Measured: identical on imagehash's own test image (PNG), at most 2
    bits (mean 0.1) on 40 generated 720p JPEGs (bench/hash_throughput.py). `image_phash`
    (RGB draft decode at >= 128 px) is within a few bits of both. Raises MediaDecodeError.

    A whole progressive JPEG of 512 px or more a side is decoded from its DC scans alone
    (detectors.jpeg_scans): the same pixels, from about a tenth of the bytes.
    """
    from detectors.jpeg_scans import dc_scans_only

    return phash_from_gray(_decode(dc_scans_only(data) or data, FAST_PHASH_DRAFT_SIZE, gray=True)[0])


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two equal-length hex hashes."""
    if len(a_hex) != len(b_hex):
        raise ValueError(f"hashes differ in length: {len(a_hex)} vs {len(b_hex)} hex chars")
    try:
        return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
    except ValueError:
        raise ValueError(f"not hex hashes: {a_hex!r}, {b_hex!r}") from None


# ---------------------------------------------------------------------------- videos


def video_frame_hashes(data: bytes, every_s: float = 0.5, max_frames: int = 32) -> list[str]:
    """pHashes of frames taken every `every_s` seconds, at most `max_frames`.

    For a video longer than every_s * max_frames the step widens to spread the frames over
    the whole duration, so two copies of a long video are compared end to end. Raises
    MediaDecodeError for bytes that are not a decodable video.
    """
    from detectors.video import frames_at, video_duration_s

    if every_s <= 0 or max_frames < 1:
        raise ValueError(f"need every_s > 0 and max_frames >= 1, got {every_s}, {max_frames}")
    duration = video_duration_s(data)
    step = max(every_s, duration / max_frames)
    offsets = [i * step for i in range(max_frames) if i * step <= duration]
    # Frames are shrunk by swscale first: pHash looks at 32x32 anyway.
    return [_phash_of(f.image) for f in frames_at(data, offsets, max_side=256)]


def video_match(
    frames_a: list[str] | tuple[str, ...],
    frames_b: list[str] | tuple[str, ...],
    max_distance: int = 10,
) -> tuple[bool, float]:
    """Whether two videos are copies, judged on their frame hashes.

    A frame "is in" the other video when some frame there is within `max_distance` bits.
    The share is taken both ways and both must reach 0.5, so a short clip does not match a
    long compilation that merely contains it. Returns (matched, the smaller share).
    """
    if not frames_a or not frames_b:
        return False, 0.0

    def share(xs: list[str] | tuple[str, ...], ys: list[str] | tuple[str, ...]) -> float:
        return sum(any(hamming(x, y) <= max_distance for y in ys) for x in xs) / len(xs)

    smaller = min(share(frames_a, frames_b), share(frames_b, frames_a))
    return smaller >= 0.5, smaller


# ---------------------------------------------------------------------------- probe


def probe_media(data: bytes, declared_mime: str | None) -> MediaInfo:
    """Identify, validate and hash media bytes; raises MediaDecodeError for unusable bytes.

    The kind and type come from the bytes. The declared type only shapes the error message:
    an HTML page declared as an image reports "not an image: sniffed text/html".
    """
    from detectors.video import probe_video

    declared = (declared_mime or "").split(";")[0].strip().lower()
    mime = sniff_mime(data) if data else None
    expected = "an image" if declared.startswith("image/") else (
        "a video" if declared.startswith("video/") else "media"
    )
    if not data:
        raise MediaDecodeError(f"not {expected}: empty file")
    if mime is None:
        raise MediaDecodeError(f"not {expected}: unrecognised bytes")
    if mime.startswith("video/"):
        meta = probe_video(data)
        hashes = video_frame_hashes(data)
        return MediaInfo(
            kind="video",
            mime=mime,
            width=meta.width,
            height=meta.height,
            duration_s=meta.duration_s,
            phash=None,
            frame_hashes=tuple(hashes),
        )
    if mime.startswith("image/") and mime != "image/svg+xml":
        img, (width, height) = _decode(data, PHASH_DRAFT_SIZE)
        return MediaInfo(
            kind="image",
            mime=mime,
            width=width,
            height=height,
            duration_s=None,
            phash=_phash_of(img),
        )
    raise MediaDecodeError(f"not {expected}: sniffed {mime}")
