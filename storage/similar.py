"""Near-duplicate lookup of one image hash against every media item in the database."""
from __future__ import annotations

from typing import Any

import numpy as np
from sqlmodel import select

from storage import models as m
from storage.db import Store

_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming_to_all(hashes: np.ndarray, query: int) -> np.ndarray:
    """Hamming distances from one 64-bit hash to an array of them (byte-table popcount)."""
    x = hashes ^ np.uint64(query)
    return _BYTE_POP[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def similar_images(store: Store, phash_hex: str, *, max_distance: int = 12, limit: int = 20) -> list[dict[str, Any]]:
    with store.session() as s:
        rows = s.exec(select(m.Media).where(m.Media.phash.is_not(None))).all()  # type: ignore[union-attr]
        if not rows:
            return []
        hashes = np.array([int(r.phash, 16) for r in rows], dtype=np.uint64)
        dist = hamming_to_all(hashes, int(phash_hex, 16))
        order = [int(i) for i in np.argsort(dist, kind="stable") if dist[i] <= max_distance][:limit]
        out = []
        for i in order:
            media = rows[i]
            judged = s.get(m.Media, media.duplicate_of) if media.duplicate_of else media
            sighting = s.exec(
                select(m.Post.url).join(m.Sighting, m.Sighting.post_pk == m.Post.id).where(m.Sighting.media_sha256 == media.sha256)
            ).first()
            out.append(
                {
                    "sha256": media.sha256,
                    "distance": int(dist[i]),
                    "phash": media.phash,
                    "verdict": judged.verdict,
                    "score": judged.score,
                    "duplicate_of": media.duplicate_of,
                    "example_post": sighting,
                }
            )
        return out
