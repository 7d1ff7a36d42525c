"""Content regions: a screenshot's chrome and a caption band are found and matched around."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from demo_platform import imagery
from detectors.hashing import phash_from_gray
from detectors.pdq import pdq_from_image
from detectors.regions import content_box, region_distance, region_hashes
from orchestrator.dedup import PerceptualIndex


def _photo(seed: int) -> Image.Image:
    pixels = imagery.render_photo(np.random.default_rng(seed), 640, 480, face=seed % 2 == 0).pixels
    return Image.open(io.BytesIO(imagery.jpeg_bytes(pixels, 90))).convert("RGB")


def _jpeg_round_trip(img: Image.Image, quality: int = 85) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _screenshot(img: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The picture on a phone-screenshot canvas: white margins, a dark status bar, a text line,
    action-bar icons. Returns the canvas and where the picture is."""
    w, h = img.size
    margin, top, bottom = 26, 60, 100
    canvas = Image.new("RGB", (w + 2 * margin, h + top + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, 22), fill=(30, 30, 30))
    draw.text((margin, 32), "@someone  ·  2h  <script>alert(1)</script>", fill=(40, 40, 40))
    canvas.paste(img, (margin, top))
    for i in range(4):
        x = margin + i * 140
        draw.ellipse((x, top + h + 20, x + 30, top + h + 50), outline=(90, 90, 90), width=2)
    return _jpeg_round_trip(canvas), (margin, top, margin + w, top + h)


def _caption_band(img: Image.Image) -> Image.Image:
    """An opaque dark band with white text painted over the bottom 18% of the picture."""
    out = img.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - int(h * 0.18), w, h), fill=(20, 20, 20))
    draw.text((30, h - int(h * 0.12)), "SHARE BEFORE THEY DELETE THIS", fill="white", font=imagery._font(36))
    return _jpeg_round_trip(out)


def _index_of(images: dict[str, Image.Image]) -> PerceptualIndex:
    index = PerceptualIndex(image_loader=images.get)
    for sha, img in images.items():
        pdq, quality = pdq_from_image(img)
        index.add_image(sha, phash_from_gray(img.convert("L")), pdq, quality, region=region_hashes(img))
    return index


def _match(index: PerceptualIndex, img: Image.Image):
    pdq, quality = pdq_from_image(img)
    return index.match_image(phash_from_gray(img.convert("L")), pdq, quality, region=region_hashes(img), image=img)


def test_screenshot_canvas_is_cut_away_to_the_picture():
    shot, (left, top, right, bottom) = _screenshot(_photo(3))
    box = content_box(shot)
    assert box is not None
    # The picture's own flat edges may be trimmed with the canvas; the canvas never stays in.
    assert box[0] >= left - 3 and box[2] <= right + 3
    assert box[1] >= top - 3 and box[3] <= bottom + 3
    assert (box[2] - box[0]) >= 0.5 * (right - left) and (box[3] - box[1]) >= 0.3 * (bottom - top)


def test_caption_band_is_left_out_of_the_region():
    captioned = _caption_band(_photo(5))
    box = content_box(captioned)
    assert box is not None and box[3] <= captioned.height * 0.84


def test_a_flat_image_is_not_cut_to_nothing():
    assert content_box(Image.new("RGB", (400, 300), (250, 250, 250))) is None


def test_screenshot_and_captioned_copies_match_their_original_and_strangers_do_not():
    originals = {f"{i:064x}": _photo(i) for i in range(1, 9)}
    index = _index_of(originals)
    found_shot = found_caption = 0
    for sha, img in originals.items():
        shot, _ = _screenshot(img)
        match = _match(index, shot)
        found_shot += match is not None and match.sha256 == sha
        match = _match(index, _caption_band(img))
        found_caption += match is not None and match.sha256 == sha
    assert found_shot >= 7 and found_caption >= 7  # bench/dedup.py measures the rates at scale
    for seed in range(100, 106):  # unrelated pictures, screenshotted and captioned
        stranger = _photo(seed)
        assert _match(index, _screenshot(stranger)[0]) is None
        assert _match(index, _caption_band(stranger)) is None


def test_region_verification_compares_the_same_part_of_both():
    img = _photo(7)
    captioned = _caption_band(img)
    box = content_box(captioned)
    assert region_distance(captioned, box, img) <= 31
    assert region_distance(captioned, box, _photo(8)) > 60


@pytest.mark.slow
def test_index_served_from_a_ray_actor_to_many_workers(tmp_path):
    ray = pytest.importorskip("ray")
    from orchestrator.wiring import index_actor

    originals = {f"{i:064x}": _photo(i) for i in range(1, 5)}
    rows = []
    for sha, img in originals.items():
        pdq, quality = pdq_from_image(img)
        rows.append((sha, phash_from_gray(img.convert("L")), pdq, quality))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        index = index_actor(image_max_distance=10)

        @ray.remote
        def add_then_query(row, probe_pdq):
            ray.get(index.add_image.remote(*row))
            found = ray.get(index.match_image.remote(None, probe_pdq, 90))
            return found.sha256 if found else None

        # Four workers add one image each and look up a resized copy of another's image:
        # every add is visible to every worker once it has returned.
        ray.get([index.add_image.remote(*rows[0])])
        probe = pdq_from_image(originals[rows[0][0]].resize((320, 240)))[0]
        results = ray.get([add_then_query.remote(row, probe) for row in rows[1:]])
        assert results == [rows[0][0]] * 3
        assert ray.get(index.size.remote()) == 4
    finally:
        ray.shutdown()
