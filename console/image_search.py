"""Search-by-image cost limits (issue 16, finding 3): one 143 KB PNG of 7000x7000 used to cost 8 s
and +900 MB (two full decodes, then full-size numpy arrays for PDQ).

    hash_upload(data) -> (phash, pdq, quality)   one decode, at the size hashing needs
    SearchLimits(...).slot(user)                 a context manager: concurrency cap + per-user rate

A JPEG is decoded by its DCT at 1/2..1/8 scale (PIL draft); other formats are decoded once and
reduced (box filter, PIL reduce) to about 512 px before anything is converted or hashed. pHash works
on 32x32 and PDQ downsamples to 64x64 itself, so hashes stay within a few bits of the full-size
ones. The pixel cap refuses bombs by their header, before decoding.
"""
from __future__ import annotations

import io
import threading
import time
import warnings
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from PIL import Image, ImageOps

from detectors.hashing import MAX_PIXELS, MediaDecodeError, phash_from_gray, sniff_mime
from detectors.media_limits import check_animation
from detectors.pdq import pdq_from_image

HASH_SIDE = 512  # PDQ's working size is 64; 512 keeps its quality metric meaningful
MAX_CONCURRENT = 2  # image searches decoding at once, per console process
RATE_PER_MINUTE = 20  # image searches per user per minute
BUSY_WAIT_S = 5.0  # how long a search waits for a free slot before 503


class SearchRefused(Exception):
    """A search not run now: `status` is 429 (this user's rate) or 503 (all slots busy)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _reduced(img: Image.Image) -> Image.Image:
    factor = max(1, min(img.size) // HASH_SIDE)
    if factor > 1:
        if img.mode not in ("L", "RGB", "RGBA", "LA", "I", "F"):
            img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("P", "PA") else "RGB")
        img = img.reduce(factor)
    return img


def hash_upload(data: bytes) -> tuple[str, str, int]:
    """(pHash hex, PDQ hex, PDQ quality) of an uploaded image; MediaDecodeError naming the problem."""
    mime = sniff_mime(data) if data else None
    if not mime or not mime.startswith("image/") or mime == "image/svg+xml":
        raise MediaDecodeError(f"not an image: {'sniffed ' + mime if mime else 'unrecognised bytes'}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            check_animation(data, mime)  # frames x canvas, from the bytes alone
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise MediaDecodeError(f"image too large: {width}x{height} pixels is over the {MAX_PIXELS:,} pixel limit")
            if img.format == "JPEG":
                img.draft("RGB", (HASH_SIDE, HASH_SIDE))  # decode at 1/2..1/8 scale, never below 512
            img.load()  # the first frame only, for animated images
            img = _reduced(img)
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":
                img = img.convert("RGBA")
            if img.mode != "RGB":
                img = img.convert("RGB")
    except MediaDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaDecodeError(f"image too large: decompression bomb ({exc})") from None
    except Exception as exc:  # malformed files trip odd errors inside decoders
        raise MediaDecodeError(f"corrupt image: {type(exc).__name__}: {str(exc)[:200]}") from None
    pdq, quality = pdq_from_image(img)
    return phash_from_gray(img.convert("L")), pdq, quality


class SearchLimits:
    """A cap on concurrent searches (decoding is the memory cost) and a sliding-window rate per user.
    Per console process: several processes each allow MAX_CONCURRENT."""

    def __init__(self, concurrent: int = MAX_CONCURRENT, per_minute: int = RATE_PER_MINUTE,
                 busy_wait_s: float = BUSY_WAIT_S):
        self._slots = threading.BoundedSemaphore(concurrent)
        self._per_minute, self._busy_wait_s = per_minute, busy_wait_s
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _count(self, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(user, deque())
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= self._per_minute:
                wait = int(recent[0] + 60 - now) + 1
                raise SearchRefused(429, f"too many image searches: at most {self._per_minute} a minute; "
                                         f"try again in {wait} s")
            recent.append(now)

    @contextmanager
    def slot(self, user: str) -> Iterator[None]:
        self._count(user)
        if not self._slots.acquire(timeout=self._busy_wait_s):
            raise SearchRefused(503, "the server is busy with other image searches; try again in a moment")
        try:
            yield
        finally:
            self._slots.release()
