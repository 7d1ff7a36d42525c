"""Keep a built demo world on disk, so repeated runs serve byte-identical media.

Pixels are deterministic from the seed, but C2PA manifests carry random salts that c2pa-rs
offers no way to fix, so two builds differ in those files' bytes. Re-running a campaign
against a rebuilt world would then see "new" media. The cache also saves the build time.
The key includes a digest of this package's source, so a code change rebuilds the world.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

from demo_platform.world import World, build_world


def _source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# Worlds larger than this are scaled up from a small one (demo_platform.scaled): the full
# generator renders every item (~10 s per 120 posts), the scaled world builds 100k posts in seconds.
SCALED_ABOVE = 2000


def load_world(seed: int, n_posts: int, cache_dir: str | os.PathLike[str] | None) -> World:
    if n_posts > SCALED_ABOVE:
        from demo_platform.scaled import build_scaled_world

        return build_scaled_world(seed, n_posts, cache_dir)
    if cache_dir is None:
        return build_world(seed=seed, n_posts=n_posts)
    cache = Path(cache_dir)
    path = cache / f"world-seed{seed}-posts{n_posts}-{_source_digest()}.pickle"
    try:
        # Only files this function wrote are read: the cache lives in deepwatch's own var folder.
        with path.open("rb") as fh:
            world = pickle.load(fh)
        if isinstance(world, World):
            return world
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass  # missing or stale: build afresh below
    world = build_world(seed=seed, n_posts=n_posts)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".world-")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(world, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return world
