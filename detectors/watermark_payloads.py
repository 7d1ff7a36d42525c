"""Payloads that public image generators embed with the `invisible-watermark` library.

Transcribed facts (see tests/test_watermark_payloads.py, which checks them against the
third-party fixture file). Kept in code so the product works without the fixtures folder.
All use the library's 'dwtDct' method.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WatermarkPayload:
    name: str
    payload_type: str  # "bytes" or "bits", as imwatermark's WatermarkEncoder.set_watermark takes
    bits: tuple[int, ...]  # the payload as bits, most significant first
    verified_upstream: bool = True

    @property
    def length_bits(self) -> int:
        return len(self.bits)


def _bits_of_bytes(data: bytes) -> tuple[int, ...]:
    return tuple((byte >> (7 - i)) & 1 for byte in data for i in range(8))


def _bits_of_string(bits: str) -> tuple[int, ...]:
    return tuple(int(c) for c in bits)


KNOWN_WATERMARKS: dict[str, WatermarkPayload] = {
    p.name: p
    for p in (
        WatermarkPayload("stable_diffusion_v1", "bytes", _bits_of_bytes(b"StableDiffusionV1")),
        WatermarkPayload("stable_diffusion_v2", "bytes", _bits_of_bytes(b"SDV2")),
        WatermarkPayload(
            "sdxl", "bits", _bits_of_string("101100111110110010010000011110111011000110011110")
        ),
        # Quoted second-hand from a survey of watermarking schemes; not checked against the
        # black-forest-labs source, so a match is reported with that caveat.
        WatermarkPayload(
            "flux2",
            "bits",
            _bits_of_string("001010101111111010000111100111001111010100101110"),
            verified_upstream=False,
        ),
    )
}
