"""Where the picture is inside a re-upload: borders, screenshot chrome and caption bands.

Whole-image hashes (pHash, PDQ) describe the whole frame, so two common re-uploads defeat them:
* a screenshot of a post puts the picture on a canvas of flat, unsaturated UI colours (white or
  dark margins, a status bar, a line of text, an action bar); the hash then describes the canvas;
* a caption band paints an opaque strip with text over one edge of the picture; the hash then
  describes a picture a sixth of which is gone.

`content_box` finds the picture by walking in from each edge over rows (columns) that are flat
and unsaturated, allowing short runs of busier rows (the text on a band, the icons of an action
bar). The same rule runs on every image, indexed or queried, so an original with, say, a grey
sky at its top loses that sky in both its own region hash and its screenshot's: the two regions
agree. Hashing that region handles padding; for a band painted over the picture, the region of
the query no longer covers the original's frame, so `region_distance` compares the same relative
region of both images instead (a verification step, run only on candidates found another way).

Thresholds were set on the project's own generated photos (bench/dedup.py); real UI chrome is
flatter than those photos' skies, so they err towards trimming less.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

_GRID_WIDTH = 256  # the image is judged on a box-filtered copy this wide: fast, and JPEG noise averages out
_COLOUR_TOLERANCE = 12  # a pixel within this (per channel, 0-255) of its row's median counts as "that colour"
_FLAT_SHARE = 0.55  # a row is flat when this share of its pixels is its median colour (text on a band is less)
_MAX_SATURATION = 24  # max - min channel of the row's colour: UI chrome is white, black or grey
_GAP_SHARE = 0.06  # busy rows (text, icons) tolerated inside a band, as a share of the image height
_MIN_TRIM_SHARE = 0.02  # less than this trimmed on every side: no region of its own
_MIN_KEEP_SHARE = 0.3  # a "region" smaller than this share of a side is a misjudged flat picture

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels, PIL crop order


def content_box(img: Image.Image) -> Box | None:
    """The picture's box inside `img`, or None when no border, band or chrome was found."""
    grid_h = max(8, round(_GRID_WIDTH * img.height / max(1, img.width)))
    pixels = np.asarray(img.convert("RGB").resize((_GRID_WIDTH, grid_h), Image.Resampling.BOX), dtype=np.int16)
    columns = pixels.transpose(1, 0, 2)
    top, bottom = _band(pixels, grid_h), _band(pixels[::-1], grid_h)
    left, right = _band(columns, _GRID_WIDTH), _band(columns[::-1], _GRID_WIDTH)
    kept_h, kept_w = grid_h - top - bottom, _GRID_WIDTH - left - right
    if kept_h < _MIN_KEEP_SHARE * grid_h or kept_w < _MIN_KEEP_SHARE * _GRID_WIDTH:
        return None
    if max(top, bottom) < _MIN_TRIM_SHARE * grid_h and max(left, right) < _MIN_TRIM_SHARE * _GRID_WIDTH:
        return None
    sy, sx = img.height / grid_h, img.width / _GRID_WIDTH
    return (round(left * sx), round(top * sy), img.width - round(right * sx), img.height - round(bottom * sy))


def _band(rows: np.ndarray, length: int) -> int:
    """How many rows, from the first, belong to a border band (flat UI colours, short busy runs).

    Rows are judged a chunk at a time from the edge: the walk usually ends within a few rows
    (most pictures have no border), so the medians of the whole image are never needed."""
    gap = int(length * _GAP_SHARE)
    chunk = max(8, gap + 1)
    end, busy = 0, 0
    for start in range(0, len(rows), chunk):
        for i, is_chrome in enumerate(_chrome_rows(rows[start:start + chunk]), start):
            if is_chrome:
                end, busy = i + 1, 0
            else:
                busy += 1
                if busy > gap:
                    return end
    return end


def _chrome_rows(rows: np.ndarray) -> np.ndarray:
    """Which rows look like UI chrome: mostly one colour, and that colour white, black or grey."""
    median = np.median(rows, axis=1)
    flat = (np.abs(rows - median[:, None, :]).max(axis=2) <= _COLOUR_TOLERANCE).mean(axis=1) >= _FLAT_SHARE
    return flat & (median.max(axis=1) - median.min(axis=1) <= _MAX_SATURATION)


def relative_box(box: Box, size: tuple[int, int]) -> tuple[float, float, float, float]:
    width, height = size
    return box[0] / width, box[1] / height, box[2] / width, box[3] / height


@dataclass(frozen=True)
class RegionHashes:
    """The content region of an image and its hashes (what dedup indexes beside the whole frame)."""

    box: Box
    phash: str
    pdq: str
    pdq_quality: int

    def to_json(self) -> dict:
        return {"box": list(self.box), "phash": self.phash, "pdq": self.pdq, "pdq_quality": self.pdq_quality}

    @classmethod
    def from_json(cls, value: dict | None) -> "RegionHashes | None":
        if not value:
            return None
        return cls(tuple(value["box"]), value["phash"], value["pdq"], int(value["pdq_quality"]))  # type: ignore[arg-type]


def region_hashes(img: Image.Image) -> RegionHashes | None:
    """Hashes of `img`'s content region, or None when the whole frame is the picture."""
    from detectors.hashing import phash_from_gray
    from detectors.pdq import pdq_from_image

    box = content_box(img)
    if box is None:
        return None
    region = img.convert("RGB").crop(box)
    pdq, quality = pdq_from_image(region)
    return RegionHashes(box, phash_from_gray(region.convert("L")), pdq, int(quality))


def region_distance(query: Image.Image, box: Box, candidate: Image.Image) -> int:
    """PDQ distance between `query`'s `box` and the same relative region of `candidate`.

    For a band painted over a picture: the query's box leaves the band out, and the candidate
    (the original, same frame) is cut the same way, so the two regions show the same pixels."""
    from detectors.pdq import pdq_distance, pdq_from_image

    rel = relative_box(box, query.size)
    w, h = candidate.size
    cut = (round(rel[0] * w), round(rel[1] * h), round(rel[2] * w), round(rel[3] * h))
    return pdq_distance(pdq_from_image(query.crop(box))[0], pdq_from_image(candidate.crop(cut))[0])
