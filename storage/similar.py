"""Near-duplicate lookup of one image against every media item in the database and the bank.

Uses the same multi-index hash index as the pipeline's dedup stage (`storage.hashindex`), built
over the stored PDQ and pHash of every item, so one query costs milliseconds however many
items there are; the index is built per call from the database.
"""
from __future__ import annotations

from typing import Any

from sqlmodel import select

from storage import models as m
from storage.bank import KnownFakesBank
from storage.db import Store
from storage.hashindex import BinaryHashIndex


def similar_images(
    store: Store,
    *,
    phash: str | None,
    pdq: str | None = None,
    max_phash: int = 10,
    max_pdq: int = 31,
    limit: int = 20,
) -> dict[str, Any]:
    """{"matches": items within either radius (nearest first, the closer signal reported),
    "bank": known-fakes bank entries matching the query}."""
    with store.session() as s:
        rows = s.exec(
            select(m.Media.sha256, m.Media.phash, m.Media.pdq).where(
                (m.Media.phash.is_not(None)) | (m.Media.pdq.is_not(None))  # type: ignore[union-attr]
            )
        ).all()
        shas = [r[0] for r in rows]
        # Rank by the share of bits that differ, so PDQ (256) and pHash (64) distances compare.
        best: dict[int, tuple[float, str, int]] = {}  # row -> (share, signal, distance)
        for signal, bits, col, query, radius in (("pdq", 256, 2, pdq, max_pdq), ("phash", 64, 1, phash, max_phash)):
            ids = [i for i, r in enumerate(rows) if r[col]]
            if not query or not ids:
                continue
            index = BinaryHashIndex(bits=bits)
            index.add(ids, [rows[i][col] for i in ids])
            for ident, dist in index.search(query, radius):
                best[ident] = min(best.get(ident, (2.0, "", 0)), (dist / bits, signal, dist))
        order = sorted(best, key=lambda i: best[i])[:limit]
        matches = []
        for ident in order:
            media = s.get(m.Media, shas[ident])
            judged = s.get(m.Media, media.duplicate_of) if media.duplicate_of else media
            post_url = s.exec(
                select(m.Post.url).join(m.Sighting, m.Sighting.post_pk == m.Post.id).where(m.Sighting.media_sha256 == media.sha256)
            ).first()
            matches.append(
                {
                    "sha256": media.sha256,
                    "signal": best[ident][1],
                    "distance": best[ident][2],
                    "phash": media.phash,
                    "pdq": media.pdq,
                    "verdict": judged.verdict,
                    "score": judged.score,
                    "duplicate_of": media.duplicate_of,
                    "bank_case": media.bank_case,
                    "example_post": post_url,
                }
            )
    bank = KnownFakesBank(store)
    bank_hits = (bank.match("pdq", pdq) if pdq else []) + (bank.match("phash", phash) if phash else [])
    return {
        "matches": matches,
        "bank": [{"case_id": b.case_id, "distance": b.distance, "hash": b.hash_hex, "reason": b.reason} for b in bank_hits],
    }
