"""Makes each media item of the demo world, with its ground truth, from the world seed.

Every item draws from its own generator seeded by (world seed, item number, attempt), so items do
not depend on each other's randomness. Originals are re-drawn (next attempt) when their pHash
lands within `MIN_PHASH_DISTANCE` of an earlier original, which keeps unrelated images clearly
apart for dedup; watermarked images are re-drawn until the payload reads back from the served
bytes; re-uploads are re-drawn until they stay within `MAX_REUPLOAD_PHASH` of their original.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from demo_platform import imagery, provenance, video
from demo_platform.model import MediaBlob, MediaTruth

MIN_PHASH_DISTANCE = 20  # the promise is > 16 between unrelated images; keep a margin
MAX_REUPLOAD_PHASH = 10
MAX_ATTEMPTS = 60

WATERMARK_STYLES = (
    ("stable_diffusion_v1", False),  # CompVis txt2img: BGR array
    ("sdxl", False),  # Stability generative-models: BGR array
    ("sdxl", True),  # diffusers StableDiffusionXLWatermarker: RGB array
)

BROKEN_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n"
    b"<body><h1>Forbidden</h1><p>You don't have permission to access this resource.</p>"
    b"</body></html>\n"
)


@dataclass(frozen=True)
class Item:
    path: str
    blob: MediaBlob
    truth: MediaTruth


def phash_of(data: bytes):
    import imagehash
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return imagehash.phash(im.convert("RGB"))


class MediaFactory:
    def __init__(self, seed: int):
        self.seed = seed
        self._n = 0
        self._hashes: list[int] = []  # pHashes of accepted originals, as 64-bit integers
        self.pixels_of: dict[str, np.ndarray] = {}  # decoded originals, for re-uploads

    # -- helpers ---------------------------------------------------------------------------
    def _next(self, ext: str) -> tuple[int, str]:
        self._n += 1
        # Path from seed and item number, not content: stable even where bytes are not (C2PA).
        name = hashlib.sha256(f"deepwatch-demo:{self.seed}:{self._n}".encode()).hexdigest()[:16]
        return self._n, f"/media/{name}.{ext}"

    def _rng(self, n: int, attempt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, n, attempt])

    @staticmethod
    def _size(rng: np.random.Generator, lo: int = 256, hi: int = 480) -> tuple[int, int]:
        return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))

    def _distinct(self, data: bytes) -> int | None:
        """The pHash as an int if it is far enough from every accepted original, else None."""
        h = int(str(phash_of(data)), 16)
        if self._hashes:
            dist = np.array([bin(h ^ o).count("1") for o in self._hashes])
            if dist.min() < MIN_PHASH_DISTANCE:
                return None
        return h

    def _accept_original(self, path: str, data: bytes, h: int) -> None:
        self._hashes.append(h)
        self.pixels_of[path] = imagery.decode_rgb(data)

    def _original_image(self, ext: str, make) -> tuple[str, bytes, str]:
        """Draw attempts of `make(rng) -> (bytes, transform) | None` until one is distinct."""
        n, path = self._next(ext)
        for attempt in range(MAX_ATTEMPTS):
            made = make(self._rng(n, attempt))
            if made is None:
                continue
            data, transform = made
            h = self._distinct(data)
            if h is not None:
                self._accept_original(path, data, h)
                return path, data, transform
        raise RuntimeError(f"could not draw a distinct image for {path} in {MAX_ATTEMPTS} attempts")

    # -- originals -------------------------------------------------------------------------
    def real_image(self, *, face: bool | None = None) -> Item:
        def make(rng):
            w, h = self._size(rng)
            scene = imagery.render_photo(rng, w, h, face=rng.random() < 0.5 if face is None else face)
            return imagery.jpeg_bytes(scene.pixels, int(rng.integers(85, 93))), None

        path, data, _ = self._original_image("jpg", make)
        return Item(path, MediaBlob(data, "image/jpeg", "image"), MediaTruth("real", None, "image", None, None))

    def manipulated_image(self) -> Item:
        def make(rng):
            w, h = self._size(rng)
            scene = imagery.render_photo(rng, w, h, face=True)
            assert scene.face_box is not None
            pixels = imagery.swap_face(rng, scene.pixels, scene.face_box)
            return imagery.jpeg_bytes(pixels, int(rng.integers(88, 93))), "face swap (low-resolution donor face, colour cast, blend seam)"

        path, data, transform = self._original_image("jpg", make)
        return Item(path, MediaBlob(data, "image/jpeg", "image"),
                    MediaTruth("fake", "manipulated", "image", None, transform))

    def c2pa_image(self) -> Item:
        def make(rng):
            w, h = self._size(rng)
            pixels = imagery.render_generated(rng, w, h).pixels
            return imagery.jpeg_bytes(pixels, 92), None

        path, plain, _ = self._original_image("jpg", make)
        signed = provenance.sign_c2pa(plain, "image/jpeg", seed=self.seed, item_id=path,
                                      title=path.rsplit("/", 1)[-1])
        store = provenance.read_c2pa(signed, "image/jpeg")
        if store["_validation_state"] != "Valid" or provenance.TRAINED_ALGORITHMIC_MEDIA not in \
                provenance.declared_source_types(store):
            raise RuntimeError(f"C2PA manifest for {path} did not read back as Valid/trainedAlgorithmicMedia")
        transform = (f"C2PA manifest: c2pa.created, digitalSourceType trainedAlgorithmicMedia, "
                     f"claim generator {provenance.GENERATOR_NAME}, signed by {provenance.SIGNER_CN}")
        return Item(path, MediaBlob(signed, "image/jpeg", "image"), MediaTruth("fake", "c2pa", "image", None, transform))

    def watermark_image(self, style: int) -> Item:
        name, rgb_order = WATERMARK_STYLES[style % len(WATERMARK_STYLES)]

        def make(rng):
            w, h = self._size(rng, 320, 480)
            data = provenance.embed_watermark(imagery.render_generated(rng, w, h).pixels, name, rgb_order=rgb_order)
            if data is None:
                return None  # payload did not survive on this image: draw another
            order = "RGB array (diffusers)" if rgb_order else "BGR array"
            return data, f"invisible watermark {name} (dwtDct, {order})"

        path, data, transform = self._original_image("png", make)
        return Item(path, MediaBlob(data, "image/png", "image"), MediaTruth("fake", "watermark", "image", None, transform))

    def video_clip(self, *, manipulated: bool) -> Item:
        n, path = self._next("mp4")
        rng = self._rng(n, 0)
        data = video.encode_mp4(video.render_clip(rng, manipulated=manipulated), crf=int(rng.integers(23, 27)))
        truth = (MediaTruth("fake", "manipulated", "video", None, "face swap on every frame")
                 if manipulated else MediaTruth("real", None, "video", None, None))
        return Item(path, MediaBlob(data, "video/mp4", "video"), truth)

    # -- derived ---------------------------------------------------------------------------
    def reupload_image(self, original: Item) -> Item:
        n, path = self._next("jpg")
        source = self.pixels_of[original.path]
        target = phash_of(original.blob.data)
        for attempt in range(MAX_ATTEMPTS):
            rng = self._rng(n, attempt)
            # Later attempts are milder, so a stubborn image still ends within the pHash bound.
            mild = attempt >= MAX_ATTEMPTS // 2
            data, desc = imagery.transcode(rng, source, scale=(0.75, 0.8) if mild else (0.6, 0.8),
                                           quality=(70, 80) if mild else (60, 80),
                                           max_crop=0.01 if mild else 0.04)
            if phash_of(data) - target <= MAX_REUPLOAD_PHASH:
                return Item(path, MediaBlob(data, "image/jpeg", "image"),
                            MediaTruth("fake", "reupload", "image", original.path, desc))
        raise RuntimeError(f"re-upload of {original.path} kept drifting past pHash distance {MAX_REUPLOAD_PHASH}")

    def reupload_video(self, original: Item) -> Item:
        n, path = self._next("mp4")
        rng = self._rng(n, 0)
        data, desc = video.reencode(original.blob.data, width=256, crf=int(rng.integers(30, 35)))
        return Item(path, MediaBlob(data, "video/mp4", "video"),
                    MediaTruth("fake", "reupload", "video", original.path, desc))

    # -- broken ----------------------------------------------------------------------------
    def truncated_jpeg(self) -> Item:
        n, path = self._next("jpg")
        rng = self._rng(n, 0)
        w, h = self._size(rng)
        full = imagery.jpeg_bytes(imagery.render_photo(rng, w, h, face=False).pixels, 90)
        data = full[: len(full) * 2 // 5]  # cut mid-scan: the decoder runs out of data
        return Item(path, MediaBlob(data, "image/jpeg", "image"),
                    MediaTruth("broken", None, "image", None, f"JPEG truncated to {len(data)} of {len(full)} bytes"))

    def html_as_jpeg(self) -> Item:
        _, path = self._next("jpg")
        return Item(path, MediaBlob(BROKEN_HTML, "image/jpeg", "image"),
                    MediaTruth("broken", None, "image", None, "an HTML error page served as image/jpeg"))
