"""Video re-upload matching: dense vPDQ + alignment (now) vs vPDQ sampled every 0.5 s (before),
both judged against the upstream vPDQ rule run on every frame at native size.

Videos: ThreatExchange's "pattern" clips (../shared/fixtures/vpdq/videos: 30 fps, one portrait HD,
two SD with grey bars / a logo) and demo-world clips (demo_platform.video.render_clip, three
shots, 10 fps, 384x288), each with the edits re-uploaders make (demo_platform.video_edits): frame
rate -> 24/25/15, trims of 10-50% at either end, letterbox bars, a logo, a re-encode at crf 35,
half size, and two combinations. Every unordered pair of these videos is a test case.

Reference: the upstream rule (frames within 31 bits at quality >= 50; both videos' shares of
frames found in the other >= 0.5) on PDQ of every frame at native size, as upstream vPDQ hashes.
Recall / precision are of each method's match decisions against the reference's. Also reported:
recall against the edit ground truth (pairs from one source clip), and milliseconds of hashing
per video-minute (decode included) for each method.

    .venv/bin/python bench/video_dedup.py [--quick]

Prints ONE JSON object as its last line.
"""
from __future__ import annotations

import argparse
import time
from itertools import combinations

import numpy as np

from _common import ROOT, emit, environment

FIXTURES = ROOT.parent / "shared" / "fixtures" / "vpdq" / "videos"


def every_frame_native(data: bytes):
    """Upstream's hashing: PDQ of every decoded frame at its native size."""
    import io

    import av
    import pdqhash

    from detectors.pdq import _hex
    from detectors.vpdq import VpdqFrame

    out = []
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        base = None
        for f in c.decode(s):
            t = float(f.time or 0.0)
            base = t if base is None else base
            bits, q = pdqhash.compute(f.to_ndarray(format="rgb24"))
            out.append(VpdqFrame(round(t - base, 3), int(q), _hex(bits)))
    return out


def edits(data: bytes, quick: bool) -> dict[str, bytes]:
    from demo_platform import video_edits as E

    frames, fps = E.decode(data)
    made = {
        "fps24": (E.retime(frames, fps, 24), 24),
        "fps15": (E.retime(frames, fps, 15), 15),
        "trim_head30": (E.trim(frames, 0.3, 0.0), fps),
        "trim_both50+fps25": (E.retime(E.trim(frames, 0.25, 0.25), fps, 25), 25),
        "logo": (E.logo(frames), fps),
        "bars": (E.bars(frames), fps),
    }
    if not quick:
        made.update({
            "fps25": (E.retime(frames, fps, 25), 25),
            "trim_tail10": (E.trim(frames, 0.0, 0.1), fps),
            "trim_head20_tail20": (E.trim(frames, 0.2, 0.2), fps),
            "reencode_crf35": (frames, fps),
            "half_size": (E.resize(frames, 0.5), fps),
            "logo+fps24+trim10": (E.retime(E.logo(E.trim(frames, 0.1, 0.0)), fps, 24), 24),
        })
    return {name: E.encode(f, r, crf=35 if name == "reencode_crf35" else 28) for name, (f, r) in made.items()}


def demo_clips(n: int) -> list[bytes]:
    from demo_platform import video

    out = []
    for i in range(n):
        shots = []
        for k in range(3):
            shots += video.render_clip(np.random.default_rng([71, i, k]), manipulated=i % 2 == 1, face=k == 0)
        out.append(video.encode_mp4(shots))
    return out


def duration_s(frames) -> float:
    return max(frames[-1].t_s, 1e-3) if frames else 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one fixture clip, two demo clips, six edits")
    parser.add_argument("--side", type=int, default=None, help="frame side dense vPDQ hashes at (default: its own)")
    args = parser.parse_args()

    from detectors.video_align import align
    from detectors.vpdq import VPDQ_MATCH_SHARE, vpdq_hashes, vpdq_match
    from detectors.vpdq_sampling import HASH_SIDE, dense_vpdq

    side = {"side": args.side} if args.side else {}
    sources: dict[str, bytes] = {}
    fixture_names = ["pattern-sd-grey-bar"] if args.quick else sorted(p.stem for p in FIXTURES.glob("*.mp4"))
    for name in fixture_names:
        sources[name] = (FIXTURES / f"{name}.mp4").read_bytes()
    for i, clip in enumerate(demo_clips(2 if args.quick else 4)):
        sources[f"demo{i}"] = clip
    videos: dict[str, tuple[str, bytes]] = {}  # name -> (source, bytes)
    for src, data in sources.items():
        # The three pattern clips are one scene (one clip re-encoded with bars or a logo): a
        # match between them is a true one, so they count as one source.
        family = "pattern" if src.startswith("pattern") else src
        videos[src] = (family, data)
        for edit, edited in edits(data, args.quick).items():
            videos[f"{src}/{edit}"] = (family, edited)

    hashes: dict[str, dict[str, list]] = {"reference": {}, "now": {}, "before": {}}
    spent = {"reference": 0.0, "now": 0.0, "before": 0.0}
    minutes = 0.0
    for name, (_src, data) in videos.items():
        for method, fn in (("reference", every_frame_native), ("now", lambda d: dense_vpdq(d, **side)),
                           ("before", lambda d: vpdq_hashes(d, seconds_per_hash=0.5))):
            t = time.perf_counter()
            hashes[method][name] = fn(data)
            spent[method] += time.perf_counter() - t
        minutes += duration_s(hashes["reference"][name]) / 60

    decisions: dict[str, dict[tuple[str, str], bool]] = {m: {} for m in hashes}
    closest = {m: 0.0 for m in hashes}  # highest smaller share of a pair from different sources
    align_s, n_pairs = 0.0, 0
    for a, b in combinations(sorted(videos), 2):
        shares = {m: vpdq_match(hashes[m][a], hashes[m][b]) for m in ("reference", "before")}
        for m in ("reference", "before"):
            decisions[m][a, b] = min(shares[m]) >= VPDQ_MATCH_SHARE
        t = time.perf_counter()
        found = align(hashes["now"][a], hashes["now"][b])
        align_s += time.perf_counter() - t
        decisions["now"][a, b] = found.is_match
        shares["now"] = (found.share_a, found.share_b)
        if videos[a][0] != videos[b][0]:
            for m in closest:
                closest[m] = max(closest[m], min(shares[m]))
        n_pairs += 1

    ref = {p for p, v in decisions["reference"].items() if v}
    truth = {p for p in decisions["reference"] if videos[p[0]][0] == videos[p[1]][0]}

    def score(method: str) -> dict:
        got = {p for p, v in decisions[method].items() if v}
        hit = len(got & ref)
        missed = sorted(f"{a} ~ {b}" for a, b in ref - got)
        return {
            "recall_vs_upstream": round(hit / len(ref), 4) if ref else None,
            "precision_vs_upstream": round(hit / len(got), 4) if got else None,
            "recall_vs_edits": round(len(got & truth) / len(truth), 4) if truth else None,
            "false_matches_across_sources": len(got - truth),
            # Matches the upstream rule does not make: same-source pairs just over the 0.5 share
            # (a true copy) or pairs of different sources (a false match).
            "extra_vs_upstream_same_source": len((got - ref) & truth),
            "extra_vs_upstream_across_sources": len((got - ref) - truth),
            "precision_vs_edits": round(len(got & truth) / len(got), 4) if got else None,
            "closest_share_across_sources": round(closest[method], 4),
            "ms_per_video_minute": round(spent[method] * 1000 / minutes, 1),
            "missed_vs_upstream": missed[:12],
        }

    now, before, reference = score("now"), score("before"), score("reference")
    emit({
        "bench": "video_dedup",
        "quick": args.quick,
        "side": args.side or HASH_SIDE,
        "videos": len(videos),
        "pairs": n_pairs,
        "upstream_matches": len(ref),
        "same_source_pairs": len(truth),
        "video_minutes": round(minutes, 3),
        "now": now,
        "before": before,
        "reference_recall_vs_edits": reference["recall_vs_edits"],
        "reference_ms_per_video_minute": reference["ms_per_video_minute"],
        "align_ms_per_pair": round(align_s * 1000 / max(1, n_pairs), 3),
        "ratio_vs_before_recall": round(now["recall_vs_upstream"] / before["recall_vs_upstream"], 3)
        if before["recall_vs_upstream"] else None,
        "ratio_vs_before_cost": round(now["ms_per_video_minute"] / before["ms_per_video_minute"], 3),
        "ratio_vs_upstream_cost": round(now["ms_per_video_minute"] / reference["ms_per_video_minute"], 3),
        **environment(),
    })


if __name__ == "__main__":
    main()
