"""Near-duplicate matching of new media against everything already seen.

Exact duplicates need no code here: media rows are keyed by sha256. Near duplicates (a
re-upload resized, re-encoded or cropped) are found through the multi-index hash index
(`storage.hashindex`): images by PDQ (256 bits, quality-gated) and by pHash (64 bits), videos by
vPDQ (per-frame PDQ, half a second apart) with a both-ways share rule, falling back to
sampled-frame pHashes for videos without usable vPDQ frames. A match means the item is not classified
again: it joins the cluster of the item it copies (see `storage.queries` for cluster verdicts).

Match rule for images, in order:
  1. PDQ distance <= 31 with both qualities >= 50 (ThreatExchange's own rule; unrelated images
     sit ~128 bits apart, so this is precise at any scale);
  2. otherwise pHash distance <= `image_max_distance`, confirmed by a PDQ distance <= 90 when both
     items have one. pHash survives crops and captions better than PDQ (bench/dedup.py) but at
     64 bits random near-collisions become common in millions of items; requiring PDQ to be far
     closer than chance (~4.7 standard deviations) keeps those from inheriting a fake verdict.
"""
from __future__ import annotations

from dataclasses import dataclass

from detectors.hashing import hamming
from detectors.signals import SIGNALS
from storage.hashindex import BinaryHashIndex

PDQ_MATCH = SIGNALS["pdq"].default_threshold
PDQ_QUALITY_MIN = SIGNALS["pdq"].quality_cutoff or 0
PDQ_CONFIRM = 90
VPDQ_SHARE = 0.5


@dataclass(frozen=True)
class Match:
    sha256: str
    distance: float  # bits for images; for videos, 1 - the smaller share of matching frames
    signal: str = "phash"


class PerceptualIndex:
    def __init__(self, image_max_distance: int = 10, video_frame_distance: int = 10):
        self.image_max_distance = image_max_distance
        self.video_frame_distance = video_frame_distance
        self._sha: list[str] = []
        self._pdq: list[tuple[str | None, int | None]] = []
        self._phash_index = BinaryHashIndex(bits=64)
        self._pdq_index = BinaryHashIndex(bits=256)
        self._videos: list[tuple[str, list[str], list]] = []  # (sha256, frame pHashes, vPDQ frames)

    def __len__(self) -> int:
        return len(self._sha) + len(self._videos)

    def add_image(self, sha256: str, phash_hex: str | None, pdq_hex: str | None = None, pdq_quality: int | None = None) -> None:
        ident = len(self._sha)
        self._sha.append(sha256)
        self._pdq.append((pdq_hex, pdq_quality))
        if phash_hex:
            self._phash_index.add_one(ident, phash_hex)
        if pdq_hex and (pdq_quality or 0) >= PDQ_QUALITY_MIN:
            self._pdq_index.add_one(ident, pdq_hex)

    def add_video(self, sha256: str, frame_hashes: list[str], vpdq: list | None = None) -> None:
        if frame_hashes or vpdq:
            self._videos.append((sha256, list(frame_hashes), _frames(vpdq)))

    def match_image(self, phash_hex: str | None, pdq_hex: str | None = None, pdq_quality: int | None = None) -> Match | None:
        if pdq_hex and (pdq_quality or 0) >= PDQ_QUALITY_MIN and len(self._pdq_index):
            hits = self._pdq_index.search(pdq_hex, PDQ_MATCH)
            if hits:
                ident, dist = hits[0]
                return Match(self._sha[ident], float(dist), "pdq")
        if not phash_hex or not len(self._phash_index):
            return None
        for ident, dist in self._phash_index.search(phash_hex, self.image_max_distance):
            other_pdq, _ = self._pdq[ident]
            if pdq_hex and other_pdq and hamming(pdq_hex, other_pdq) > PDQ_CONFIRM:
                continue  # a pHash near-collision between different pictures
            return Match(self._sha[ident], float(dist), "phash")
        return None

    def match_video(self, frame_hashes: list[str], vpdq: list | None = None) -> Match | None:
        """vPDQ (ThreatExchange's rule: frames within 31 bits, quality >= 50, half of each
        video's frames found in the other) when both videos have usable vPDQ frames; the sampled
        frame pHashes with the same share rule otherwise."""
        from detectors.hashing import video_match
        from detectors.vpdq import vpdq_match

        query = _frames(vpdq)
        best: Match | None = None
        for sha, known_frames, known_vpdq in self._videos:
            if _usable(query) and _usable(known_vpdq):
                share = min(vpdq_match(query, known_vpdq))
                matched, signal = share >= VPDQ_SHARE, "vpdq"
            elif frame_hashes and known_frames:
                matched, share = video_match(frame_hashes, known_frames, max_distance=self.video_frame_distance)
                signal = "video-frames"
            else:
                continue
            if matched and (best is None or 1 - share < best.distance):
                best = Match(sha, round(1 - share, 4), signal)
        return best


def _frames(vpdq: list | None) -> list:
    from detectors.vpdq import VpdqFrame

    return [VpdqFrame(float(t), int(q), str(h)) for t, q, h in (vpdq or [])]


def _usable(frames: list) -> bool:
    return any(f.quality >= PDQ_QUALITY_MIN for f in frames)
