"""Near-duplicates of one video among the videos in the database and the known-fakes video bank.

Each stored video with vPDQ frames is aligned against the query (detectors.video_align): the
vPDQ rule decides what matches, the alignment says which seconds of the query are which seconds
of the stored video. A first pass looks up a few hundred of the query's frames in a frame index
built for the call, so only videos sharing a close frame are aligned in full.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sqlmodel import select

from detectors.pdq import PDQ_MATCH_DISTANCE, PDQ_QUALITY_CUTOFF
from detectors.video_align import align
from detectors.vpdq import VpdqFrame, frames_from_rows
from storage import models as m
from storage.bank_video import VideoBank
from storage.db import Store
from storage.hashindex import BinaryHashIndex

_PROBES = 240


def _frames(rows: list) -> list[VpdqFrame]:
    return frames_from_rows(rows)


def similar_videos(store: Store, frames: list[VpdqFrame], *, limit: int = 20,
                   distance: int = PDQ_MATCH_DISTANCE) -> dict[str, Any]:
    """{"matches": stored videos matching by the vPDQ rule with where they align (best first),
    "bank": known-fake videos matching, each with its case and aligned ranges}."""
    good = [f for f in frames if f.quality >= PDQ_QUALITY_CUTOFF]
    matches: list[dict[str, Any]] = []
    if good:
        with store.session() as s:
            rows = s.exec(select(m.Media.sha256, m.Media.vpdq).where(m.Media.kind == "video")).all()
        owner, hashes = [], []
        for i, (_sha, vp) in enumerate(rows):
            for row in vp or []:
                if row[1] >= PDQ_QUALITY_CUTOFF:
                    owner.append(i)
                    hashes.append(row[2])
        if hashes:
            index = BinaryHashIndex(256)
            index.add(list(range(len(hashes))), hashes)
            owners = np.array(owner)
            step = max(1, len(good) // _PROBES)
            candidates = {int(owners[i]) for hit in index.search_many([f.hash_hex for f in good[::step]], distance)
                          for i, _d in hit}
            found = []
            for i in candidates:
                al = align(frames, _frames(rows[i][1]), distance)
                if al.is_match:
                    found.append((min(al.share_a, al.share_b), rows[i][0], al))
            found.sort(key=lambda x: x[0], reverse=True)
            with store.session() as s:
                for share, sha, al in found[:limit]:
                    media = s.get(m.Media, sha)
                    judged = s.get(m.Media, media.duplicate_of) if media.duplicate_of else media
                    post_url = s.exec(select(m.Post.url).join(m.Sighting, m.Sighting.post_pk == m.Post.id)
                                      .where(m.Sighting.media_sha256 == sha)).first()
                    matches.append({
                        "sha256": sha, "signal": "vpdq", "distance": round(1 - share, 4),
                        "where": al.describe(f"video {sha[:12]}"), "alignment": al.as_dict(),
                        "verdict": judged.verdict, "score": judged.score, "duplicate_of": media.duplicate_of,
                        "bank_case": media.bank_case, "example_post": post_url,
                    })
    bank = [hit.as_dict() for hit in VideoBank(store).match(frames, distance)]
    return {"matches": matches, "bank": bank}


__all__ = ["similar_videos"]
