"""PDQ, Meta's 256-bit perceptual image hash, through the `pdqhash` bindings of the reference C++.

PDQ is the hash the industry's hash-sharing programmes exchange (ThreatExchange, StopNCII...),
so a PDQ of a deepfake we found can be matched against other organisations' lists. Each hash
comes with a quality score 0-100: flat or tiny images give low quality and their hashes match
too easily, so matching ignores hashes under the cut-off (50 upstream).

JPEGs are decoded in draft mode (DCT scaling) to no less than 512 px on either side. The
reference tools shrink images to 512 px before hashing anyway, for the same reason: PDQ looks
at a 64x64 down-sample, so the extra pixels cost time and change nothing that matters. On the
upstream fixtures the draft decode lands within a few bits of the full decode
(tests/test_pdq.py checks it stays within the upstream tolerance).

Mirror images: plain PDQ (like pHash) puts a horizontally flipped copy ~128 bits away. We
store the plain hash and, where flips matter, query with all 8 rotations/mirrors of the query
(`pdq_dihedral_from_bytes`, one DCT for all eight). bench/dedup.py measures it: flipped
copies found as often as plain re-uploads, and still no false match at 31 bits (the nearest
unrelated image stays ~80 bits away), for 8x the comparisons.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from detectors.hashing import MediaDecodeError, _decode

if TYPE_CHECKING:
    from PIL import Image

PDQ_DRAFT_SIZE = (512, 512)
PDQ_HEX_CHARS = 64  # 256 bits
PDQ_MATCH_DISTANCE = 31  # upstream's recommended match threshold
PDQ_QUALITY_CUTOFF = 50  # upstream: hashes of lower quality are not used for matching


def _rgb_array(img: "Image.Image"):
    import numpy as np

    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _hex(bits) -> str:
    import numpy as np

    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def pdq_from_image(img: "Image.Image") -> tuple[str, int]:
    """PDQ of a decoded image: (64 hex chars, quality 0-100)."""
    import pdqhash

    bits, quality = pdqhash.compute(_rgb_array(img))
    return _hex(bits), int(quality)


def pdq_dihedral_from_image(img: "Image.Image") -> list[str]:
    """The PDQ hashes of the image's 8 rotations and mirror images, from one DCT.

    Order as pdqhash gives it: original, rotate 90, 180, 270, flip x, flip y, transpose,
    transverse. Matching a query against all eight finds flipped or rotated re-uploads.
    """
    import pdqhash

    variants, _quality = pdqhash.compute_dihedral(_rgb_array(img))
    return [_hex(bits) for bits in variants]


def decode_for_pdq(data: bytes, *, draft: bool = True) -> "Image.Image":
    """RGB image for hashing; JPEGs at reduced DCT scale unless `draft` is False.

    Raises MediaDecodeError naming the problem for bytes that are not a decodable image.
    """
    return _decode(data, PDQ_DRAFT_SIZE if draft else None)[0]


def pdq_from_bytes(data: bytes, *, draft: bool = True) -> tuple[str, int]:
    """PDQ of image bytes: (64 hex chars, quality 0-100). Raises MediaDecodeError."""
    return pdq_from_image(decode_for_pdq(data, draft=draft))


def pdq_dihedral_from_bytes(data: bytes, *, draft: bool = True) -> tuple[list[str], int]:
    """The 8 dihedral PDQ hashes of image bytes (see pdq_dihedral_from_image) and the quality."""
    import pdqhash

    variants, quality = pdqhash.compute_dihedral(_rgb_array(decode_for_pdq(data, draft=draft)))
    return [_hex(bits) for bits in variants], int(quality)


def pdq_distance(a_hex: str, b_hex: str) -> int:
    """Hamming distance between two PDQ hashes; ValueError for anything not 64 hex chars."""
    for h in (a_hex, b_hex):
        if len(h) != PDQ_HEX_CHARS:
            raise ValueError(f"not a PDQ hash (need {PDQ_HEX_CHARS} hex chars, got {len(h)}): {h!r}")
    try:
        return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
    except ValueError:
        raise ValueError(f"not hex hashes: {a_hex!r}, {b_hex!r}") from None


__all__ = [
    "MediaDecodeError",
    "PDQ_DRAFT_SIZE",
    "PDQ_MATCH_DISTANCE",
    "PDQ_QUALITY_CUTOFF",
    "decode_for_pdq",
    "pdq_dihedral_from_bytes",
    "pdq_dihedral_from_image",
    "pdq_distance",
    "pdq_from_bytes",
    "pdq_from_image",
]
