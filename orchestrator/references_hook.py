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
