"""A demo world of any size, built in seconds: for benchmarks and memory tests (100k posts).

The full generator (`world.build_world`) renders and checks every item (~10 s per 120 posts), so
a 100k-post world would take hours. The scaled world instead builds a small base world once
(cached like any other) and repeats its election posts N times, with media made unique cheaply
and generated lazily, so neither building nor serving it holds N items in memory:

  - a real image of the base world becomes a fresh image drawn from (seed, item number): a small
    random colour grid, smoothly upscaled and JPEG-encoded (~2 ms), so every copy has its own
    perceptual hash and goes through the detectors, as new real media does;
  - a fake JPEG (manipulated or watermarked) is re-served with a JPEG comment naming the copy:
    new bytes, same pixels, so the pipeline finds it a near-duplicate (a re-upload of a known fake);
  - everything else (C2PA-signed files, PNGs, videos, the broken items) is served byte for byte
    again: an exact duplicate, deduplicated by sha256.

Every scaled post carries the hashtag #demoscale (besides its base post's tags), so a campaign
searching "#demoscale" reads each post exactly once. Media paths encode what to serve
("/media/s<item>-<base name>"), so the media and truth mappings are computed per request, not stored.
"""
from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator, Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from demo_platform.model import MediaBlob, MediaTruth, WorldPost
from demo_platform.world import WINDOW_END, WINDOW_START, World

SCALE_TAG = "demoscale"
BASE_POSTS = 120  # the base world whose election posts are repeated
_FRESH_SIZE = (320, 240)


class ScaledWorld(World):
    """A World whose media and truth are computed from the path on demand."""

    def __init__(self, base: World, n_posts: int):
        if n_posts < 1:
            raise ValueError(f"a scaled world needs at least one post, got {n_posts}")
        self.base = base
        template = [p for p in base.newest_first()[::-1] if p.topic == "election" and p.media]
        if not template:
            raise ValueError("the base world has no election posts with media to repeat")
        tags = {p.id: (*p.hashtags, SCALE_TAG) for p in template}  # one tuple per base post, shared
        span = (WINDOW_END - WINDOW_START).total_seconds()
        posts = []
        item = 0
        for i in range(n_posts):
            bp = template[i % len(template)]
            paths = []
            for path in bp.media:
                item += 1
                paths.append(f"/media/s{item:07d}-{path.rsplit('/', 1)[1]}")
            created = WINDOW_START + dt.timedelta(seconds=int(span * i / n_posts))  # oldest first
            posts.append(replace(bp, id=f"s{i + 1:06d}", created_at=created, hashtags=tags[bp.id], media=tuple(paths)))
        super().__init__(seed=base.seed, accounts=base.accounts, posts=posts,
                         media=_ScaledMedia(self), truth=_ScaledTruth(self),  # type: ignore[arg-type]
                         search_terms=[f"#{SCALE_TAG}", *base.search_terms])
        self.n_items = item
        self._searches: dict[str, list[WorldPost]] = {}
        # A page's media are asked for by the fetchers (and the capture) close together: keep a few.
        self._blob = lru_cache(maxsize=512)(self._make_blob)

    def search(self, query: str) -> list[WorldPost]:
        # A scan of 100k posts per page would make the platform the bottleneck: keep each result.
        key = " ".join(query.casefold().split())
        if key not in self._searches:
            self._searches[key] = super().search(query)
        return self._searches[key]

    # -- one item, from its path -----------------------------------------------------------
    def _split(self, path: str) -> tuple[int, str] | None:
        name = path.rsplit("/", 1)[-1]
        if not (path.startswith("/media/s") and "-" in name):
            return None
        number, base_name = name[1:].split("-", 1)
        base_path = f"/media/{base_name}"
        if not number.isdigit() or not 0 < int(number) <= self.n_items or base_path not in self.base.media:
            return None
        return int(number), base_path

    def blob(self, path: str) -> MediaBlob | None:
        found = self._split(path)
        if found is None:
            return None
        return self._blob(*found)

    def _make_blob(self, number: int, base_path: str) -> MediaBlob:
        original = self.base.media[base_path]
        mode = _mode(self.base, base_path)
        if mode == "fresh":
            return MediaBlob(fresh_image(self.seed, number), "image/jpeg", "image")
        if mode == "comment":
            return MediaBlob(with_jpeg_comment(original.data, f"deepwatch demo copy {number}".encode()),
                             original.content_type, original.kind)
        return original

    def media_type(self, path: str) -> tuple[str, str]:
        found = self._split(path)
        if found is None:
            raise KeyError(path)
        if _mode(self.base, found[1]) == "fresh":
            return "image", "image/jpeg"
        original = self.base.media[found[1]]
        return original.kind, original.content_type

    def truth_of(self, path: str) -> MediaTruth | None:
        found = self._split(path)
        if found is None:
            return None
        number, base_path = found
        truth = self.base.truth[base_path]
        if _mode(self.base, base_path) == "fresh":
            return MediaTruth("real", None, "image", None, "a fresh image of the scaled demo world")
        return truth

    def paths(self) -> Iterator[str]:
        for post in self.posts:
            yield from post.media


def _mode(base: World, base_path: str) -> str:
    truth, blob = base.truth[base_path], base.media[base_path]
    if truth.label == "real" and truth.kind == "image":
        return "fresh"
    if truth.label == "fake" and blob.content_type == "image/jpeg" and truth.fake_kind in ("manipulated", "watermark", "reupload"):
        return "comment"
    return "same"


def fresh_image(seed: int, number: int) -> bytes:
    """A unique, natural-looking enough image: a random 12x9 colour grid upscaled smoothly."""
    from PIL import Image

    rng = np.random.default_rng([seed, 0x5CA1E, number])
    grid = rng.integers(0, 256, size=(9, 12, 3), dtype=np.uint8)
    img = Image.fromarray(grid, "RGB").resize(_FRESH_SIZE, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def with_jpeg_comment(data: bytes, comment: bytes) -> bytes:
    """The same JPEG with a COM segment after SOI: new bytes (and sha256), identical pixels."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: no SOI marker")
    if len(comment) > 65533:
        raise ValueError("a JPEG comment holds at most 65533 bytes")
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


class _ScaledMedia(Mapping):
    def __init__(self, world: ScaledWorld):
        self.world = world

    def __getitem__(self, path: str) -> MediaBlob:
        blob = self.world.blob(path)
        if blob is None:
            raise KeyError(path)
        return blob

    def get(self, path: str, default=None):  # type: ignore[override]
        return self.world.blob(path) or default

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.world._split(path) is not None

    def __iter__(self) -> Iterator[str]:
        return self.world.paths()

    def __len__(self) -> int:
        return self.world.n_items


class _ScaledTruth(_ScaledMedia):
    def __getitem__(self, path: str) -> MediaTruth:  # type: ignore[override]
        truth = self.world.truth_of(path)
        if truth is None:
            raise KeyError(path)
        return truth

    def get(self, path: str, default=None):  # type: ignore[override]
        return self.world.truth_of(path) or default


def build_scaled_world(seed: int, n_posts: int, cache_dir: str | Path | None = None, base_posts: int = BASE_POSTS) -> ScaledWorld:
    from demo_platform.cache import load_world

    return ScaledWorld(load_world(seed, base_posts, cache_dir), n_posts)


def main(argv: list[str] | None = None) -> None:
    """Serve a scaled world: python -m demo_platform.scaled --posts 100000 --port 8377"""
    import argparse
    import time

    from demo_platform.server import DemoPlatform

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--posts", type=int, default=100_000)
    ap.add_argument("--port", type=int, default=8377)
    ap.add_argument("--cache", default="var/demo-world")
    args = ap.parse_args(argv)
    world = build_scaled_world(args.seed, args.posts, args.cache)
    platform = DemoPlatform(world)
    base_url = platform.start(port=args.port)
    print(f"serving {args.posts} posts, {world.n_items} media items at {base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
