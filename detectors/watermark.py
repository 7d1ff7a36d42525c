"""Invisible watermarks that open image generators embed with the `invisible-watermark` library.

Stable Diffusion's reference scripts, SDXL and others hide a fixed bit string in the
image with the library's 'dwtDct' method. Decoding gives back bits even when nothing is
there, so a decode is compared bit by bit with each known payload and accepted only when
so few bits differ that chance could not explain it. The library's own README says its
decoding is unreliable (resizing, re-compression and crops destroy the mark), so a failed
decode is "inconclusive", never evidence that the image is clean.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import comb
from typing import Any

import numpy as np

from detectors.base import Detection, MediaInput
from detectors.hashing import MediaDecodeError, decode_image
from detectors.watermark_payloads import KNOWN_WATERMARKS, WatermarkPayload

DETECTOR_VERSION = "1.0"
MIN_PIXELS = 256 * 256  # imwatermark refuses anything smaller
# One vectorised pass per channel order (~25 ms at 1280x720); the cap bounds memory, not time.
DEFAULT_MAX_PIXELS = 16_000_000
# imwatermark's 'dwtDct' defaults: only the U channel (scale 36) carries the mark, in 4x4 blocks
# of the Haar approximation band.
_DWTDCT_CHANNEL, _DWTDCT_SCALE, _DWTDCT_BLOCK = 1, 36, 4


def block_scores(bgr: np.ndarray) -> np.ndarray:
    """The 0/1 score of every 4x4 block, in the library's block order, for an image in the
    channel order the library assumes (BGR).

    This is `imwatermark.maxDct.EmbedMaxDct.decode_frame` without its Python loop over blocks:
    the same colour conversion and Haar transform (the same OpenCV and PyWavelets calls, so
    the same floating-point values), then per block the largest-magnitude coefficient after
    the first, scored as (|value| mod scale) > scale / 2. A block's score does not depend on
    the payload's length (only which bit it votes for does), so one pass serves every payload;
    tests/test_watermark.py checks the bits against the library's decoder.
    """
    import cv2
    import pywt

    rows, cols = bgr.shape[:2]
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    approx, _details = pywt.dwt2(yuv[: rows // 4 * 4, : cols // 4 * 4, _DWTDCT_CHANNEL], "haar")
    b = _DWTDCT_BLOCK
    brows, bcols = approx.shape[0] // b, approx.shape[1] // b
    blocks = approx[: brows * b, : bcols * b].reshape(brows, b, bcols, b).swapaxes(1, 2).reshape(-1, b * b)
    magnitudes = np.abs(blocks[:, 1:])
    peak = magnitudes[np.arange(len(magnitudes)), np.argmax(magnitudes, axis=1)]
    return (peak % _DWTDCT_SCALE > 0.5 * _DWTDCT_SCALE).astype(np.float64)


def bits_from_scores(scores: np.ndarray, length: int) -> np.ndarray:
    """Block i votes for bit i mod length; a bit is set when the mean vote is over 127/255
    (the library's rule)."""
    slots = np.arange(len(scores)) % length
    votes = np.bincount(slots, weights=scores, minlength=length)
    counts = np.bincount(slots, minlength=length)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (votes / counts) * 255 > 127


def allowed_bit_errors(length_bits: int, max_bit_errors: int, max_false_match: float) -> int:
    """Most differing bits accepted for a payload of this length.

    At most `max_bit_errors`, and fewer for short payloads: the chance that random bits
    land within k errors of the payload, sum(C(n, i) for i <= k) / 2^n, must stay at or
    below `max_false_match`. Returns -1 when even an exact match is too likely by chance.
    """
    total = 0
    k = -1
    for i in range(0, max_bit_errors + 1):
        total += comb(length_bits, i)
        if total / 2**length_bits > max_false_match:
            break
        k = i
    return k


class InvisibleWatermarkDetector:
    """Looks for the known generator payloads, in both channel orders."""

    name = "invisible-watermark"
    kinds = ("image",)

    def __init__(
        self,
        payloads: Mapping[str, WatermarkPayload] | Iterable[WatermarkPayload] = KNOWN_WATERMARKS,
        max_bit_errors: int = 4,
        *,
        max_false_match: float = 1e-9,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        import imwatermark

        if max_bit_errors < 0:
            raise ValueError(f"max_bit_errors must be >= 0, got {max_bit_errors}")
        items = list(payloads.values()) if isinstance(payloads, Mapping) else list(payloads)
        if not items:
            raise ValueError("no watermark payloads given")
        self.payloads = items
        self.max_bit_errors = max_bit_errors
        self.max_pixels = max_pixels
        self.allowed = {
            p.name: allowed_bit_errors(p.length_bits, max_bit_errors, max_false_match) for p in items
        }
        too_short = [p.name for p in items if self.allowed[p.name] < 0]
        if too_short:
            raise ValueError(f"payloads too short to tell from chance at {max_false_match}: {too_short}")
        self.version = f"{DETECTOR_VERSION}+invisible-watermark-{_library_version(imwatermark)}"

    def detect_one(self, item: MediaInput) -> Detection:
        if item.kind == "video":
            return self._result("inconclusive", ["invisible watermark check not applicable to video"])
        try:
            rgb = np.asarray(decode_image(item.data))
        except MediaDecodeError as exc:
            return self._result("error", [str(exc)])
        height, width = rgb.shape[:2]
        if height * width < MIN_PIXELS:
            return self._result(
                "inconclusive",
                [f"image is {width}x{height}, smaller than the 256x256 pixels the watermark decoder needs"],
            )
        if height * width > self.max_pixels:
            return self._result(
                "inconclusive",
                [f"image is {width}x{height}, over the {self.max_pixels:,} pixels decoded for watermarks"],
            )
        # The library treats its input as BGR. Stability's scripts flip RGB to BGR before
        # encoding, diffusers passes RGB as is: try both orders.
        try:
            return self._decode_all(rgb)
        except Exception as exc:  # the library's decoder failing on one image must not fail the batch
            return self._result("error", [f"watermark decoder failed: {type(exc).__name__}: {exc}"])

    def _decode_all(self, rgb: np.ndarray) -> Detection:
        orders = {"BGR": np.ascontiguousarray(rgb[:, :, ::-1]), "RGB": np.ascontiguousarray(rgb)}
        best: dict[str, dict[str, Any]] = {}
        for order, array in orders.items():
            scores = block_scores(array)
            for length in sorted({p.length_bits for p in self.payloads}):
                bits = bits_from_scores(scores, length)
                for payload in (p for p in self.payloads if p.length_bits == length):
                    errors = int(np.count_nonzero(bits != np.asarray(payload.bits, dtype=bool)))
                    if payload.name not in best or errors < best[payload.name]["bit_errors"]:
                        best[payload.name] = {
                            "payload": payload.name,
                            "channel_order": order,
                            "bit_errors": errors,
                            "bits": length,
                            "allowed_errors": self.allowed[payload.name],
                            "verified_upstream": payload.verified_upstream,
                        }
            if any(b["bit_errors"] <= b["allowed_errors"] for b in best.values()):
                break  # found in this order; the other would only cost time
        return self._judge(list(best.values()))

    def _judge(self, attempts: list[dict[str, Any]]) -> Detection:
        details = {"attempts": attempts}
        matches = [a for a in attempts if a["bit_errors"] <= a["allowed_errors"]]
        if matches:
            reasons = []
            for m in sorted(matches, key=lambda a: a["bit_errors"]):
                reason = (
                    f"invisible watermark of {m['payload']} decoded "
                    f"({m['bit_errors']}/{m['bits']} bits differ, {m['channel_order']} order)"
                )
                if not m["verified_upstream"]:
                    reason += "; this payload is quoted second-hand, not checked against the generator's source"
                reasons.append(reason)
            details["matched"] = [m["payload"] for m in matches]
            return self._result("fake", reasons, details)
        closest = min(attempts, key=lambda a: a["bit_errors"] / a["bits"])
        return self._result(
            "inconclusive",
            [
                "no known invisible watermark decoded (closest: "
                f"{closest['payload']}, {closest['bit_errors']}/{closest['bits']} bits differ); "
                "decoding is unreliable, so this does not show there is none"
            ],
            details,
        )

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        return [self.detect_one(item) for item in items]

    def _result(self, outcome: str, reasons: list[str], details: dict[str, Any] | None = None) -> Detection:
        return Detection(
            detector=self.name,
            version=self.version,
            outcome=outcome,  # type: ignore[arg-type]
            reasons=reasons,
            details=details or {},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "payloads": {p.name: {"bits": p.length_bits, "allowed_errors": self.allowed[p.name]} for p in self.payloads},
        }


def _library_version(module: Any) -> str:
    try:
        from importlib.metadata import version

        return version("invisible-watermark")
    except Exception:  # metadata missing in odd installs; the module is still usable
        return getattr(module, "__version__", "unknown")
