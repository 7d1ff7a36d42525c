"""The driver's near-duplicate index: pHash Hamming matching and video frame-share matching."""
from __future__ import annotations

from orchestrator.dedup import PerceptualIndex

PDQ_A = "f" * 32 + "0" * 32
PDQ_FAR = "0f" * 32  # 128 bits from PDQ_A


def _flip(hex_value: str, mask: int) -> str:
    return format(int(hex_value, 16) ^ mask, f"0{len(hex_value)}x")


def test_image_match_by_phash_nearest_within_threshold():
    index = PerceptualIndex(image_max_distance=10)
    assert index.match_image("0" * 16) is None
    index.add_image("a" * 64, "ffff0000ffff0000")
    index.add_image("b" * 64, "0000ffff0000ffff")
    match = index.match_image(_flip("ffff0000ffff0000", 0b111))  # 3 bits away from a
    assert match is not None and match.sha256 == "a" * 64 and match.distance == 3 and match.signal == "phash"
    assert index.match_image(_flip("ffff0000ffff0000", 0xFFF)) is None  # 12 bits away
    assert len(index) == 2


def test_pdq_match_wins_and_needs_quality():
    index = PerceptualIndex()
    index.add_image("a" * 64, "1234123412341234", PDQ_A, 90)
    near = _flip(PDQ_A, (1 << 20) - 1)  # 20 bits away
    match = index.match_image("ffffffffffffffff", near, 80)  # pHash far, PDQ near
    assert match is not None and match.signal == "pdq" and match.distance == 20
    assert index.match_image("ffffffffffffffff", near, 10) is None  # too weak a PDQ to trust


def test_phash_collision_rejected_by_pdq():
    index = PerceptualIndex()
    index.add_image("a" * 64, "1234123412341234", PDQ_A, 90)
    # Same pHash but PDQ 128 bits away: different pictures, not a re-upload.
    assert index.match_image("1234123412341234", PDQ_FAR, 90) is None
    assert index.match_image("1234123412341234", None, None).sha256 == "a" * 64


def test_video_match_needs_shared_frames_both_ways():
    index = PerceptualIndex(video_frame_distance=4)
    frames = [format(0x1111111111111111 * k, "016x") for k in range(1, 9)]
    index.add_video("v" * 64, frames)
    reencoded = [format(int(h, 16) ^ 0b11, "016x") for h in frames]
    match = index.match_video(reencoded)
    assert match is not None and match.sha256 == "v" * 64
    unrelated = [format(0x0F0F0F0F0F0F0F0F ^ (k << 40), "016x") for k in range(8)]
    assert index.match_video(unrelated) is None


def test_video_match_by_vpdq_when_both_have_good_frames():
    index = PerceptualIndex()
    frames = [format(0x1111111111111111 * k, "016x") * 4 for k in range(1, 7)]
    known = [[i * 0.5, 90, h] for i, h in enumerate(frames)]
    index.add_video("v" * 64, ["0" * 16], known)  # frame pHashes unrelated: vPDQ must decide
    near = [[t, 80, _flip(h, (1 << 25) - 1)] for t, _, h in known]  # 25 bits off each
    match = index.match_video(["f" * 16], near)
    assert match is not None and match.signal == "vpdq" and match.distance == 0
    far = [[t, 80, _flip(h, (1 << 200) - 1)] for t, _, h in known]
    assert index.match_video(["f" * 16], far) is None
    # Low-quality vPDQ frames are not trusted: the frame pHashes decide (and differ here).
    weak = [[t, 10, h] for t, _, h in near]
    assert index.match_video(["f" * 16], weak) is None
