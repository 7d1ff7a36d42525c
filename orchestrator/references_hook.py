"""Where campaigns, `scan` and rescans meet the reference library: each analysed item is matched
against the authentic originals and its verdict fused again with the comparison.

Kept out of the detector fleet: matching needs the database and the originals' bytes, which the
driver has; the fleet stays stateless. A library with no references costs one count query.
"""
from __future__ import annotations

from typing import Any

from detectors.base import MediaInput
from detectors.fusion import fuse


def reference_checker(store: Any, blobs: Any, set_names: list[str] | None) -> Any | None:
    """A checker over the named reference sets (all references when None), or None when the
    library holds none of them: nothing to match, so nothing is decoded again."""
    from storage.reference_check import ReferenceChecker
    from storage.references import ReferenceLibrary

    library = ReferenceLibrary(store, blobs)
    if not any(library.list(set_name=name) for name in (set_names or [None])):  # type: ignore[list-item]
        return None
    return ReferenceChecker(library, set_names=tuple(set_names) if set_names else None)


def with_references(checker: Any, analysis: Any, item: MediaInput, review_threshold: float) -> Any:
    """The analysis with the reference comparison added and the verdict fused again; unchanged
    when no reference matches the item."""
    from detectors.pipeline import Analysis

    found = checker.detect_batch([item])[0]
    if found.outcome == "inconclusive":
        return analysis
    detections = [*analysis.detections, found]
    return Analysis(analysis.sha256, detections, fuse(detections, review_threshold))


def rescan_references(store: Any, blobs: Any, *, set_names: list[str] | None = None,
                      limit: int | None = None) -> dict[str, int]:
    """Compare every stored item that has no reference comparison yet with the library (new
    references find the altered copies a campaign already stored). Writes a "reference-library"
    detection per matched item; like `deepwatch rescan`, it leaves the fused verdicts alone: a
    reviewer reads the second opinion on the evidence page. Returns counts."""
    from sqlmodel import select

    from detectors.reference import DETECTOR_NAME
    from orchestrator.rescan import write_detections
    from storage import models as m

    counts = {"media": 0, "already_compared": 0, "matched": 0, "altered": 0, "authentic": 0, "errors": 0}
    checker = reference_checker(store, blobs, set_names)
    if checker is None:
        return counts
    with store.session() as s:
        media = list(s.exec(select(m.Media.sha256, m.Media.kind, m.Media.mime).order_by(m.Media.sha256)).all())
        done = set(s.exec(select(m.Detection.media_sha256).where(m.Detection.detector == DETECTOR_NAME)).all())
    counts["media"] = len(media)
    todo = [row for row in media if row[0] not in done]
    counts["already_compared"] = len(media) - len(todo)
    for sha, kind, mime in todo[:limit] if limit is not None else todo:
        found = checker.detect_batch([MediaInput(sha, kind, blobs.get(sha), mime or "")])[0]
        if found.outcome == "error":
            counts["errors"] += 1
        if found.outcome in ("fake", "real"):
            write_detections(store, [(sha, found)])
            counts["matched"] += 1
            counts["altered" if found.outcome == "fake" else "authentic"] += 1
    return counts
