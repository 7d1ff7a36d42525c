"""A video against the known-fakes video bank, for `scan`'s database checks and campaigns.

`check_video_bank(store, frames)` answers None (no banked video matches) or a dict that a
scan result or a detection carries: the case, the reason text, and where the videos align
("12.0-41.5 s of this video = 3.0-32.5 s of case NEC-2026-0042's video").
"""
from __future__ import annotations

from typing import Any

from detectors.vpdq import VpdqFrame, frames_from_rows
from storage.bank_video import VideoBank
from storage.db import Store


def as_frames(vpdq: list | tuple) -> list[VpdqFrame]:
    """[(t_s, quality, hash), ...] as stored on Media.vpdq -> VpdqFrame list; frames just hashed
    (VpdqFrame already) pass as they are."""
    if vpdq and isinstance(vpdq[0], VpdqFrame):
        return list(vpdq)
    return frames_from_rows(vpdq)


def check_video_bank(store: Store, vpdq: list | tuple, bank: VideoBank | None = None) -> dict[str, Any] | None:
    """The best known-fake video the frames match, or None; `bank` reuses a VideoBank (its
    frame index) across calls."""
    frames = as_frames(vpdq)
    if not frames:
        return None
    hits = (bank or VideoBank(store)).match(frames)
    if not hits:
        return None
    best = hits[0]
    return {"case_id": best.case_id, "entry_id": best.entry_id, "reason": best.reason,
            "banked_media_sha256": best.media_sha256, "name": best.name, **best.alignment.as_dict()}


__all__ = ["as_frames", "check_video_bank"]
