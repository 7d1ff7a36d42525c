"""`deepwatch scan`: analyse files or URLs without a campaign, in this process (no Ray).

The classifier is the one `orchestrator.model_choice` picks (None: provenance detectors only,
and the result says `"classifier": "not configured"`). With a database, each item is also looked
up by every function in `DATABASE_CHECKS` (the known-fakes bank; later the reference library):
each takes (store, the item's hashes) and returns Detections; one with outcome "fake" makes the
item at least `likely_fake`, its reason first.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.base import Drop, MediaRef


@dataclass
class ScanItem:
    """What a database check gets: the item's identity and hashes."""

    sha256: str
    kind: str
    data: bytes
    phash: str | None
    pdq: str | None
    pdq_quality: int | None
    frames: list[dict[str, Any]] = field(default_factory=list)  # videos: {t_s, phash?, pdq, quality}
    vpdq: list[Any] = field(default_factory=list)  # videos: every frame's vPDQ (detectors.vpdq_sampling)


def check_known_fakes_bank(store: Any, item: ScanItem) -> list[Any]:
    """The known-fakes bank, as a campaign consults it: exact bytes, then PDQ (images, and each
    sampled frame of a video) when the hash is strong enough to match on."""
    from detectors.base import Detection
    from detectors.signals import SIGNALS
    from storage.bank import KnownFakesBank

    cutoff = SIGNALS["pdq"].quality_cutoff or 0
    bank = KnownFakesBank(store)
    matches = bank.match("sha256", item.sha256)
    where = "the exact bytes"
    if not matches and item.pdq and (item.pdq_quality or 0) >= cutoff:
        matches, where = bank.match("pdq", item.pdq), "the PDQ hash"
    for frame in item.frames if not matches else []:
        if frame.get("pdq") and frame.get("quality", 0) >= cutoff:
            matches = bank.match("pdq", frame["pdq"])
            if matches:
                where = f"the frame at {frame['t_s']:.1f} s"
                break
    if not matches:
        return []
    best = matches[0]
    return [Detection(detector="known-fakes-bank", version="1", outcome="fake",
                      reasons=[f"{best.reason} (by {where})"],
                      details={"case_id": best.case_id, "entry_id": best.entry_id, "distance": best.distance,
                               "banked_media_sha256": best.media_sha256})]


def check_video_bank(store: Any, item: ScanItem) -> list[Any]:
    """The known-fakes bank's videos (vPDQ, ThreatExchange's lists): every frame of the scanned
    video hashed and aligned in time with each banked video, so a re-timed or trimmed copy matches."""
    if item.kind != "video":
        return []
    from detectors.base import Detection
    from orchestrator.video_bank_check import check_video_bank as match_banked_videos

    hit = match_banked_videos(store, item.vpdq)
    if hit is None:
        return []
    return [Detection(detector="known-fakes-bank", version="1", outcome="fake", reasons=[hit["reason"]],
                      details={k: v for k, v in hit.items() if k != "reason"})]


# Every check run against the database for each scanned item, in order.
DATABASE_CHECKS: list[Callable[[Any, ScanItem], list[Any]]] = [check_known_fakes_bank, check_video_bank]


def _hashes(data: bytes, kind: str) -> tuple[str | None, int | None, list[dict[str, Any]]]:
    """(PDQ, its quality, per-frame PDQ of a video); hashing failures leave them empty."""
    from detectors.hashing import MediaDecodeError

    try:
        if kind == "image":
            from detectors.pdq import pdq_from_bytes

            pdq, quality = pdq_from_bytes(data)
            return pdq, quality, []
        from detectors.vpdq import vpdq_hashes

        frames = [{"t_s": round(f.t_s, 3), "pdq": f.hash_hex, "quality": f.quality}
                  for f in vpdq_hashes(data, seconds_per_hash=0.5)]
        return None, None, frames
    except (MediaDecodeError, ValueError, OSError):
        return None, None, []


def _read(item: str, fetcher_box: list[Any], allow_networks: tuple[str, ...]) -> tuple[bytes, str | None] | str:
    if item.startswith(("http://", "https://")):
        if not fetcher_box:
            from agents.fetch import FetchPolicy, Fetcher

            fetcher_box.append(Fetcher(FetchPolicy(allow_networks=allow_networks)))
        got = fetcher_box[0].fetch_media(MediaRef(url=item, kind="image"))
        if isinstance(got, Drop):
            return f"{got.reason}: {got.detail}".rstrip(": ")
        data, declared, _ = got
        return data, declared
    path = Path(item)
    if not path.exists():
        return "no such file"
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"


def _apply_database(verdict: Any, found: list[Any]) -> None:
    """A database check's "fake" (a banked known fake) outranks what the detectors fused to."""
    flags = [r for d in found if d.outcome == "fake" for r in d.reasons]
    if flags and verdict.band not in ("confirmed_ai", "likely_fake"):
        verdict.band = "likely_fake"
    verdict.reasons[:0] = flags


def scan_inputs(
    inputs: list[str], *, model: str | None, threshold: float | None = None, allow_networks: tuple[str, ...] = (),
    store: Any = None, model_source: str | None = None, c2pa_trust: Any = None, blobs: Any = None,
    vpdq_dir: str | None = None,
) -> Iterator[dict[str, Any]]:
    """One result dict per input, in order; failures are results with an "error" key."""
    from detectors.base import MediaInput
    from detectors.hashing import MediaDecodeError, probe_media
    from detectors.pipeline import DetectionPipeline
    from orchestrator.model_choice import NOT_CONFIGURED

    # threshold None: the model's calibrated one (else 0.5); the review threshold follows it down.
    pipeline = DetectionPipeline(classifier_model=model, threshold=threshold, review_threshold=0.3,
                                 **({"c2pa_trust": c2pa_trust} if c2pa_trust is not None else {}))
    classifier: Any = NOT_CONFIGURED
    if pipeline.classifier is not None:
        d = pipeline.classifier.describe()
        classifier = {"model_id": d["model_id"], "chosen_by": model_source, "weights_digest": d["weights_digest"],
                      "calibrated": d.get("calibrated", False), "domain_check": d.get("domain_check")}
    ran = [d["name"] for d in pipeline.describe()] + ([c.__name__ for c in DATABASE_CHECKS] if store else [])
    # The reference library needs the originals' bytes too: compared only when the blob store is open.
    references = None
    if store is not None and blobs is not None:
        from orchestrator.references_hook import reference_checker

        references = reference_checker(store, blobs, None)
        ran.append("reference-library" if references is not None else "reference-library (empty)")
    fetcher: list[Any] = []
    try:
        for item in inputs:
            result: dict[str, Any] = {"input": item}
            got = _read(item, fetcher, allow_networks)
            if isinstance(got, str):
                yield {**result, "error": got}
                continue
            data, declared = got
            sha = hashlib.sha256(data).hexdigest()
            try:
                info = probe_media(data, declared)
            except MediaDecodeError as exc:
                yield {**result, "sha256": sha, "error": str(exc)}
                continue
            media = MediaInput(sha256=sha, kind=info.kind, data=data, mime=info.mime)
            analysis = pipeline.analyse([media])[0]
            if references is not None:
                from orchestrator.references_hook import with_references

                analysis = with_references(references, analysis, media, 0.3)
            pdq, quality, frames = _hashes(data, info.kind)
            dense, dense_error = _dense_vpdq(data) if info.kind == "video" else ([], None)
            found: list[Any] = []
            if store is not None:
                scan_item = ScanItem(sha, info.kind, data, info.phash, pdq, quality, frames, dense)
                for check in DATABASE_CHECKS:
                    found += check(store, scan_item)
            v = analysis.verdict
            _apply_database(v, found)
            yield {
                **result,
                "sha256": sha,
                "kind": info.kind,
                "mime": info.mime,
                "size": len(data),
                "phash": info.phash,
                "pdq": pdq,
                "pdq_quality": quality,
                "frame_hashes": list(info.frame_hashes),
                "frame_pdq": frames,
                "classifier": classifier,
                "detectors_run": ran,
                "database": "checked" if store is not None else "not configured",
                "detections": [d.to_dict() for d in analysis.detections + found],
                "verdict": {"band": v.band, "score": v.score, "reasons": list(v.reasons)},
                **(_vpdq_fields(dense, dense_error, sha, vpdq_dir) if info.kind == "video" else {}),
                "c2pa_trust": next((d.details.get("trust") for d in analysis.detections
                                    if d.detector == "c2pa" and d.details.get("trust")), None),
            }
    finally:
        for f in fetcher:
            f.close()


def _dense_vpdq(data: bytes) -> tuple[list[Any], str | None]:
    """Every frame's vPDQ of a video, hashed once for the video bank check and the output."""
    from detectors.hashing import MediaDecodeError
    from detectors.vpdq_sampling import dense_vpdq

    try:
        return dense_vpdq(data), None
    except MediaDecodeError as exc:
        return [], str(exc)


def _vpdq_fields(frames: list[Any], error: str | None, sha: str, vpdq_dir: str | None) -> dict[str, Any]:
    """The video's vPDQ frames, so a result can be banked or matched elsewhere: inline as
    [[t_s, quality, hash], ...], or with `vpdq_dir` as <sha256>.txt in ThreatExchange's format."""
    from detectors.vpdq import frames_to_rows
    from storage.bank_video import format_vpdq

    if error is not None:
        return {"vpdq_error": error}
    if vpdq_dir is None:
        return {"vpdq": frames_to_rows(frames)}  # [t_s, quality, hash] (+ 1 for bar-cropped hashes)
    target = Path(vpdq_dir) / f"{sha}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    plain = [f for f in frames if not f.cropped]  # ThreatExchange's format holds plain hashes only
    target.write_text(format_vpdq(plain), encoding="ascii")
    return {"vpdq_file": str(target), "vpdq_frames": len(plain)}
