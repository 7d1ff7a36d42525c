"""`deepwatch scan`: analyse files or URLs without a campaign, in this process (no Ray)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.base import Drop, MediaRef


def scan_inputs(
    inputs: list[str], *, model: str | None, threshold: float | None = None, allow_networks: tuple[str, ...] = (),
    vpdq_dir: str | None = None,
) -> Iterator[dict[str, Any]]:
    from detectors.base import MediaInput
    from detectors.hashing import MediaDecodeError, probe_media
    from detectors.pipeline import DetectionPipeline

    # threshold None: the model's calibrated one (else 0.5); the review threshold follows it down.
    pipeline = DetectionPipeline(classifier_model=model, threshold=threshold, review_threshold=0.3)
    fetcher = None
    try:
        for item in inputs:
            result: dict[str, Any] = {"input": item}
            if item.startswith(("http://", "https://")):
                if fetcher is None:
                    from agents.fetch import FetchPolicy, Fetcher

                    fetcher = Fetcher(FetchPolicy(allow_networks=allow_networks))
                got = fetcher.fetch_media(MediaRef(url=item, kind="image"))
                if isinstance(got, Drop):
                    yield {**result, "error": f"{got.reason}: {got.detail}".rstrip(": ")}
                    continue
                data, declared, _ = got
            else:
                try:
                    data, declared = Path(item).read_bytes(), None
                except OSError as exc:
                    yield {**result, "error": f"cannot read file: {exc.strerror or exc}"}
                    continue
            sha = hashlib.sha256(data).hexdigest()
            try:
                info = probe_media(data, declared)
            except MediaDecodeError as exc:
                yield {**result, "sha256": sha, "error": str(exc)}
                continue
            analysis = pipeline.analyse([MediaInput(sha256=sha, kind=info.kind, data=data, mime=info.mime)])[0]
            v = analysis.verdict
            yield {
                **result,
                "sha256": sha,
                "kind": info.kind,
                "mime": info.mime,
                "size": len(data),
                "phash": info.phash,
                "frame_hashes": list(info.frame_hashes),
                "detections": [d.to_dict() for d in analysis.detections],
                "verdict": {"band": v.band, "score": v.score, "reasons": list(v.reasons)},
                **(_vpdq_fields(data, sha, vpdq_dir) if info.kind == "video" else {}),
            }
    finally:
        if fetcher is not None:
            fetcher.close()


def _vpdq_fields(data: bytes, sha: str, vpdq_dir: str | None) -> dict[str, Any]:
    """The video's vPDQ frames, so a result can be banked or matched elsewhere: inline as
    [[t_s, quality, hash], ...], or with `vpdq_dir` as <sha256>.txt in ThreatExchange's format."""
    from detectors.hashing import MediaDecodeError
    from detectors.vpdq import frames_to_rows
    from detectors.vpdq_sampling import dense_vpdq
    from storage.bank_video import format_vpdq

    try:
        frames = dense_vpdq(data)
    except MediaDecodeError as exc:
        return {"vpdq_error": str(exc)}
    if vpdq_dir is None:
        return {"vpdq": frames_to_rows(frames)}  # [t_s, quality, hash] (+ 1 for bar-cropped hashes)
    target = Path(vpdq_dir) / f"{sha}.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    plain = [f for f in frames if not f.cropped]  # ThreatExchange's format holds plain hashes only
    target.write_text(format_vpdq(plain), encoding="ascii")
    return {"vpdq_file": str(target), "vpdq_frames": len(plain)}
