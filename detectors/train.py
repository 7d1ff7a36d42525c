"""Train (or fine-tune) the image classifier that the `hf-classifier` detector loads.

The result is an ordinary transformers checkpoint: `save_pretrained` weights and config with
`id2label == {0: "real", 1: "fake"}`, a `preprocessor_config.json` that `AutoImageProcessor` loads,
and `training_metrics.json` next to them, so any code that loads hub checkpoints loads this one.

Without a base model we build a small ResNet (basic blocks, widths 16-128, ~0.3 M parameters)
from `ResNetConfig` rather than a tiny ViT. The demo's manipulation artefacts (blend seams, blocky
upsampling, a foreign-coloured rim) are local texture, which convolutions pick up from ~1,000
images in a dozen epochs on 2 CPU cores. A ViT of the same cost per step (16-px patches at 128 px,
~480 images/s here, about the ResNet's speed) folds each patch into one token and has to learn
locality from data, which a from-scratch run this small does not have.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LABELS = {0: "real", 1: "fake"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Defaults used by ensure_demo_model, sized to finish (data + training) within ~3 minutes on
# a 2-core CPU while reaching the demo's target (recall >= 0.97, <= 1% false positives).
DEMO_N_PER_CLASS = 1000
DEMO_IMAGE_SIZE = 160
DEMO_EPOCHS = 12
DEMO_BATCH_SIZE = 64


@dataclass
class _Dataset:
    paths: list[Path]
    labels: list[int]


def _cpu_threads() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    # Intra-op threads beyond the cores only add contention; cap where returns flatten out.
    return max(1, min(available, 16))


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _scan_image_folder(data_dir: Path) -> _Dataset:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"training data folder {data_dir} does not exist")
    missing = [name for name in LABELS.values() if not (data_dir / name).is_dir()]
    if missing:
        raise ValueError(f"training data folder {data_dir} has no {', '.join(repr(m + '/') for m in missing)} "
                         f"subfolder (expected an ImageFolder with {sorted(LABELS.values())})")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in LABELS.items():
        folder = data_dir / name
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"no images in {folder}")
        paths += files
        labels += [label] * len(files)
    return _Dataset(paths, labels)


def _split(ds: _Dataset, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified split, so both classes appear in validation whatever the class balance."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    labels = np.asarray(ds.labels)
    for label in LABELS:
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) > 1:
            n_val = max(1, n_val)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    if not train:
        raise ValueError("no training images left after the validation split")
    return sorted(train), sorted(val)


def _load_pixels(processor: Any, paths: list[Path], chunk: int = 64) -> "torch.Tensor":
    """Preprocess every image once with the checkpoint's own processor (what inference uses)."""
    import torch
    from PIL import Image

    out = []
    for start in range(0, len(paths), chunk):
        images = []
        for p in paths[start: start + chunk]:
            try:
                with Image.open(p) as im:
                    images.append(im.convert("RGB"))
            except OSError as exc:
                raise ValueError(f"cannot read training image {p}: {exc}") from exc
        out.append(processor(images=images, return_tensors="pt")["pixel_values"].to(torch.float32))
    return torch.cat(out)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _small_model(image_size: int) -> Any:
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3,
        embedding_size=16,
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        hidden_act="relu",
        num_labels=2,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
    )
    return ResNetForImageClassification(config)


def _make_processor(image_size: int) -> Any:
    from transformers import ViTImageProcessor

    # Plain resize (bilinear) + scale to [-1, 1]: what the detector's fast path reproduces.
    return ViTImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=2,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def _load_base(base_model: str) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        processor = AutoImageProcessor.from_pretrained(base_model)
        model = AutoModelForImageClassification.from_pretrained(
            base_model,
            num_labels=2,
            id2label=dict(LABELS),
            label2id={v: k for k, v in LABELS.items()},
            ignore_mismatched_sizes=True,  # the head is replaced: 2 labels, whatever it had
        )
    except OSError as exc:
        raise FileNotFoundError(f"cannot load base model {base_model!r} (a hub id needs network "
                                f"or a cache; a local path must hold a checkpoint): {exc}") from exc
    return model, processor


def _augment(xb: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":
    """Random horizontal flips and shifts of up to 1/8 of the side (reflect-padded).

    The artefacts do not depend on left/right or on where in the frame the edit sits; shifts
    teach that, which matters for edits near the border of the picture.
    """
    import torch
    import torch.nn.functional as F

    flip = torch.rand(len(xb), generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    h, w = xb.shape[-2:]
    pad = max(1, min(h, w) // 8)
    padded = F.pad(xb, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (len(xb), 2), generator=gen)
    return torch.stack([padded[i, :, dy: dy + h, dx: dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def _predict(model: Any, pixels: "torch.Tensor", batch_size: int) -> np.ndarray:
    import torch

    model.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            logits = model(pixel_values=pixels[start: start + batch_size]).logits
            scores.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def train_classifier(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    base_model: str | None = None,
    image_size: int = DEMO_IMAGE_SIZE,
    epochs: int = DEMO_EPOCHS,
    batch_size: int = DEMO_BATCH_SIZE,
    seed: int = 0,
    val_fraction: float = 0.15,
    max_seconds: float | None = None,
    learning_rate: float | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train a real/fake classifier on an ImageFolder (`real/`, `fake/`) and save it to `out_dir`.

    `base_model` (hub id or local path of any AutoModelForImageClassification checkpoint) is
    fine-tuned with a new 2-label head and its own image processor (then `image_size` is not
    used); without it a small ResNet is trained from scratch at `image_size`. Training stops early
    when `max_seconds` is exceeded (the model is still evaluated and saved). Returns the metrics,
    also written to `out_dir/training_metrics.json`.
    """
    import torch

    started = time.monotonic()
    if epochs < 1 or batch_size < 1 or image_size < 16:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, image_size >= 16 "
                         f"(got {epochs}, {batch_size}, {image_size})")
    data = _scan_image_folder(Path(data_dir))
    _seed_everything(seed)
    torch.set_num_threads(_cpu_threads())
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    if base_model is not None:
        model, processor = _load_base(base_model)
        lr = learning_rate or 5e-5
    else:
        model, processor = _small_model(image_size), _make_processor(image_size)
        lr = learning_rate or 3e-3
    model.to(device)

    train_idx, val_idx = _split(data, val_fraction, seed)
    pixels = _load_pixels(processor, data.paths)
    labels = torch.tensor(data.labels, dtype=torch.long)
    x_train, y_train = pixels[train_idx], labels[train_idx]
    x_val, y_val = pixels[val_idx], labels[val_idx]

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup = max(1, total_steps // 20)

    def lr_at(step: int) -> float:
        # Linear warm-up then cosine decay to zero: stable from-scratch training in few epochs.
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    stopped_early = False
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_idx), generator=gen)
        total_loss, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            xb = _augment(xb, gen)
            out = model(pixel_values=xb.to(device), labels=yb.to(device))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            total_loss += out.loss.detach().item() * len(idx)
            seen += len(idx)
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                stopped_early = True
                break
        history.append({"epoch": epoch + 1, "train_loss": total_loss / max(1, seen)})
        if stopped_early:
            break

    model.to("cpu")
    metrics: dict[str, Any] = {
        "base_model": base_model,
        "architecture": type(model).__name__,
        "image_size": image_size if base_model is None else None,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "epochs_completed": len(history),
        "steps": step,
        "stopped_early": stopped_early,
        "seed": seed,
        "learning_rate": lr,
        "batch_size": batch_size,
        "history": history,
    }
    if val_idx:
        scores = _predict(model, x_val, batch_size=128)
        truth = y_val.numpy()
        pred = (scores >= 0.5).astype(int)
        metrics.update({
            "val_accuracy": float((pred == truth).mean()),
            "val_auc": _auc(truth, scores),
            "val_recall_fake": float(pred[truth == 1].mean()) if (truth == 1).any() else None,
            "val_false_positive_rate": float(pred[truth == 0].mean()) if (truth == 0).any() else None,
        })
    else:
        metrics.update({"val_accuracy": None, "val_auc": None})
    metrics["seconds"] = round(time.monotonic() - started, 2)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "training_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # transformers writes the weights 0600 (via a temp file); a checkpoint is meant to be read by
    # other processes and users (workers, containers), like any downloaded model.
    for f in out.iterdir():
        if f.is_file():
            f.chmod(0o644)
    return metrics


def _holds_model(path: Path) -> bool:
    return (
        (path / "config.json").is_file()
        and (path / "preprocessor_config.json").is_file()
        and any((path / name).is_file() for name in WEIGHT_FILES)
    )


def ensure_demo_model(out_dir: str | os.PathLike[str], *, seed: int = 1000) -> Path:
    """Return `out_dir` if it already holds a model; otherwise generate the demo training set
    (seed `seed`) in a temporary folder, train the small model, and move it into `out_dir`.

    Training writes to a sibling temporary folder first, so an interrupted run never leaves a
    half-written model that a later call would take for a finished one.
    """
    from demo_platform.training_data import write_training_set

    out = Path(out_dir)
    if _holds_model(out):
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists, is not empty and holds no model; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deepwatch-train-") as tmp:
        data_dir = write_training_set(Path(tmp) / "data", seed=seed, n_per_class=DEMO_N_PER_CLASS)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            train_classifier(data_dir, staging, image_size=DEMO_IMAGE_SIZE, epochs=DEMO_EPOCHS,
                             batch_size=DEMO_BATCH_SIZE, seed=0)
            staging.chmod(0o755)  # mkdtemp makes it 0700
            if _holds_model(out):
                # Another process finished first: keep its model (same recipe), drop ours.
                shutil.rmtree(staging, ignore_errors=True)
                return out
            if out.exists():
                out.rmdir()  # empty, checked above
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return out
