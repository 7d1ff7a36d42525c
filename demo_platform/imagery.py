"""Procedural "photos" for the demo world, and the face-swap manipulation the demo detector learns.

Everything here is a pure function of a `numpy.random.Generator`, so one seed gives the same
pixels on every run. Scenes are built from large random structures (horizon, hills, buildings,
sun, banners, a person) so that perceptual hashes of unrelated scenes land far apart, and
"camera" scenes get lens blur, vignetting and sensor noise the way phone photos do.

The manipulation (`swap_face`) imitates a cheap face swap: a different face rendered at low
resolution is upscaled, colour-shifted, pasted with a foreign background rim around the head and
a visible blending seam, and it carries none of the camera's noise. Those artefacts survive
resizing and JPEG re-encoding well enough for a small classifier working at ~128 px to learn them,
while no provenance check (C2PA, watermark) can see them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in pixels

BANNER_TEXTS = (
    "VOTE 2026", "ELECTION DAY", "KIM MIN-JUN", "LEE SEO-YEON", "No.1", "No.2",
    "DEBATE LIVE", "JUNE 3", "RALLY", "YOUR VOTE", "CHANGE NOW", "TOWN HALL",
)

# Skin tones (RGB 0..1) for the face-like figures; the swap draws from the same list so the
# classifier cannot cheat by learning a hue.
SKIN_TONES = (
    (0.96, 0.80, 0.69), (0.92, 0.74, 0.60), (0.85, 0.65, 0.50), (0.76, 0.57, 0.42),
    (0.62, 0.44, 0.31), (0.47, 0.33, 0.24), (0.98, 0.86, 0.76), (0.88, 0.70, 0.58),
)
HAIR_COLOURS = ((0.08, 0.06, 0.05), (0.20, 0.13, 0.08), (0.35, 0.24, 0.14), (0.55, 0.45, 0.30),
                (0.12, 0.12, 0.14), (0.60, 0.58, 0.56))


@dataclass(frozen=True)
class Scene:
    pixels: np.ndarray  # HxWx3 uint8, RGB
    face_box: Box | None  # bounding box of the head, when the scene has a person


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: the same glyphs on every machine, so text renders deterministically.
    return ImageFont.load_default(size)


def _rand_colour(rng: np.random.Generator, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, size=3)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _rgb255(c: np.ndarray | tuple[float, ...]) -> tuple[int, int, int]:
    return tuple(int(np.clip(v, 0, 1) * 255 + 0.5) for v in c)  # type: ignore[return-value]


def _backdrop(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Sky and ground: two vertical gradients split by a tilted, wavy horizon."""
    mood = rng.choice(["day", "dusk", "night", "overcast", "indoor", "snow"])
    if mood == "day":
        sky_top, sky_bot = np.array([0.25, 0.45, 0.85]), np.array([0.70, 0.82, 0.95])
        ground_top, ground_bot = np.array([0.35, 0.55, 0.25]), np.array([0.18, 0.30, 0.12])
    elif mood == "dusk":
        sky_top, sky_bot = np.array([0.20, 0.15, 0.40]), np.array([0.95, 0.55, 0.30])
        ground_top, ground_bot = np.array([0.30, 0.22, 0.20]), np.array([0.10, 0.08, 0.08])
    elif mood == "night":
        sky_top, sky_bot = np.array([0.02, 0.03, 0.10]), np.array([0.10, 0.12, 0.25])
        ground_top, ground_bot = np.array([0.25, 0.25, 0.28]), np.array([0.45, 0.42, 0.40])
    elif mood == "overcast":
        sky_top, sky_bot = np.array([0.55, 0.57, 0.60]), np.array([0.80, 0.80, 0.82])
        ground_top, ground_bot = np.array([0.40, 0.38, 0.35]), np.array([0.22, 0.21, 0.20])
    elif mood == "indoor":
        sky_top, sky_bot = np.array([0.85, 0.80, 0.70]), np.array([0.60, 0.55, 0.48])
        ground_top, ground_bot = np.array([0.45, 0.30, 0.20]), np.array([0.30, 0.20, 0.12])
    else:  # snow: bright ground, darker sky inverts the usual luminance layout
        sky_top, sky_bot = np.array([0.30, 0.35, 0.45]), np.array([0.55, 0.60, 0.70])
        ground_top, ground_bot = np.array([0.97, 0.97, 0.99]), np.array([0.80, 0.82, 0.88])
    # Jitter the palette so no two scenes share exact colours.
    jitter = rng.normal(0, 0.06, size=(4, 3))
    sky_top, sky_bot, ground_top, ground_bot = (
        np.clip(c + j, 0, 1).astype(np.float32)
        for c, j in zip((sky_top, sky_bot, ground_top, ground_bot), jitter)
    )
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    horizon = np.float32(rng.uniform(0.2, 0.8))
    tilt = np.float32(rng.uniform(-0.25, 0.25))
    waves = np.float32(rng.uniform(0.0, 0.08)) * np.sin(
        xs * np.float32(rng.uniform(2, 9)) + np.float32(rng.uniform(0, 6.3)))
    line = horizon + tilt * (xs - 0.5) + waves  # 1 x w
    # Gradients run over the rows only (cheap: h x 1 x 3); the wavy horizon picks sky or ground.
    t_sky = np.clip(ys / horizon, 0, 1)[..., None]
    t_ground = np.clip((ys - horizon) / (1 - horizon), 0, 1)[..., None]
    sky = sky_top * (1 - t_sky) + sky_bot * t_sky
    ground = ground_top * (1 - t_ground) + ground_bot * t_ground
    img = np.where((ys < line)[..., None], sky, ground).astype(np.float32)
    # A strong left/right light falloff decorrelates the pHash bits between scenes further.
    side = np.float32(rng.uniform(-0.35, 0.35))
    img *= (1.0 + side * (xs - 0.5))[..., None]
    return img


def _draw_shapes(rng: np.random.Generator, canvas: Image.Image) -> None:
    """Big structures (buildings, hills, a sun, trees, posters) that dominate low frequencies."""
    w, h = canvas.size
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.choice(["building", "hill", "sun", "tree", "block"])
        colour = _rgb255(_rand_colour(rng, 0.05, 0.95))
        if kind == "building":
            bw = int(rng.uniform(0.08, 0.3) * w)
            bh = int(rng.uniform(0.2, 0.7) * h)
            x0 = int(rng.uniform(-0.1, 1.0) * w)
            y1 = int(rng.uniform(0.55, 1.05) * h)
            draw.rectangle([x0, y1 - bh, x0 + bw, y1], fill=colour)
            # Windows: a grid of lighter or darker cells.
            win = _rgb255(_rand_colour(rng, 0.1, 1.0))
            step = max(6, bw // 5)
            for wx in range(x0 + step // 2, x0 + bw - step // 2, step):
                for wy in range(y1 - bh + step // 2, y1 - step // 2, step):
                    draw.rectangle([wx, wy, wx + step // 3, wy + step // 3], fill=win)
        elif kind == "hill":
            cx, cy = rng.uniform(0, 1) * w, rng.uniform(0.6, 1.2) * h
            rx, ry = rng.uniform(0.2, 0.6) * w, rng.uniform(0.15, 0.45) * h
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        elif kind == "sun":
            r = rng.uniform(0.04, 0.12) * min(w, h)
            cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.4) * h
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_rgb255(_rand_colour(rng, 0.7, 1.0)))
        elif kind == "tree":
            tx, ty = rng.uniform(0, 1) * w, rng.uniform(0.5, 0.95) * h
            th = rng.uniform(0.15, 0.4) * h
            draw.rectangle([tx - th * 0.05, ty - th * 0.5, tx + th * 0.05, ty], fill=(70, 50, 30))
            draw.ellipse([tx - th * 0.3, ty - th * 1.1, tx + th * 0.3, ty - th * 0.4],
                         fill=_rgb255(np.array([0.1, 0.35, 0.1]) + rng.uniform(-0.08, 0.15, 3)))
        else:
            x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(-0.1, 0.9) * h
            draw.rectangle([x0, y0, x0 + rng.uniform(0.1, 0.45) * w, y0 + rng.uniform(0.1, 0.45) * h],
                           fill=colour)


def _draw_banner(rng: np.random.Generator, canvas: Image.Image) -> None:
    w, h = canvas.size
    draw = ImageDraw.Draw(canvas)
    text = str(rng.choice(BANNER_TEXTS))
    size = int(rng.uniform(0.07, 0.13) * h)
    font = _font(size)
    x0 = int(rng.uniform(0.02, 0.5) * w)
    y0 = int(rng.uniform(0.02, 0.75) * h)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = size // 3
    bg = _rand_colour(rng, 0.0, 1.0)
    fg = 1.0 - bg if rng.random() < 0.7 else _rand_colour(rng)
    draw.rectangle([x0, y0, x0 + right - left + 2 * pad, y0 + bottom - top + 2 * pad], fill=_rgb255(bg))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=_rgb255(fg))


def draw_face(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    """A cartoon-ish head: skin ellipse, hair, eyes, brows, nose and mouth inside `box`."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    skin = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]) + rng.normal(0, 0.03, 3)
    hair = np.array(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))])
    # Hair behind the head, then the face over it.
    draw.ellipse([x0 - fw * 0.06, y0 - fh * 0.06, x1 + fw * 0.06, y0 + fh * rng.uniform(0.5, 0.8)],
                 fill=_rgb255(hair))
    draw.ellipse([x0, y0 + fh * 0.08, x1, y1], fill=_rgb255(skin))
    # Fringe.
    draw.chord([x0, y0, x1, y0 + fh * rng.uniform(0.35, 0.55)], 180, 360, fill=_rgb255(hair))
    ey = y0 + fh * rng.uniform(0.42, 0.5)
    eye_dx = fw * rng.uniform(0.17, 0.23)
    er = fw * rng.uniform(0.06, 0.09)
    cx = (x0 + x1) / 2 + fw * rng.uniform(-0.04, 0.04)
    iris = _rgb255(np.array([0.15, 0.1, 0.05]) + rng.uniform(0, 0.25, 3))
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        draw.ellipse([ex - er * 1.4, ey - er * 0.8, ex + er * 1.4, ey + er * 0.8], fill=(245, 245, 240))
        draw.ellipse([ex - er * 0.6, ey - er * 0.6, ex + er * 0.6, ey + er * 0.6], fill=iris)
        draw.line([ex - er * 1.5, ey - er * 2.0, ex + er * 1.5, ey - er * 2.3],
                  fill=_rgb255(hair * 0.8), width=max(1, int(fh * 0.02)))
    # Nose shadow and mouth.
    ny = ey + fh * 0.17
    draw.line([cx, ey + fh * 0.05, cx - fw * 0.04, ny, cx + fw * 0.02, ny],
              fill=_rgb255(skin * 0.75), width=max(1, int(fw * 0.02)))
    my = ny + fh * rng.uniform(0.1, 0.14)
    mw = fw * rng.uniform(0.13, 0.22)
    lips = _rgb255(np.array([0.65, 0.25, 0.25]) + rng.normal(0, 0.05, 3))
    draw.chord([cx - mw, my - fh * 0.04, cx + mw, my + fh * 0.05], 0, 180, fill=lips)


def _draw_person(rng: np.random.Generator, canvas: Image.Image) -> Box:
    """Shoulders and a head; returns the head's bounding box."""
    w, h = canvas.size
    fh = int(rng.uniform(0.3, 0.48) * h)
    fw = int(fh * rng.uniform(0.72, 0.85))
    cx = int(rng.uniform(0.25, 0.75) * w)
    y0 = int(rng.uniform(0.08, 0.3) * h)
    box = (cx - fw // 2, y0, cx - fw // 2 + fw, y0 + fh)
    draw = ImageDraw.Draw(canvas)
    cloth = _rgb255(_rand_colour(rng, 0.05, 0.9))
    draw.ellipse([cx - fw * 1.2, y0 + fh * 0.95, cx + fw * 1.2, y0 + fh * 2.6], fill=cloth)
    draw.rectangle([cx - fw * 0.18, y0 + fh * 0.8, cx + fw * 0.18, y0 + fh * 1.05],
                   fill=_rgb255(np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]) * 0.85))
    draw_face(draw, box, rng)
    return box


def _shade_head(img: np.ndarray, box: Box, rng: np.random.Generator, strength: float) -> None:
    """Directional light across the head (inside its ellipse only, so no box edge shows)."""
    x0, y0, x1, y1 = box
    h, w = img.shape[:2]
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if bx1 <= bx0 or by1 <= by0:
        return
    xs = (np.arange(bx0, bx1, dtype=np.float32)[None, :] - cx) / rx
    ys = (np.arange(by0, by1, dtype=np.float32)[:, None] - cy) / ry
    inside = np.clip((1.0 - np.sqrt(xs**2 + ys**2)) / 0.15, 0, 1)
    light = 1.0 + strength * xs * rng.choice([-1.0, 1.0]) * inside
    img[by0:by1, bx0:bx1] *= light[..., None]


def render_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    face: bool,
    banner: bool | None = None,
) -> tuple[np.ndarray, Box | None]:
    """The clean scene as float32 HxWx3 in [0, 1], before any camera effects."""
    base = _backdrop(rng, width, height)
    canvas = Image.fromarray(_to_u8(base))
    _draw_shapes(rng, canvas)
    if banner if banner is not None else rng.random() < 0.45:
        _draw_banner(rng, canvas)
    box = _draw_person(rng, canvas) if face else None
    img = np.asarray(canvas, dtype=np.float32) / 255.0
    if box is not None:
        img = img.copy()
        _shade_head(img, box, rng, strength=rng.uniform(0.05, 0.15))
    return img, box


def camera(img: np.ndarray, rng: np.random.Generator, *, noise: float | None = None) -> np.ndarray:
    """Lens softness, vignetting and sensor noise; returns uint8 RGB."""
    h, w = img.shape[:2]
    pil = Image.fromarray(_to_u8(img)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    out = np.asarray(pil, dtype=np.float32) / 255.0
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    out = out * (1.0 - np.float32(rng.uniform(0.05, 0.25)) * (xs**2 + ys**2) / 2)[..., None]
    sigma = np.float32(rng.uniform(0.012, 0.03) if noise is None else noise)
    # Shot noise grows with brightness; a little chroma noise on top, as a phone sensor gives.
    lum = out.mean(axis=2, keepdims=True)
    grain = rng.standard_normal((h, w, 1), dtype=np.float32) * sigma * (0.5 + lum)
    chroma = rng.standard_normal((h, w, 3), dtype=np.float32) * (sigma * np.float32(0.35))
    return _to_u8(out + grain + chroma)


def render_photo(rng: np.random.Generator, width: int, height: int, *, face: bool) -> Scene:
    """A camera-like photo: scene plus blur, vignetting and sensor noise."""
    img, box = render_scene(rng, width, height, face=face)
    return Scene(camera(img, rng), box)


def render_generated(rng: np.random.Generator, width: int, height: int) -> Scene:
    """What an image generator outputs here: clean, saturated, noiseless pixels."""
    img, box = render_scene(rng, width, height, face=rng.random() < 0.5)
    mean = img.mean(axis=2, keepdims=True)
    img = np.clip(mean + (img - mean) * rng.uniform(1.2, 1.5), 0, 1)
    pil = Image.fromarray(_to_u8(img)).filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.4)))
    return Scene(np.asarray(pil), box)


def swap_face(rng: np.random.Generator, pixels: np.ndarray, box: Box) -> np.ndarray:
    """Paste a different, low-resolution, colour-mismatched face over `box` with a visible seam.

    The artefacts, each of which a small classifier can pick up after platform transcoding:
    - a rim of the donor photo's background around the head (a halo of foreign colour),
    - a bright seam where the blend mask ends,
    - blocky (or blurry) upsampling from a donor face 1/10 to 1/6 of the target size,
    - a colour cast the rest of the scene does not share,
    - no sensor noise inside the pasted region (the rest of the photo keeps its grain).
    """
    h, w = pixels.shape[:2]
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    mx, my = int(fw * 0.22), int(fh * 0.18)  # the pasted patch is bigger than the head
    px0, py0, px1, py1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    pw, ph = px1 - px0, py1 - py0
    if pw < 8 or ph < 8:
        raise ValueError(f"face box {box} is too small to swap")
    # Donor face drawn small, on its own flat background that contrasts with both the skin and
    # the photo around the head, so the rim of foreign background stays visible.
    scale = rng.uniform(0.10, 0.16)
    sw, sh = max(6, int(pw * scale)), max(6, int(ph * scale))
    local = pixels[py0:py1, px0:px1].reshape(-1, 3).mean(axis=0) / 255.0
    for _ in range(50):
        bg = _rand_colour(rng, 0.05, 0.95)
        if np.abs(bg - local).mean() > 0.2 and min(np.abs(bg - np.array(t)).mean() for t in SKIN_TONES) > 0.15:
            break
    donor_bg = _rgb255(bg)
    donor = Image.new("RGB", (sw, sh), donor_bg)
    fx0, fy0 = (x0 - px0) * scale, (y0 - py0) * scale
    draw_face(ImageDraw.Draw(donor), (int(fx0), int(fy0), int(fx0 + fw * scale), int(fy0 + fh * scale)), rng)
    resample = Image.Resampling.NEAREST if rng.random() < 0.85 else Image.Resampling.BILINEAR
    patch = np.asarray(donor.resize((pw, ph), resample), dtype=np.float32) / 255.0
    cast = np.ones(3, dtype=np.float32)
    channel = int(rng.integers(3))
    cast[channel] += rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.22)
    patch = np.clip(patch * cast * rng.uniform(0.9, 1.15), 0, 1)
    # Elliptical mask a little larger than the head: the donor background shows as a rim.
    ys = (np.arange(py0, py1, dtype=np.float32)[:, None] - (y0 + y1) / 2) / (fh / 2 * 1.2)
    xs = (np.arange(px0, px1, dtype=np.float32)[None, :] - (x0 + x1) / 2) / (fw / 2 * 1.25)
    r = np.sqrt(xs**2 + ys**2)
    alpha = np.clip((1.08 - r) / 0.06, 0, 1)[..., None]
    seam = (np.abs(r - 1.04) < 0.05)[..., None].astype(np.float32)
    region = pixels[py0:py1, px0:px1].astype(np.float32) / 255.0
    blended = region * (1 - alpha) + patch * alpha
    blended = np.clip(blended + seam * rng.uniform(0.2, 0.35), 0, 1)
    out = pixels.copy()
    out[py0:py1, px0:px1] = _to_u8(blended)
    return out


def jpeg_bytes(pixels: np.ndarray, quality: int, *, subsampling: int | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {} if subsampling is None else {"subsampling": subsampling}
    Image.fromarray(pixels).save(buf, "JPEG", quality=int(quality), optimize=False, **kwargs)
    return buf.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def transcode(
    rng: np.random.Generator,
    pixels: np.ndarray,
    *,
    scale: tuple[float, float] = (0.6, 0.8),
    quality: tuple[int, int] = (60, 80),
    max_crop: float = 0.05,
) -> tuple[bytes, str]:
    """What a platform does to a re-upload: small crop, resize, JPEG re-encode.

    Returns the JPEG bytes and a plain description of the transform.
    """
    h, w = pixels.shape[:2]
    cl, cr, ct, cb = (rng.uniform(0, max_crop) for _ in range(4))
    crop = pixels[int(ct * h): h - int(cb * h), int(cl * w): w - int(cr * w)]
    s = rng.uniform(*scale)
    ch, cw = crop.shape[:2]
    nw, nh = max(16, int(cw * s)), max(16, int(ch * s))
    resized = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.Resampling.BILINEAR))
    q = int(rng.integers(quality[0], quality[1] + 1))
    desc = (f"crop l{cl:.1%} r{cr:.1%} t{ct:.1%} b{cb:.1%}, resize x{s:.2f} to {nw}x{nh}, "
            f"JPEG q{q}")
    return jpeg_bytes(resized, q), desc
