"""`deepwatch detectors`: train, fine-tune and evaluate the learned detectors' models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from orchestrator.cli import DEMO_MODEL, _fail, console, detectors_app


@detectors_app.command("train")
def detectors_train(
    data: Path = typer.Option(..., help="ImageFolder with real/ and fake/ subfolders"),
    out: Path = typer.Option(..., help="Where to save the model (a transformers checkpoint folder)"),
    base: Optional[str] = typer.Option(None, "--base", "--base-model",
                                       help="Checkpoint to fine-tune (hub id or path)"),
    config: Optional[str] = typer.Option(None, "--config",
                                         help="Build a small model from a config instead: small (ResNet, the "
                                              "default without --base) or vit-tiny"),
    fake_label: Optional[str] = typer.Option(None, "--fake-label",
                                             help="Keep the base's own two labels; this one means fake "
                                                  "(default: a new real/fake head)"),
    epochs: Optional[int] = typer.Option(None, min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 3e-3 from scratch, 5e-5 fine-tuning)"),
    seed: int = typer.Option(0, "--seed"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input side of a model built from a config"),
    val_fraction: float = typer.Option(0.15, "--val-fraction", help="Share of each class held out for validation"),
    augment: str = typer.Option("transcode", "--augment",
                                help="transcode (crops, flips, caption bands, rescaling, JPEG q30-95), "
                                     "shift-flip, or none"),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Stop training after this long"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
) -> None:
    """Train a real/fake image classifier on an ImageFolder, or fine-tune a checkpoint on it."""
    from detectors.train import train_classifier

    if base is not None and config is not None:
        _fail("give --base (a checkpoint to fine-tune) or --config (a model to build), not both")
    kwargs: dict[str, Any] = {"base_model": base, "config": config, "fake_label": fake_label, "seed": seed,
                              "val_fraction": val_fraction, "augment": augment, "max_seconds": max_seconds,
                              "learning_rate": lr, "device": device}
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("image_size", image_size)):
        if value is not None:
            kwargs[name] = value
    try:
        metrics = train_classifier(data, out, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    console.print_json(json.dumps(metrics, default=str))
    console.print(f"model saved to {out}; calibrate it with: deepwatch detectors eval --model {out} --data HELD_OUT_SET")


@detectors_app.command("train-demo")
def detectors_train_demo(out: Path = typer.Option(Path(DEMO_MODEL), help="Where to save the demo model")) -> None:
    """Generate the demo training set and train the demo model (skipped if it exists), then
    calibrate it and fit its domain check on a fresh generated set (skipped if done)."""
    from detectors.demo_calibration import calibrate_demo_model
    from detectors.train import ensure_demo_model

    path = ensure_demo_model(out)
    result = calibrate_demo_model(path)
    if result is not None:
        dc = result["domain_check"]
        console.print(f"calibrated on {result['n_real']} real, {result['n_fake']} fake generated images: threshold "
                      f"{result['threshold']:.3f}, FPR bound {result['fpr_upper_bound']:.4f}, domain limit "
                      f"{dc.get('limit', float('nan')):.2f}", highlight=False)
    console.print(f"demo model ready at {path}")


@detectors_app.command("eval")
def detectors_eval(
    model: Path = typer.Option(..., help="Model folder (a transformers checkpoint); results are written into it"),
    data: Path = typer.Option(..., help="Labelled ImageFolder with real/ and fake/ (not the training images)"),
    fake_label: Optional[str] = typer.Option(None, "--fake-label",
                                             help="Label meaning fake (default: what training recorded, else 'fake')"),
    target_fpr: float = typer.Option(0.01, "--target-fpr", help="False-positive rate the threshold is calibrated to"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json instead of a summary"),
    force: bool = typer.Option(False, "--force", help="Write a calibration even from too few real images, "
                               "marked unreliable (the model's score then never makes a finding alone)"),
    source: Optional[str] = typer.Option(None, "--source", help="Where the evaluation data came from, in words "
                                         "(recorded in calibration.json and the model card)"),
) -> None:
    """AUC, EER, TPR at the target FPR and a calibrated threshold, written beside the weights
    (calibration.json, eval.json, reliability.png, MODEL_CARD.md)."""
    from detectors.classifier import ModelLoadError
    from detectors.evaluate import EvaluationError, evaluate_model

    try:
        result = evaluate_model(model, data, fake_label=fake_label, target_fpr=target_fpr,
                                batch_size=batch_size, device=device, force=force, source=source)
    except (EvaluationError, ModelLoadError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(
        f"{result['n_real']} real, {result['n_fake']} fake images"
        + (f" ({result['n_unreadable']} unreadable, left out)" if result["n_unreadable"] else "")
    )
    console.print(f"AUC {result['auc']:.4f}   EER {result['eer']:.4f}   "
                  f"accuracy at threshold {result['accuracy_at_threshold']:.4f}")
    console.print(f"calibrated threshold {result['threshold']!r} for FPR <= {result['target_fpr']:g}: "
                  f"FPR {result['fpr_at_threshold']:.4f}, TPR {result['tpr_at_threshold']:.4f}")
    console.print(f"FPR upper bound (95%) {result['fpr_upper_bound']:.4f}: "
                  + ("reliable" if result["reliable"] else "[red]NOT reliable[/] (written because of --force)"))
    dc = result["domain_check"]
    console.print(f"domain check: limit {dc['limit']:.2f}, {dc['holdout_inside']:.1%} of {dc['n_holdout']} held-out "
                  "images inside" if "limit" in dc else f"domain check: none ({dc.get('error')})", highlight=False)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"wrote calibration.json, domain.npz, eval.json, reliability.png and MODEL_CARD.md to {model}")
