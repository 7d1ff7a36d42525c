"""Matching analysed items against the reference library, as a detector.

`ReferenceChecker.check` finds an item's authentic original (storage/references.py), compares
the two (detectors/reference.py for photos, detectors/reference_video.py for videos) and returns
a `Detection` named "reference-library":

* ``fake``  an altered copy: "altered copy of reference R3 (owner, source): face region
  x,y,w,h changed in 3.2-9.8 s (71 of 80 aligned frames)"; fusion makes it ``likely_fake``;
* ``real``  an unaltered copy (re-encode, resize, crop, caption band, screenshot, colour grade):
  "matches authentic reference R3 (owner, source)"; fusion then lets no learned score alone
  call the item ``likely_fake``;
* None from `check` (``inconclusive`` from the detector) when no reference matches.

The difference heatmap (PNG) goes into the blob store; its sha256 is in the details.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from detectors.base import Detection, MediaInput
from detectors.reference import (DETECTOR_NAME, VERSION, Comparison, ReferenceCompareError, compare,
                                 find_faces, heatmap_png, to_array)
from storage.references import FRAME_DISTANCE, Reference, ReferenceLibrary, item_pdqs

MIN_VIDEO_SUPPORT_SHARE = 0.3  # share of the item's frames that must agree on the time offset


class ReferenceChecker:
    name = DETECTOR_NAME
    version = VERSION
    kinds = ("image", "video")

    def __init__(self, library: ReferenceLibrary, *, set_names: tuple[str, ...] | None = None):
        self.library = library
        self.set_names = tuple(set_names) if set_names else None
        self._faces: dict[tuple[str, float], list] = {}
        self.last_ms: float | None = None  # time the last matched item took (for the benchmark)

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        out = []
        for item in items:
            try:
                found = self.check(item.data, item.kind)
            except Exception as exc:  # one bad item must not fail the batch (the detector contract)
                found = Detection(DETECTOR_NAME, VERSION, "error", reasons=[f"reference check failed: {exc}"])
            out.append(found or Detection(DETECTOR_NAME, VERSION, "inconclusive",
                                          reasons=["no authentic reference matches this item"]))
        return out

    def check(self, data: bytes, kind: str) -> Detection | None:
        """The comparison with the item's original, or None when no reference matches."""
        start = time.perf_counter()
        result = self._check_video(data) if kind == "video" else self._check_image(data)
        if result is not None:
            self.last_ms = (time.perf_counter() - start) * 1000
        return result

    # -- photos ----------------------------------------------------------------------------
    def _check_image(self, data: bytes) -> Detection | None:
        from detectors.pdq import decode_for_pdq

        img = decode_for_pdq(data, draft=False)
        copy = to_array(img)
        for cand in self.library.candidates(item_pdqs(img), set_names=self.set_names):
            ref = self.library.get(cand.reference_id)
            original = self._original_frame(ref, cand.t_s)
            try:
                comparison = compare(copy, original, faces=self._faces_of(ref, cand.t_s, original))
            except ReferenceCompareError:
                continue  # a PDQ look-alike that does not align is not its original
            return self._photo_detection(ref, cand.distance, cand.t_s, comparison, original)
        return None

    def _original_frame(self, ref: Reference, t_s: float) -> np.ndarray:
        from detectors.pdq import decode_for_pdq

        data = self.library.blobs.get(ref.sha256)
        if ref.kind == "video":
            from detectors.video import frames_at

            return to_array(frames_at(data, [t_s])[0].image)
        return to_array(decode_for_pdq(data, draft=False))

    def _faces_of(self, ref: Reference, t_s: float, original: np.ndarray) -> list:
        key = (ref.sha256, t_s)
        if key not in self._faces:
            self._faces[key] = find_faces(original)
        return self._faces[key]

    def _photo_detection(self, ref: Reference, distance: int, t_s: float, c: Comparison,
                         original: np.ndarray) -> Detection:
        who = _who(ref)
        at = f" (frame at {t_s:.1f} s)" if ref.kind == "video" else ""
        details = {**_ref_details(ref, distance), "altered": c.altered, "scale": round(c.scale, 3),
                   "regions": [r.to_dict() for r in c.regions], "reference_t_s": t_s if ref.kind == "video" else None,
                   "threshold": round(c.threshold, 1), "notes": list(c.notes)}
        details["heatmap_sha256"] = self._store_heatmap(original, c.heatmap)
        if c.altered:
            r = c.alterations[0]
            what = "face region" if r.face else "region"
            more = f" and {len(c.alterations) - 1} more region(s)" if len(c.alterations) > 1 else ""
            reason = f"altered copy of reference {ref.label}{at} ({who}): {what} {r.box()} changed{more}"
            return Detection(DETECTOR_NAME, VERSION, "fake", reasons=[reason], details=details)
        extra = [f"{len(c.regions)} overlay(s) at the edge ignored (caption, logo)"] if c.regions else []
        reason = f"matches authentic reference {ref.label}{at} ({who})"
        return Detection(DETECTOR_NAME, VERSION, "real", reasons=[reason, *extra, *c.notes], details=details)

    # -- videos ----------------------------------------------------------------------------
    def _check_video(self, data: bytes) -> Detection | None:
        from detectors.pdq import PDQ_QUALITY_CUTOFF, pdq_from_image
        from detectors.reference_video import compare_video, item_frames, vote_offset
        from PIL import Image

        if self.library.count("video") == 0:
            return None  # only videos are matched against videos: no need to decode this one
        frames = item_frames(data)
        hashes = []
        for t, arr in frames:
            h, q = pdq_from_image(Image.fromarray(arr))
            if q >= PDQ_QUALITY_CUTOFF:
                hashes.append((t, h))
        for cand in self.library.candidates([h for _, h in hashes], set_names=self.set_names,
                                            max_distance=FRAME_DISTANCE):
            ref = self.library.get(cand.reference_id)
            if ref.kind != "video":
                continue
            voted = vote_offset(hashes, self.library.frame_hashes(ref.id), FRAME_DISTANCE)
            if voted is None or voted[2] < max(2, MIN_VIDEO_SUPPORT_SHARE * len(hashes)):
                continue
            try:
                vc = compare_video(frames, self.library.blobs.get(ref.sha256), (voted[0], voted[1]))
            except ReferenceCompareError:
                continue
            details = {**_ref_details(ref, cand.distance), "altered": vc.altered, "offset_s": vc.offset_s,
                       "aligned_frames": vc.aligned, "altered_frames": vc.altered_frames,
                       "segments": [list(s) for s in vc.segments], "regions": [r.to_dict() for r in vc.regions],
                       "frames": vc.frames}
            if vc.heatmap is not None and vc.heat_frame is not None:
                details["heatmap_sha256"] = self._store_heatmap(vc.heat_frame, vc.heatmap)
            when = f"at {vc.offset_s:+.1f} s in the reference"
            if vc.altered:
                r = vc.regions[0] if vc.regions else None
                what = (f"{'face region' if r.face else 'region'} {r.box()}" if r else "the picture")
                spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in vc.segments)
                reason = (f"altered copy of reference {ref.label} ({_who(ref)}): {what} changed in {spans} "
                          f"({vc.altered_frames} of {vc.aligned} aligned frames; clip starts {when})")
                return Detection(DETECTOR_NAME, VERSION, "fake", reasons=[reason], details=details)
            reason = (f"matches authentic reference {ref.label} ({_who(ref)}): {vc.aligned} frames aligned, "
                      f"clip starts {when}, {vc.altered_frames} frame(s) differ locally (no stretch)")
            return Detection(DETECTOR_NAME, VERSION, "real", reasons=[reason], details=details)
        return None

    def _store_heatmap(self, original: np.ndarray, heat: np.ndarray | None) -> str | None:
        if heat is None:
            return None
        return self.library.blobs.put(heatmap_png(original, heat))


def _who(ref: Reference) -> str:
    return ", ".join(x for x in (ref.owner, ref.source_url) if x)


def _ref_details(ref: Reference, distance: int) -> dict[str, Any]:
    return {"reference_id": ref.id, "reference": ref.label, "reference_sha256": ref.sha256,
            "reference_kind": ref.kind, "owner": ref.owner, "source_url": ref.source_url,
            "pdq_distance": distance}


def check_references(store: Any, blobs: Any, items: list[MediaInput], *,
                     set_names: tuple[str, ...] | None = None) -> list[Detection | None]:
    """For `scan`'s database checks: each item's comparison with its authentic original, or None
    when no reference matches (or the library is empty)."""
    library = ReferenceLibrary(store, blobs)
    if library.count() == 0:
        return [None for _ in items]
    checker = ReferenceChecker(library, set_names=set_names)
    return [checker.check(item.data, item.kind) for item in items]
