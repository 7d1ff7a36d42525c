"""The driver's near-duplicate index: pHash Hamming matching and video frame-share matching."""
from __future__ import annotations

import numpy as np

from orchestrator.dedup import PerceptualIndex
from storage.similar import hamming_to_all


def test_hamming_matches_python_popcount():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=500, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, size=500, dtype=np.uint64)
    query = int(hashes[17]) ^ 0b1011
    dist = hamming_to_all(hashes, query)
    expected = [bin(int(h) ^ query).count("1") for h in hashes]
    assert dist.tolist() == expected and dist[17] == 3


def test_image_match_nearest_within_threshold():
    index = PerceptualIndex(image_max_distance=10)
    assert index.match_image("0" * 16) is None
    index.add_image("a" * 64, "ffff0000ffff0000")
    index.add_image("b" * 64, "0000ffff0000ffff")
    near = format(0xFFFF0000FFFF0000 ^ 0b111, "016x")  # 3 bits away from a
    match = index.match_image(near)
    assert match is not None and match.sha256 == "a" * 64 and match.distance == 3
    far = format(0xFFFF0000FFFF0000 ^ 0xFFF, "016x")  # 12 bits away
    assert index.match_image(far) is None
    assert len(index) == 2


def test_video_match_needs_shared_frames_both_ways():
    index = PerceptualIndex(video_frame_distance=4)
    frames = [format(0x1111111111111111 * k, "016x") for k in range(1, 9)]
    index.add_video("v" * 64, frames)
    reencoded = [format(int(h, 16) ^ 0b11, "016x") for h in frames]
    match = index.match_video(reencoded)
    assert match is not None and match.sha256 == "v" * 64
    unrelated = [format(0x0F0F0F0F0F0F0F0F ^ (k << 40), "016x") for k in range(8)]
    assert index.match_video(unrelated) is None
