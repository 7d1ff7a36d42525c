"""Evaluate a classifier checkpoint on a labelled ImageFolder and calibrate its threshold.

Every image is scored by `HFImageClassifier`, the same loading, decoding and preprocessing
code a campaign runs, so the numbers describe the detector as deployed. Written into the
model folder:

* `calibration.json`: the threshold calibrated to a target false-positive rate on the real
  images; `HFImageClassifier` picks it up, so detections carry the threshold and the FPR it
  was calibrated at rather than a bare score. The rule: the lowest threshold at which the 95%
  Clopper-Pearson upper bound on the FPR is within the target (so 1% needs >= 299 real images
  even with none over the threshold). Too few real images: refused, or with `force` written
  with `"reliable": false`, and fusion then never lets the model's score alone make a finding;
* `domain.npz`: the domain check (detectors.domain) fitted on the same images;
* `eval.json`: every metric, the counts, the model's identity and the evaluation set's digest;
* `reliability.png`: the reliability diagram (10 bins);
* `MODEL_CARD.md`: what the model is, how it was trained and measured, and its limits.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detectors import calibration as cal
from detectors.base import MediaInput

CALIBRATION_FILE = "calibration.json"
EVAL_FILE = "eval.json"
RELIABILITY_FILE = "reliability.png"
MODEL_CARD_FILE = "MODEL_CARD.md"
TRAINING_METRICS_FILE = "training_metrics.json"
DEFAULT_TARGET_FPR = 0.01
CLASSES = {"real": 0, "fake": 1}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
# Files are read and scored this many at a time, so a large set never sits in memory at once.
READ_CHUNK = 256


class EvaluationError(ValueError):
    """The model folder or the evaluation set cannot be used; the message says which and why."""


def list_eval_set(data_dir: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """(path, label) for every image under `real/` and `fake/`, sorted by path."""
    root = Path(data_dir)
    if not root.is_dir():
        raise EvaluationError(f"evaluation data folder {root} does not exist")
    missing = [f"{name}/" for name in CLASSES if not (root / name).is_dir()]
    if missing:
        raise EvaluationError(f"evaluation data folder {root} has no {' or '.join(missing)} subfolder "
                              "(expected an ImageFolder with real/ and fake/)")
    items: list[tuple[Path, int]] = []
    for name, label in CLASSES.items():
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise EvaluationError(f"no images in {root / name} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        items += [(p, label) for p in files]
    return items


def eval_set_id(root: Path, digests: list[tuple[str, str]]) -> str:
    """`<absolute folder>@sha256:<hex>`: the hex is over the sorted `<relative path> <file sha256>`
    lines, so a renamed, added, removed or altered file gives another id."""
    lines = "".join(f"{rel} {sha}\n" for rel, sha in sorted(digests))
    return f"{root.resolve()}@sha256:{hashlib.sha256(lines.encode('utf-8')).hexdigest()}"


def _model_folder(model: str | os.PathLike[str]) -> Path:
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise EvaluationError(
            f"model folder {model} does not exist; eval writes its calibration next to the weights, "
            "so it needs a local checkpoint folder (download a hub model to a folder first)"
        )
    if not (folder / "config.json").is_file():
        raise EvaluationError(f"{folder} holds no config.json: not a transformers checkpoint folder")
    return folder


def _training_metrics(folder: Path) -> dict[str, Any] | None:
    path = folder / TRAINING_METRICS_FILE
    try:
        return json.loads(path.read_text("utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _set_aside_invalid_calibration(folder: Path) -> str | None:
    """A calibration.json the detector cannot read would stop the model loading, and so stop
    the evaluation that replaces it: keep it as calibration.json.invalid and say so."""
    from detectors.classifier import ModelLoadError, load_calibration

    try:
        load_calibration(folder)
        return None
    except ModelLoadError as exc:
        bad = folder / CALIBRATION_FILE
        os.replace(bad, bad.with_name(CALIBRATION_FILE + ".invalid"))
        return f"the previous calibration.json was invalid ({exc}); kept as calibration.json.invalid"


def score_eval_set(classifier: Any, items: list[tuple[Path, int]], root: Path) -> dict[str, Any]:
    """Scores, labels, the files that could not be scored (with why), and the set's digests."""
    scores: list[float] = []
    labels: list[int] = []
    used: list[str] = []
    unreadable: list[dict[str, str]] = []
    digests: list[tuple[str, str]] = []
    features: list[np.ndarray] = []
    for start in range(0, len(items), READ_CHUNK):
        chunk = items[start: start + READ_CHUNK]
        inputs = []
        for path, _ in chunk:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            digests.append((path.relative_to(root).as_posix(), sha))
            inputs.append(MediaInput(sha256=sha, kind="image", data=data))
        dets: list[Any] = []
        for start_b in range(0, len(inputs), classifier.batch_size):
            got, feats = classifier.score_prepared_with_features(
                classifier.prepare(inputs[start_b: start_b + classifier.batch_size]))
            dets += got
            if len(feats):
                features.append(feats)
        for (path, label), det in zip(chunk, dets):
            rel = path.relative_to(root).as_posix()
            if det.outcome == "error" or det.score is None:
                unreadable.append({"file": rel, "reason": "; ".join(det.reasons) or "no score"})
                continue
            scores.append(float(det.score))
            labels.append(label)
            used.append(rel)
    return {
        "scores": np.asarray(scores, dtype=np.float64),
        "labels": np.asarray(labels, dtype=np.int64),
        "files": used,
        "unreadable": unreadable,
        "digests": digests,
        "features": np.concatenate(features) if features else np.zeros((0, 0)),
    }


def compute_metrics(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> dict[str, Any]:
    """Every number eval reports, from labels (1 = fake) and P(fake) scores."""
    bounded = cal.calibrate_threshold_bounded(labels, scores, target_fpr)
    calib = bounded.choice
    eer, eer_threshold = cal.equal_error_rate(labels, scores)
    bins = cal.reliability_bins(labels, scores)
    return {
        "n_real": calib.n_real,
        "n_fake": calib.n_fake,
        "auc": cal.auc(labels, scores),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "target_fpr": calib.target_fpr,
        "threshold": calib.threshold,
        "fpr_at_threshold": calib.fpr_at_threshold,
        "tpr_at_threshold": calib.tpr_at_threshold,
        "target_fpr_reached": calib.reached,
        "false_positives": bounded.false_positives,
        "fpr_upper_bound": bounded.fpr_upper_bound,
        "fpr_confidence": bounded.confidence,
        "reliable": bounded.reliable,
        "real_needed": bounded.real_needed,
        "fpr_resolution": calib.fpr_resolution,
        "accuracy_at_threshold": cal.accuracy_at(labels, scores, calib.threshold),
        "accuracy_at_0.5": cal.accuracy_at(labels, scores, 0.5),
        "expected_calibration_error": cal.expected_calibration_error(bins),
        "reliability_bins": [b.to_dict() for b in bins],
    }


def _warnings(metrics: dict[str, Any], unreadable: list[dict[str, str]]) -> list[str]:
    out = []
    if not metrics["target_fpr_reached"]:
        out.append(f"no threshold in [0, 1] reaches FPR {metrics['target_fpr']:g}: real images score 1.0; "
                   f"at threshold 1.0 the FPR is {metrics['fpr_at_threshold']:.4f}")
    if not metrics["reliable"]:
        out.append(f"NOT RELIABLE: the {metrics['fpr_confidence']:.0%} upper bound on the FPR is "
                   f"{metrics['fpr_upper_bound']:.4f} > target {metrics['target_fpr']:g}; a score from this model "
                   f"never makes a finding on its own (evaluate on at least {metrics['real_needed']} real images)")
    if metrics["fpr_resolution"] > metrics["target_fpr"]:
        out.append(f"only {metrics['n_real']} real images: one false positive is an FPR of "
                   f"{metrics['fpr_resolution']:.4f}, coarser than the target {metrics['target_fpr']:g}; "
                   f"the threshold lets no real image through, and the true FPR is uncertain "
                   f"(evaluate on at least {int(np.ceil(10 / metrics['target_fpr']))} real images)")
    if unreadable:
        out.append(f"{len(unreadable)} file(s) could not be scored and were left out (see 'unreadable')")
    return out


def evaluate_model(
    model: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    fake_label: str | None = None,
    target_fpr: float = DEFAULT_TARGET_FPR,
    batch_size: int = 32,
    device: str = "auto",
    revision: str | None = None,
    force: bool = False,
    source: str | None = None,
) -> dict[str, Any]:
    """Score `data_dir` (real/, fake/) with the checkpoint in `model`, calibrate its threshold to
    `target_fpr`, and write calibration.json, eval.json, reliability.png and MODEL_CARD.md into
    the model folder. Returns what eval.json holds.

    `fake_label` defaults to the one training recorded (training_metrics.json), else "fake".
    Too few real images for the target FPR: EvaluationError before anything is written, unless
    `force` (then calibration.json says `"reliable": false`). `source`: where the evaluation
    data came from, in words (recorded; default the folder).
    """
    from detectors.calibration import real_needed
    from detectors.domain import DomainError, fit_domain
    from detectors.classifier import HFImageClassifier

    if not 0.0 < target_fpr < 1.0:
        raise EvaluationError(f"target FPR must be between 0 and 1 (exclusive), got {target_fpr}")
    folder = _model_folder(model)
    root = Path(data_dir)
    items = list_eval_set(root)
    n_real_listed = sum(1 for _, label in items if label == 0)
    needed = real_needed(target_fpr)
    if n_real_listed < needed and not force:
        raise EvaluationError(
            f"{root} has {n_real_listed} real images; bounding the FPR at {target_fpr:g} with 95% confidence "
            f"needs at least {needed} (Clopper-Pearson, none over the threshold). Add real images, raise "
            "--target-fpr, or pass --force to write a calibration marked unreliable")
    training = _training_metrics(folder)
    fake_label = fake_label or (training or {}).get("fake_label") or "fake"
    set_aside = _set_aside_invalid_calibration(folder)
    classifier = HFImageClassifier(str(folder), fake_label=fake_label, batch_size=batch_size,
                                   device=device, revision=revision)
    scored = score_eval_set(classifier, items, root)
    labels, scores = scored["labels"], scored["scores"]
    if not (labels == 0).any() or not (labels == 1).any():
        raise EvaluationError(
            f"after leaving out {len(scored['unreadable'])} unreadable file(s), {root} has "
            f"{int((labels == 0).sum())} readable real and {int((labels == 1).sum())} readable fake images; need both"
        )
    metrics = compute_metrics(labels, scores, target_fpr)
    if not metrics["reliable"] and not force:
        raise EvaluationError(
            f"on {root} the 95% upper bound on the FPR at the best threshold is {metrics['fpr_upper_bound']:.4f}, "
            f"above the target {target_fpr:g} (real images score too high); nothing written. "
            "Pass --force to write a calibration marked unreliable")
    try:
        domain = fit_domain(scored["features"], classifier.weights_digest)
        domain_info: dict[str, Any] = domain.describe()
    except DomainError as exc:
        domain, domain_info = None, {"error": str(exc)}
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    eval_set = eval_set_id(root, scored["digests"])
    result: dict[str, Any] = {
        "model": {
            "model_id": str(folder),
            "model_revision": classifier.model_revision,
            "weights_digest": classifier.weights_digest,
            "fake_label": classifier.fake_label,
            "architecture": type(classifier.model).__name__,
            "detector_version": classifier.version,
        },
        "eval_set": eval_set,
        "created": created,
        "data": _data_record(root, eval_set, metrics, source),
        "domain_check": domain_info,
        **metrics,
        "n_unreadable": len(scored["unreadable"]),
        "unreadable": scored["unreadable"],
        "warnings": _warnings(metrics, scored["unreadable"]) + ([set_aside] if set_aside else []),
    }
    calibration = {
        "threshold": metrics["threshold"],
        "target_fpr": metrics["target_fpr"],
        "fpr_at_threshold": metrics["fpr_at_threshold"],
        "tpr_at_threshold": metrics["tpr_at_threshold"],
        "eval_set": eval_set,
        "created": created,
        "reliable": metrics["reliable"],
        "fpr_upper_bound": metrics["fpr_upper_bound"],
        "fpr_confidence": metrics["fpr_confidence"],
        "rule": "lowest threshold whose one-sided Clopper-Pearson upper bound on the FPR is <= target_fpr",
        "data": result["data"],
    }
    if domain is not None:
        domain.save(folder)
    else:
        (folder / "domain.npz").unlink(missing_ok=True)  # a check fitted for other data must not stay
    _write_json(folder / CALIBRATION_FILE, calibration)
    _write_json(folder / EVAL_FILE, result)
    cal.draw_reliability_diagram(
        [cal.ReliabilityBin(**b) for b in metrics["reliability_bins"]],
        folder / RELIABILITY_FILE,
        title=f"Reliability: {folder.name} on {root.name} ({metrics['n_real']} real, {metrics['n_fake']} fake)",
    )
    (folder / MODEL_CARD_FILE).write_text(render_model_card(result, training), "utf-8")
    for name in (CALIBRATION_FILE, EVAL_FILE, RELIABILITY_FILE, MODEL_CARD_FILE):
        (folder / name).chmod(0o644)  # read by workers and other users, like the weights
    return result


def _data_record(root: Path, eval_set: str, metrics: dict[str, Any], source: str | None) -> dict[str, Any]:
    """What the calibration was measured on: counts per class, where from, and the digest."""
    return {"n_real": metrics["n_real"], "n_fake": metrics["n_fake"], "source": source or str(root.resolve()),
            "digest": eval_set.rsplit("@", 1)[-1]}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Write beside and rename: a classifier loading concurrently never reads half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    os.replace(tmp, path)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_model_card(result: dict[str, Any], training: dict[str, Any] | None) -> str:
    """MODEL_CARD.md: identity, training, metrics, calibrated threshold, limitations."""
    m = result["model"]
    lines = [
        f"# Model card: {Path(m['model_id']).name}",
        "",
        "A real/fake image classifier for deepwatch's `hf-classifier` detector "
        "(a transformers `AutoModelForImageClassification` checkpoint). "
        f"It outputs P(\"{m['fake_label']}\") for an image.",
        "",
        "## Identity",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| architecture | {m['architecture']} |",
        f"| folder | `{m['model_id']}` |",
        f"| revision | {m['model_revision']} |",
        f"| weights digest (sha256 of weight files) | `{m['weights_digest']}` |",
        f"| label meaning fake | `{m['fake_label']}` |",
        f"| scored by | hf-classifier {m['detector_version']} |",
        "",
        "## Training",
        "",
    ]
    if training:
        history = training.get("history") or []
        rows = [
            ("base model", training.get("base_model") or f"none (built from config `{training.get('config') or 'small'}`)"),
            ("training data", training.get("data_dir", "not recorded")),
            ("images (train / validation)", f"{training.get('n_train')} / {training.get('n_val')}"),
            ("epochs completed", training.get("epochs_completed")),
            ("augmentation", training.get("augmentation", "not recorded")),
            ("learning rate, batch size, seed",
             f"{training.get('learning_rate')}, {training.get('batch_size')}, {training.get('seed')}"),
            ("final training loss", _fmt(history[-1]["train_loss"]) if history else "n/a"),
            ("validation AUC / accuracy at 0.5", f"{_fmt(training.get('val_auc'))} / {_fmt(training.get('val_accuracy'))}"),
            ("training time (s)", training.get("seconds")),
        ]
        lines += ["| field | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    else:
        lines.append("Unknown: no training_metrics.json in the model folder (a checkpoint trained elsewhere).")
    lines += [
        "",
        "## Evaluation",
        "",
        f"Evaluation set: `{result['eval_set']}` ({result['n_real']} real, {result['n_fake']} fake images"
        + (f"; {result['n_unreadable']} unreadable file(s) left out" if result["n_unreadable"] else "")
        + f"), evaluated {result['created']}.",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| ROC AUC | {_fmt(result['auc'])} |",
        f"| equal error rate | {_fmt(result['eer'])} |",
        f"| TPR at FPR <= {result['target_fpr']:g} (calibrated threshold) | {_fmt(result['tpr_at_threshold'])} |",
        f"| FPR at the calibrated threshold | {_fmt(result['fpr_at_threshold'])} |",
        f"| accuracy at the calibrated threshold | {_fmt(result['accuracy_at_threshold'])} |",
        f"| accuracy at 0.5 | {_fmt(result['accuracy_at_0.5'])} |",
        f"| expected calibration error (10 bins) | {_fmt(result['expected_calibration_error'])} |",
        "",
        "## Calibrated threshold",
        "",
        f"Measured on {result['data']['n_real']} real and {result['data']['n_fake']} fake images from "
        f"{result['data']['source']} (digest `{result['data']['digest']}`). "
        + (f"**Reliable**: the {result['fpr_confidence']:.0%} upper bound on the FPR is "
           f"{_fmt(result['fpr_upper_bound'])} <= {result['target_fpr']:g}."
           if result["reliable"] else
           f"**Not reliable**: the {result['fpr_confidence']:.0%} upper bound on the FPR is "
           f"{_fmt(result['fpr_upper_bound'])} > {result['target_fpr']:g}; this model's score never makes "
           "a finding on its own."),
        "",
        f"**{result['threshold']!r}**, calibrated so that at most {result['target_fpr']:g} of the real images "
        f"in the evaluation set score at or above it (measured FPR {_fmt(result['fpr_at_threshold'])}, "
        f"TPR {_fmt(result['tpr_at_threshold'])}). It is saved in `calibration.json`; the detector uses it "
        "and records it, with the FPR it was calibrated at, in every detection.",
        "",
        "![reliability diagram](reliability.png)",
        "",
        "## Domain check",
        "",
        ("Items whose pooled features lie farther than the limit (Mahalanobis distance "
         f"{_fmt(result['domain_check'].get('limit'), 2)}, set on {result['domain_check'].get('n_holdout')} held-out "
         f"images, {_fmt(result['domain_check'].get('holdout_inside'), 3)} of them inside) from this evaluation set "
         "are outside the data the model was validated on: their score can ask for review, never make a finding."
         if "limit" in result["domain_check"] else f"None fitted: {result['domain_check'].get('error')}."),
        "",
        "## Limitations",
        "",
        "- The numbers hold for images like the evaluation set. A new generator, another platform's "
        "transcoding, screenshots or heavy edits can shift scores; re-evaluate on data from the "
        "deployment before relying on the threshold.",
        "- The FPR is measured on "
        f"{result['n_real']} real images: its resolution is {_fmt(result['fpr_resolution'])} per image, "
        "and the calibrated threshold is only as good as how representative those images are.",
        "- A score is evidence for review, not proof: a flagged item needs a person's judgement "
        "and, where possible, provenance (C2PA, watermarks, the original source).",
        "- Scores are not probabilities unless the reliability diagram says so (bars on the diagonal).",
    ]
    lines += [f"- {w}" for w in result["warnings"]]
    return "\n".join(lines) + "\n"
