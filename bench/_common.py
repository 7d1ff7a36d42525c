"""Shared pieces of the benchmark scripts: the project's own test images, transforms, bit maths.

Images come from demo_platform.imagery (procedural camera-like scenes), so the benchmarks need
no downloaded data and give the same pixels on every run for the same seed.
"""
from __future__ import annotations

import io
import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `.venv/bin/python bench/X.py` from anywhere
    sys.path.insert(0, str(ROOT))

from demo_platform import imagery  # noqa: E402


def photo_jpegs(seed: int, n: int, width: int, height: int, quality: int = 90) -> list[bytes]:
    """`n` distinct camera-like scenes as JPEG bytes (half with a person in them)."""
    rng = np.random.default_rng(seed)
    return [
        imagery.jpeg_bytes(imagery.render_photo(rng, width, height, face=i % 2 == 0).pixels, quality)
        for i in range(n)
    ]


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _caption(img: Image.Image) -> Image.Image:
    # A meme-style caption: an opaque dark band over the bottom 18% with white text on it.
    out = img.copy()
    w, h = out.size
    band = int(h * 0.18)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - band, w, h), fill=(20, 20, 20))
    font = imagery._font(max(12, band // 2))
    draw.text((w * 0.05, h - band * 0.8), "SHARE BEFORE THEY DELETE THIS", fill="white", font=font)
    return out


def _screenshot(img: Image.Image) -> Image.Image:
    # A phone screenshot of a post: white margins, a dark status bar on top, an action bar
    # with buttons under the picture, and a grey line of "comment" text.
    w, h = img.size
    margin, top, bottom = int(w * 0.04), int(h * 0.12), int(h * 0.2)
    canvas = Image.new("RGB", (w + 2 * margin, h + top + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, int(top * 0.4)), fill=(30, 30, 30))
    draw.text((margin, int(top * 0.55)), "@news_now  ·  2h", fill=(40, 40, 40), font=imagery._font(max(10, top // 4)))
    canvas.paste(img, (margin, top))
    y = top + h + int(bottom * 0.15)
    for i in range(4):
        x = margin + i * int(w * 0.22)
        draw.ellipse((x, y, x + bottom // 3, y + bottom // 3), outline=(90, 90, 90), width=2)
    draw.rectangle((margin, y + bottom // 2, margin + int(w * 0.7), y + bottom // 2 + 8), fill=(200, 200, 200))
    return canvas


def _crop10(img: Image.Image) -> Image.Image:
    # 10% of each side's length removed, 5% at each edge (the picture keeps 81% of its area).
    w, h = img.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    return img.crop((dx, dy, w - dx, h - dy))


# name -> JPEG bytes of the transformed image. "Common platform transforms" are the ones a
# re-upload goes through without anyone meaning to change the picture.
TRANSFORMS = {
    "resize_50": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "jpeg_q40": lambda im: _jpeg(im, 40),
    "crop_10": lambda im: _jpeg(_crop10(im)),
    "flip_h": lambda im: _jpeg(ImageOps.mirror(im)),
    "caption": lambda im: _jpeg(_caption(im)),
    "brightness_30": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.3)),
    "screenshot_pad": lambda im: _jpeg(_screenshot(im)),
}
COMMON_TRANSFORMS = ("resize_50", "jpeg_q40", "caption", "screenshot_pad")


def transform(name: str, data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return TRANSFORMS[name](im.convert("RGB"))


def bit_matrix(hexes: list[str]) -> np.ndarray:
    """Rows of 0/1 int32 bits, one row per equal-length hex hash."""
    width = len(hexes[0]) // 2
    raw = np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(len(hexes), width)
    return np.unpackbits(raw, axis=1).astype(np.int32)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances between the bit rows of a and of b."""
    return a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * (a @ b.T)


def environment() -> dict[str, str]:
    import PIL

    return {"python": platform.python_version(), "pillow": PIL.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "cpus": str(__import__("os").cpu_count())}


def emit(result: dict) -> None:
    """Print the figures as ONE JSON object on the last line (what scripts parse)."""
    print(json.dumps(result, sort_keys=True))
