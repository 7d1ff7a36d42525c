"""Dense vPDQ, alignment of edited copies, the known-fakes video bank and search by video."""
from __future__ import annotations

from functools import lru_cache

import pytest

from demo_platform import video_edits as E
from detectors.pdq import pdq_distance
from detectors.video_align import align
from detectors.vpdq import VpdqFrame, frames_to_rows, vpdq_is_match, vpdq_match
from detectors.vpdq_sampling import dense_vpdq
from orchestrator.dedup import PerceptualIndex
from orchestrator.video_bank_check import check_video_bank
from storage.bank_video import VideoBank, format_vpdq, parse_vpdq_text
from tests.conftest import fixtures_dir

CLIP = "pattern-sd-grey-bar"


def _upstream(name: str) -> list[VpdqFrame]:
    return parse_vpdq_text((fixtures_dir() / "vpdq" / "expected_hashes" / f"{name}.txt").read_text(), name)


@lru_cache(maxsize=None)
def _clip() -> tuple[bytes, tuple[VpdqFrame, ...]]:
    """The clip's bytes and its dense vPDQ: plain hashes, then those of the picture inside its
    black side bars."""
    data = (fixtures_dir() / "vpdq" / "videos" / f"{CLIP}.mp4").read_bytes()
    return data, tuple(dense_vpdq(data))


def _plain(frames) -> list[VpdqFrame]:
    return [f for f in frames if not f.cropped]


@lru_cache(maxsize=None)
def _edited() -> tuple[VpdqFrame, ...]:
    """The clip with its first 30% cut off, re-timed 30 -> 24 fps and re-encoded at crf 30."""
    frames, fps = E.decode(_clip()[0])
    return tuple(dense_vpdq(E.encode(E.retime(E.trim(frames, 0.3, 0.0), fps, 24), 24, crf=30)))


def test_dense_hashes_are_close_to_upstreams_native_hashes():
    ours = _plain(_clip()[1])
    upstream = _upstream(CLIP)
    assert len(ours) == len(upstream) == 206  # every frame of a 6.9 s clip at 30 fps
    assert all(abs(a.t_s - b.t_s) < 0.002 for a, b in zip(ours, upstream))
    dists = sorted(pdq_distance(a.hash_hex, b.hash_hex) for a, b in zip(ours, upstream))
    assert dists[len(dists) // 2] <= 16  # measured: median 10, max 28 (64 px via swscale vs native)
    # Same rule on our hashes and upstream's: every frame has its counterpart within 31 bits.
    assert min(vpdq_match(list(ours), upstream)) >= 0.95


def test_trimmed_and_retimed_copy_aligns_with_ranges():
    al = align(list(_edited()), list(_clip()[1]))
    assert al.is_match and al.share_a >= 0.95  # every frame of the cut is in the original
    assert 0.55 <= al.share_b <= 0.8  # the original's first 30% is not in the cut
    seg = al.segments[0]
    # 0-4.8 s of the cut is 2.06-6.87 s of the original
    assert seg.a_start == pytest.approx(0.0, abs=0.1) and seg.a_end == pytest.approx(4.8, abs=0.15)
    assert seg.b_start == pytest.approx(2.06, abs=0.15) and seg.b_end == pytest.approx(6.85, abs=0.15)
    assert al.offset_s == pytest.approx(2.06, abs=0.15) and al.rate == pytest.approx(1.0, abs=0.03)
    assert seg.describe("case X's video").startswith("0.0-4.8 s of this video = 2.")
    # Same decision as the upstream rule on the same hashes, both ways round.
    assert al.is_match == vpdq_is_match(list(_edited()), list(_clip()[1]))


@lru_cache(maxsize=None)
def _unrelated() -> tuple[VpdqFrame, ...]:
    """A demo-world clip (another scene): 2 s at 10 fps."""
    import numpy as np

    from demo_platform import video

    return tuple(dense_vpdq(video.encode_mp4(video.render_clip(np.random.default_rng(9), manipulated=False))))


def test_unrelated_videos_do_not_align():
    al = align(list(_unrelated()), list(_clip()[1]))
    assert not al.is_match and al.segments == () and max(al.share_a, al.share_b) < 0.1


def test_bars_are_cut_away_so_pillarboxed_and_letterboxed_copies_match():
    """The SD clip is the HD clip's scene with black side bars: upstream's rule finds no frame
    in common (tests/test_vpdq.py); the hashes of the picture inside the bars match."""
    hd_data = (fixtures_dir() / "vpdq" / "videos" / "pattern-hd-no-bar.mp4").read_bytes()
    hd = dense_vpdq(hd_data)
    assert not any(f.cropped for f in hd)  # no bars: plain hashes only
    assert sum(f.cropped for f in _clip()[1]) == 206
    assert vpdq_match(hd, list(_clip()[1])) == (0.0, 0.0)  # upstream's rule, plain hashes
    al = align(hd, list(_clip()[1]))
    assert al.is_match and al.cropped == "b" and min(al.share_a, al.share_b) >= 0.95
    frames, fps = E.decode(_clip()[0])
    letterboxed = dense_vpdq(E.encode(E.bars(frames), fps, crf=28))  # grey bars around the black ones
    for other, share in ((list(_clip()[1]), 0.95), (hd, 0.95)):
        found = align(letterboxed, other)
        assert found.is_match and found.cropped != "plain" and min(found.share_a, found.share_b) >= share


def test_dedup_index_reports_where_a_video_matches():
    index = PerceptualIndex()
    index.add_video("o" * 64, [], frames_to_rows(_clip()[1]))
    match = index.match_video([], frames_to_rows(_edited()))
    assert match is not None and match.sha256 == "o" * 64 and match.signal == "vpdq"
    assert match.where["segments"][0]["b"][0] == pytest.approx(2.06, abs=0.15)


def test_bank_vpdq_round_trip_and_match(store, tmp_path):
    bank = VideoBank(store)
    src = tmp_path / "in"
    src.mkdir()
    (src / "rally.txt").write_text(format_vpdq(_plain(_clip()[1])))
    assert bank.import_files([src], case_id="NEC-2026-0042") == (1, 0)
    assert bank.import_files([src / "rally.txt"], case_id="NEC-2026-0042") == (0, 1)  # already banked
    out = tmp_path / "out"
    assert bank.export_dir(out) == 1
    exported = out / "NEC-2026-0042" / "rally.txt"
    assert exported.read_text() == (src / "rally.txt").read_text()
    assert parse_vpdq_text(exported.read_text()) == _plain(_clip()[1])  # the exchange format: plain only

    hit = check_video_bank(store, frames_to_rows(_edited()))
    assert hit is not None and hit["case_id"] == "NEC-2026-0042" and hit["match"]
    assert "of this video = 2." in hit["reason"] and "case NEC-2026-0042's video" in hit["reason"]
    assert check_video_bank(store, frames_to_rows(_unrelated())) is None


GOOD = "0,100," + "ab" * 32 + ",0.000"


@pytest.mark.parametrize("line, why", [
    ("0,100," + "ab" * 32, "need 4 fields"),
    ("x,100," + "ab" * 32 + ",0.0", "whole numbers"),
    ("1,101," + "ab" * 32 + ",0.1", "quality must be 0-100"),
    ("1,-5," + "ab" * 32 + ",0.1", "whole numbers"),
    ("1,90," + "zz" * 32 + ",0.1", "64 hex digits"),
    ("1,90," + "ab" * 31 + ",0.1", "64 hex digits"),
    ("1,90," + "ab" * 32 + ",nan", "finite"),
    ("1,90," + "ab" * 32 + ",inf", "finite"),
    ("1,90," + "ab" * 32 + ",-1", "finite"),
    ("0,90," + "ab" * 32 + ",0.1", "frame numbers must increase"),
    ("1,90," + "ab" * 32 + ",1e999", "finite"),
    ("1,90," + "ab" * 32 + ",0.1,extra", "need 4 fields"),
])
def test_hostile_vpdq_lines_import_nothing(store, tmp_path, line, why):
    path = tmp_path / "evil.txt"
    path.write_text(GOOD + "\n" + line + "\n")
    bank = VideoBank(store)
    with pytest.raises(ValueError, match=why) as err:
        bank.import_files([path], case_id="NEC-1")
    assert "line 2" in str(err.value)
    assert len(bank) == 0


def test_hostile_vpdq_files(store, tmp_path):
    bank = VideoBank(store)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a text vPDQ file"):
        bank.import_files([binary], case_id="NEC-1")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="no frames"):
        bank.import_files([empty], case_id="NEC-1")
    with pytest.raises(ValueError, match="no such file"):
        bank.import_files([tmp_path / "missing.txt"], case_id="NEC-1")
    with pytest.raises(ValueError, match="case id"):
        bank.import_files([binary], case_id="  ")
    good = tmp_path / "good.txt"
    good.write_text(GOOD + "\n")
    with pytest.raises(ValueError):  # one bad file: the good one is not written either
        bank.import_files([good, empty], case_id="NEC-1")
    assert len(bank) == 0


def test_similar_by_video_finds_the_original_and_says_where(store):
    from storage import models as m
    from storage.similar_video import similar_videos

    original, other = "a" * 64, "b" * 64
    with store.session() as s:
        s.add(m.Media(sha256=original, kind="video", mime="video/mp4", size=1, vpdq=frames_to_rows(_clip()[1]),
                      verdict="likely_fake", score=0.9))
        s.add(m.Media(sha256=other, kind="video", mime="video/mp4", size=1,
                      vpdq=frames_to_rows(_unrelated())))
        s.commit()
    VideoBank(store).add(list(_clip()[1]), case_id="NEC-2026-0042", name="rally", source="review")
    found = similar_videos(store, list(_edited()))
    [hit] = found["matches"]  # the unrelated clip is not listed
    assert hit["sha256"] == original and hit["verdict"] == "likely_fake" and hit["signal"] == "vpdq"
    assert hit["where"].startswith("0.0-4.8 s of this video = 2.")
    [bank] = found["bank"]
    assert bank["case_id"] == "NEC-2026-0042" and bank["segments"][0]["b"][0] == pytest.approx(2.06, abs=0.15)
    assert similar_videos(store, []) == {"matches": [], "bank": []}


def test_console_search_takes_a_video(store, blobs, tmp_path):
    from fastapi.testclient import TestClient

    from console.app import create_app
    from console.auth import create_user

    VideoBank(store).add(list(_clip()[1]), case_id="NEC-2026-0042", name="rally", source="review")
    create_user(store, "ivan", "correct horse battery staple", "investigator")
    app = create_app(store.url, str(blobs.root), packets_root=str(tmp_path / "p"), key_dir=str(tmp_path / "k"))
    try:
        from console.auth import issue_token

        headers = {"Authorization": f"Bearer {issue_token(store, 'ivan', 'test')}"}
        data = (fixtures_dir() / "vpdq" / "videos" / "pattern-sd-with-small-logo-bar.mp4").read_bytes()
        found = TestClient(app).post("/api/v1/search/image", files={"image": ("q.mp4", data, "video/mp4")},
                                     headers=headers)
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["query"]["kind"] == "video" and body["query"]["frames"] == 206
        assert [b["case_id"] for b in body["bank"]] == ["NEC-2026-0042"]
        assert "0.0-6.8 s of this video = 0.0-6.8 s" in body["bank"][0]["reason"]
        from tests.test_console_api import client_for, csrf_of

        client = client_for(app, "ivan")
        page = client.post("/search-image", files={"image": ("q.mp4", data, "video/mp4")},
                           data={"csrf_token": csrf_of(client)})
        assert page.status_code == 200 and "206 frames hashed" in page.text and 'data-testid="bank-match"' in page.text
    finally:
        app.state.console.store.close()


def test_scan_carries_vpdq_frames_inline_or_as_a_file(tmp_path):
    from orchestrator.scan import scan_inputs

    clip = str(fixtures_dir() / "vpdq" / "videos" / f"{CLIP}.mp4")
    [inline] = list(scan_inputs([clip], model=None))
    assert inline["vpdq"] == frames_to_rows(_clip()[1])
    assert sum(len(r) == 4 for r in inline["vpdq"]) == 206  # the bar-cropped hashes carry a flag
    [written] = list(scan_inputs([clip], model=None, vpdq_dir=str(tmp_path)))
    assert "vpdq" not in written and written["vpdq_frames"] == 206
    assert parse_vpdq_text(open(written["vpdq_file"]).read()) == _plain(_clip()[1])


def test_scan_with_a_database_flags_a_video_in_the_video_bank(store, tmp_path):
    """scan's database checks hash the video once (every frame) and match it against the bank."""
    from orchestrator.scan import scan_inputs

    src = tmp_path / "in"
    src.mkdir()
    (src / "rally.txt").write_text(format_vpdq(_plain(_clip()[1])))
    assert VideoBank(store).import_files([src], case_id="NEC-2026-0042") == (1, 0)
    clip = str(fixtures_dir() / "vpdq" / "videos" / f"{CLIP}.mp4")
    [result] = list(scan_inputs([clip], model=None, store=store))
    assert result["verdict"]["band"] == "likely_fake", result["verdict"]
    assert any("case NEC-2026-0042's video" in r for r in result["verdict"]["reasons"])
    assert result["vpdq"] == frames_to_rows(_clip()[1])  # the same hashes the bank check used


def test_campaign_judges_a_retimed_copy_of_a_banked_video_by_the_bank(store):
    """The campaign driver's bank check on a real store: a video whose frames match a banked
    fake video is judged by that match, with where it aligns. (The driver is built without its
    crawl: only its bank check runs here; the full campaign is tests/test_campaign_e2e.py.)"""
    from collections import Counter

    from orchestrator.campaign import CampaignRun
    from orchestrator.stages import MediaRecord
    from orchestrator.writer_retry import RetryingStore
    from storage.bank import KnownFakesBank

    VideoBank(store).add(list(_clip()[1]), case_id="NEC-2026-0042", name="rally", source="review")
    run = CampaignRun.__new__(CampaignRun)
    run.store = RetryingStore(store, max_wait_s=0)
    run.bank, run.video_bank = KnownFakesBank(store), VideoBank(store)
    run.counts, run.progress = Counter(), lambda counts: None
    sha = "c" * 64
    rows = tuple(tuple(r) for r in frames_to_rows(_edited()))
    store.upsert_media(sha256=sha, kind="video", mime="video/mp4", size=1, vpdq=[list(r) for r in rows])
    item = MediaRecord(url="https://x.test/v.mp4", sha256=sha, kind="video", mime="video/mp4", size=1, width=None,
                       height=None, duration_s=None, phash=None, frame_hashes=(), vpdq=rows)
    assert run._judge_by_bank(item)
    assert store.get_media(sha).bank_case == "NEC-2026-0042" and run.counts["bank_matches"] == 1
    [det] = store.detections_for(sha)
    assert det.details["segments"][0]["b"][0] == pytest.approx(2.06, abs=0.15)
    assert "of case NEC-2026-0042's video" in det.reasons[0]
    other = MediaRecord(url="https://x.test/w.mp4", sha256="d" * 64, kind="video", mime="video/mp4", size=1, width=None,
                        height=None, duration_s=None, phash=None, frame_hashes=(),
                        vpdq=tuple(tuple(r) for r in frames_to_rows(_unrelated())))
    assert not run._judge_by_bank(other)


def test_extended_and_sped_up_copies_align():
    """A longer cut (2 s of another scene before the clip) and a copy played 1.25x faster."""
    import numpy as np
    from PIL import Image

    from demo_platform import video

    frames, fps = E.decode(_clip()[0])
    h, w = frames[0].shape[:2]
    intro = [np.asarray(Image.fromarray(f).resize((w, h))) for f in video.render_clip(np.random.default_rng(5), manipulated=False)]
    longer = align(dense_vpdq(E.encode(E.retime(intro, 10, fps) + frames, fps)), list(_clip()[1]))
    assert longer.is_match and longer.share_b == 1.0
    seg = longer.segments[0]
    assert seg.a_start == pytest.approx(2.0, abs=0.15) and seg.b_start == pytest.approx(0.0, abs=0.1)
    assert longer.offset_s == pytest.approx(-2.0, abs=0.15)
    faster = align(dense_vpdq(E.encode(frames, fps * 1.25)), list(_clip()[1]))
    assert faster.is_match and faster.rate == pytest.approx(1.25, abs=0.06)
    assert faster.segments[0].a_end == pytest.approx(5.4, abs=0.15) and faster.segments[0].b_end == pytest.approx(6.8, abs=0.15)


def test_bars_are_found_after_a_black_intro():
    import numpy as np

    frames, fps = E.decode(_clip()[0])
    black = [np.zeros_like(frames[0]) for _ in range(45)]  # 1.5 s of black before the picture
    hashed = dense_vpdq(E.encode(black + frames, fps))
    assert sum(f.cropped for f in hashed) == 206  # the picture's frames, inside their bars
