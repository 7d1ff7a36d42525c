"""Calibrate the demo model and fit its domain check on the demo world's own kind of images.

`make demo` trains the demo model on rendered scenes (demo_platform.training_data). Its score means
something only for images like those, so `detectors train-demo` also evaluates it on a fresh set
from the same generators (another seed, never trained on) with the usual `detectors eval` code:
a threshold whose FPR bound holds, and a domain check that real photographs fall outside of.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from detectors.calibration import real_needed
from detectors.classifier import load_calibration
from detectors.domain import DOMAIN_FILE

DEMO_CALIBRATION_SEED = 2000  # training uses 1000; the demo world is built from its own seed
DEMO_TARGET_FPR = 0.01
# Enough real images for the 1% bound (299) with room for a few unreadable files.
DEMO_CALIBRATION_PER_CLASS = real_needed(DEMO_TARGET_FPR) + 21


def is_calibrated(model_dir: Path) -> bool:
    cal = load_calibration(model_dir)
    return cal is not None and cal.reliable and (model_dir / DOMAIN_FILE).is_file()


def calibrate_demo_model(model_dir: str | os.PathLike[str], *, n_per_class: int = DEMO_CALIBRATION_PER_CLASS,
                         seed: int = DEMO_CALIBRATION_SEED, force: bool = False) -> dict[str, Any] | None:
    """Evaluate the demo model on a generated set and write its calibration and domain check;
    None when it already has a reliable calibration and a domain check (and not `force`)."""
    from demo_platform.training_data import write_training_set
    from detectors.evaluate import evaluate_model

    folder = Path(model_dir)
    if not force and is_calibrated(folder):
        return None
    with tempfile.TemporaryDirectory(prefix="deepwatch-calib-") as tmp:
        data = write_training_set(Path(tmp) / "calibration", seed=seed, n_per_class=n_per_class)
        return evaluate_model(folder, data, target_fpr=DEMO_TARGET_FPR, device="cpu",
                              source=f"demo_platform.training_data generators, seed {seed}, {n_per_class} per class")
