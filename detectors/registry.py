"""Detector classes by registry name, the name each `Detection.detector` carries.

Names are checked unique when this module is imported, so two detectors can never write
results under the same name. The detector modules import their heavy libraries (torch,
c2pa, imwatermark) only when a detector is constructed, so importing this is cheap.
"""
from __future__ import annotations

from typing import Any

from detectors.base import Detector
from detectors.c2pa_check import C2PADetector
from detectors.classifier import HFImageClassifier
from detectors.ensemble import EnsembleClassifier
from detectors.metadata import MetadataProvenanceDetector
from detectors.watermark import InvisibleWatermarkDetector

DETECTORS: dict[str, type] = {}


def register(cls: type) -> type:
    """Add a detector class under its `name`; a second class with the same name is an error."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} has no detector `name`")
    if name in DETECTORS and DETECTORS[name] is not cls:
        raise ValueError(
            f"detector name {name!r} is taken by {DETECTORS[name].__qualname__}; "
            f"{cls.__qualname__} needs another"
        )
    DETECTORS[name] = cls
    return cls


def get(name: str) -> type:
    try:
        return DETECTORS[name]
    except KeyError:
        raise KeyError(f"no detector named {name!r}; known: {sorted(DETECTORS)}") from None


def create(name: str, **kwargs: Any) -> Detector:
    """Construct the detector registered as `name` with its keyword arguments."""
    return get(name)(**kwargs)


for _cls in (HFImageClassifier, C2PADetector, InvisibleWatermarkDetector, MetadataProvenanceDetector, EnsembleClassifier):
    register(_cls)
