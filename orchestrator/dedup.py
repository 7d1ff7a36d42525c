"""Near-duplicate matching of new media against everything already seen.

Exact duplicates need no code here: media rows are keyed by sha256. Near duplicates (a
re-upload resized, re-encoded or cropped) are found by perceptual hash: images by the Hamming
distance of 64-bit pHashes (a vectorised popcount over every known hash), videos by their
sampled-frame hashes with a both-ways share rule. A match means the item is not analysed again:
it inherits the verdict of the item it copies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.similar import hamming_to_all


@dataclass(frozen=True)
class Match:
    sha256: str
    distance: float  # bits for images; for videos, 1 - the smaller share of matching frames


class PerceptualIndex:
    def __init__(self, image_max_distance: int = 10, video_frame_distance: int = 10):
        self.image_max_distance = image_max_distance
        self.video_frame_distance = video_frame_distance
        self._image_sha: list[str] = []
        self._image_hashes = np.zeros(0, dtype=np.uint64)
        self._pending: list[int] = []
        self._videos: list[tuple[str, list[str]]] = []

    def __len__(self) -> int:
        return len(self._image_sha) + len(self._videos)

    def add_image(self, sha256: str, phash_hex: str) -> None:
        self._image_sha.append(sha256)
        self._pending.append(int(phash_hex, 16))

    def add_video(self, sha256: str, frame_hashes: list[str]) -> None:
        if frame_hashes:
            self._videos.append((sha256, list(frame_hashes)))

    def _flush(self) -> None:
        if self._pending:
            self._image_hashes = np.concatenate([self._image_hashes, np.array(self._pending, dtype=np.uint64)])
            self._pending = []

    def match_image(self, phash_hex: str) -> Match | None:
        self._flush()
        if not len(self._image_hashes):
            return None
        dist = hamming_to_all(self._image_hashes, int(phash_hex, 16))
        best = int(np.argmin(dist))
        if dist[best] <= self.image_max_distance:
            return Match(self._image_sha[best], float(dist[best]))
        return None

    def match_video(self, frame_hashes: list[str]) -> Match | None:
        from detectors.hashing import video_match

        best: Match | None = None
        for sha, known in self._videos:
            matched, share = video_match(frame_hashes, known, max_distance=self.video_frame_distance)
            if matched and (best is None or 1 - share < best.distance):
                best = Match(sha, round(1 - share, 4))
        return best
