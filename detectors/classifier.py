"""A learned real/fake image classifier from any Hugging Face image-classification checkpoint.

The checkpoint is whatever the operator names (local folder or hub id); nothing about a
particular model is assumed beyond a label meaning "fake". Preprocessing is done here in
batches rather than through `transformers.pipeline`, which handles one image at a time:
`detectors.decode` turns a batch of image bytes into one pixel tensor following the
checkpoint's own image-processor settings (Pillow in draft mode on the CPU, or nvJPEG and torch
ops on the GPU), and the next batch is decoded while the model runs the current one.
Checkpoints whose processor does more than resize / centre-crop / rescale / normalise fall
back to calling their processor on the batch.

The decision threshold comes from the caller, else from the `calibration.json` an evaluation
run left in the model folder (`deepwatch detectors eval`), else 0.5; every result says which,
and at what false-positive rate a calibrated threshold was set.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.base import Detection, MediaInput, learned_identity
from detectors.decode import DecodedBatch, make_decoder, plain_preprocess
from detectors.hashing import MediaDecodeError, decode_image

if TYPE_CHECKING:
    from PIL import Image

DETECTOR_VERSION = "1.0"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# .bin files a training run leaves beside the weights; they are not the model.
_NOT_WEIGHTS = {"training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin"}
_DTYPES = ("auto", "float32", "bfloat16", "float16")
_DECODE_MODES = ("auto", "cpu", "gpu")
DEFAULT_THRESHOLD = 0.5
CALIBRATION_FILE = "calibration.json"


class ModelLoadError(RuntimeError):
    """The checkpoint could not be found or does not suit this detector."""


@dataclass(frozen=True)
class Calibration:
    """A model's calibrated threshold, as `calibration.json` in its folder records it."""

    threshold: float
    target_fpr: float
    fpr_at_threshold: float
    tpr_at_threshold: float
    eval_set: str
    created: str
    # The FPR's upper confidence bound is within the target (detectors.calibration); files
    # written before that rule existed have no such field and count as not reliable.
    reliable: bool = False
    fpr_upper_bound: float | None = None


def load_calibration(model_dir: Path) -> Calibration | None:
    """The folder's calibration.json, None when there is none; a malformed file is an error
    that names the file and the field (a model must not run at a threshold nobody chose)."""
    path = model_dir / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for name in ("threshold", "target_fpr", "fpr_at_threshold", "tpr_at_threshold"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelLoadError(f"{path}: {name!r} must be a number, got {value!r}")
        if not 0.0 <= value <= 1.0:
            raise ModelLoadError(f"{path}: {name!r} must be in [0, 1], got {value}")
        values[name] = float(value)
    for name in ("eval_set", "created"):
        value = raw.get(name)
        if not isinstance(value, str):
            raise ModelLoadError(f"{path}: {name!r} must be a string, got {value!r}")
        values[name] = value
    values["reliable"] = raw.get("reliable") is True
    bound = raw.get("fpr_upper_bound")
    values["fpr_upper_bound"] = float(bound) if isinstance(bound, (int, float)) and not isinstance(bound, bool) else None
    return Calibration(**values)


def weights_digest(model_dir: Path) -> str:
    """sha256 over the weight files' bytes, concatenated in sorted file-name order.

    The same as `cat $(ls *.safetensors | sort) | sha256sum` in the checkpoint folder.
    Safetensors files are what transformers loads when present, so .bin files count only
    when there are none.
    """
    files = sorted(p for p in model_dir.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    chosen = safetensors or [p for p in files if p.name not in _NOT_WEIGHTS]
    if not chosen:
        raise ModelLoadError(f"no weight files (*.safetensors, *.bin) in {model_dir}")
    digest = hashlib.sha256()
    for path in chosen:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _looks_like_path(model: str) -> bool:
    """Hub ids are "name" or "org/name"; anything else that is missing is a missing folder."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


class HFImageClassifier:
    """Scores images with P(fake) from an `AutoModelForImageClassification` checkpoint."""

    name = "hf-classifier"
    kinds = ("image",)

    def __init__(
        self,
        model: str,
        *,
        fake_label: str = "fake",
        threshold: float | None = None,
        batch_size: int = 32,
        device: str = "auto",
        revision: str | None = None,
        dtype: str = "auto",
        decode: str = "auto",
    ):
        """`threshold` None: the model folder's calibration.json decides, else 0.5.
        `dtype`: auto (bfloat16 on CUDA, fp16 where bf16 is missing; float32 on CPU),
        float32, bfloat16 or float16. `decode`: auto (JPEGs decoded on the GPU when the model is
        on one), cpu or gpu (see detectors.decode)."""
        import torch
        import transformers

        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if decode not in _DECODE_MODES:
            raise ValueError(f"decode must be one of {_DECODE_MODES}, got {decode!r}")
        self.model_id = model
        self.batch_size = batch_size
        self.version = f"{DETECTOR_VERSION}+transformers-{transformers.__version__}+torch-{torch.__version__}"
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )

        self.model, self.processor, model_dir, commit = self._load(model, revision)
        config = self.model.config
        labels = {int(i): str(lbl) for i, lbl in config.id2label.items()}
        matches = [i for i, lbl in labels.items() if lbl.lower() == fake_label.lower()]
        if not matches:
            raise ModelLoadError(
                f"model {model!r} has no label {fake_label!r}; its labels are "
                f"{sorted(labels.values())} (pass fake_label=one of them)"
            )
        self.fake_index = matches[0]
        self.fake_label = labels[self.fake_index]
        # One logit, or labels scored independently: each is its own yes/no (sigmoid).
        self.sigmoid = config.num_labels == 1 or config.problem_type == "multi_label_classification"
        self.model_revision = commit or revision or "local"
        self.weights_digest = weights_digest(model_dir)
        self.calibration = load_calibration(model_dir)
        self.model_dir = model_dir
        self.domain, self.domain_note = self._load_domain(model_dir)
        if threshold is not None:
            self.threshold, self.threshold_source = float(threshold), "configured"
        elif self.calibration is not None:
            self.threshold, self.threshold_source = self.calibration.threshold, "calibration"
        else:
            self.threshold, self.threshold_source = DEFAULT_THRESHOLD, "configured"
        # Half precision means half-precision weights (what `pipeline(dtype=...)` does too):
        # autocast would re-cast every weight on every batch.
        self.dtype = self._pick_dtype(dtype)
        self.model.to(self.device, dtype=self.dtype).eval()
        self._prep = plain_preprocess(self.processor)
        # Checkpoints the module cannot reproduce are decoded by Pillow and their processor.
        self.decoder = make_decoder(self._prep, self.device, decode) if self._prep is not None else None
        self._threads = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="clf")

    # ------------------------------------------------------------------ loading

    @staticmethod
    def _load(model: str, revision: str | None) -> tuple[Any, Any, Path, str | None]:
        """(model, image processor, folder holding the weights, hub commit or None)."""
        from transformers import AutoImageProcessor, AutoModelForImageClassification
        from transformers.utils import logging as hf_logging

        local = Path(model).expanduser()
        is_local = local.is_dir()
        if is_local:
            source = str(local.resolve())
        elif local.exists():
            raise ModelLoadError(f"model path {model!r} is a file; give the checkpoint folder")
        elif _looks_like_path(model):
            raise ModelLoadError(f"model folder {model!r} does not exist")
        else:
            source = model
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        try:
            # The Auto classes read HF_HUB_OFFLINE themselves; passing it keeps the intent plain.
            kwargs: dict[str, Any] = {"revision": revision, "local_files_only": offline}
            # Loading progress bars would land in JSON output and worker logs.
            hf_logging.disable_progress_bar()
            net = AutoModelForImageClassification.from_pretrained(source, **kwargs)
            processor = AutoImageProcessor.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            where = "local folder" if is_local else (
                "hub id (offline: HF_HUB_OFFLINE is set, so only the local cache is searched)"
                if offline
                else "hub id"
            )
            raise ModelLoadError(
                f"cannot load image-classification model {model!r} as a {where}: {exc}"
            ) from exc
        if is_local:
            return net, processor, Path(source), None
        from huggingface_hub import snapshot_download

        commit = getattr(net.config, "_commit_hash", None) or revision
        try:
            # from_pretrained just fetched the files into the cache: find that snapshot folder.
            snapshot = snapshot_download(model, revision=commit, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"model {model!r} loaded but its cached files were not found: {exc}") from exc
        # Hub snapshots live in .../snapshots/<commit sha>: the exact revision that was loaded.
        folder = Path(snapshot)
        return net, processor, folder, folder.name

    def _load_domain(self, model_dir: Path) -> tuple[Any, str | None]:
        from detectors.domain import DomainError, load_domain

        try:
            return load_domain(model_dir, self.weights_digest)
        except DomainError as exc:
            raise ModelLoadError(str(exc)) from exc

    def _pick_dtype(self, dtype: str) -> Any:
        import torch

        if dtype == "auto":
            if self.device.type != "cuda":
                # fp32 on CPUs: bf16 is faster only where the CPU has bf16 units (AVX512-BF16,
                # AMX), and its scores move by ~1e-2; ask for it with dtype="bfloat16".
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return getattr(torch, dtype)

    # ------------------------------------------------------------------ scoring

    def _pixels(self, images: list["Image.Image"]) -> Any:
        import torch

        if self._prep is not None:
            batch = np.stack([self._prep(img) for img in images])
            tensor = torch.from_numpy(batch)
        else:
            tensor = self.processor(images=images, return_tensors="pt")["pixel_values"]
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _fake_probs(self, pixel_values: Any) -> np.ndarray:
        return self.forward(pixel_values)[0]

    def forward(self, pixel_values: Any, features: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(P(fake), pooled hidden states) per row: the features the domain check reads. `features`
        None: only when the model has a domain check (else an empty array, and no hidden states
        are kept: they cost memory on large models)."""
        import torch

        from detectors.domain import pool_features

        want = self.domain is not None if features is None else features
        with torch.inference_mode():
            out = self.model(pixel_values=pixel_values.to(self.dtype), output_hidden_states=want)
            logits = out.logits.float()
            if self.sigmoid:
                probs = torch.sigmoid(logits[:, self.fake_index])
            else:
                probs = torch.softmax(logits, dim=-1)[:, self.fake_index]
            feats = pool_features(out.hidden_states) if want else np.zeros((len(probs), 0))
        return probs.cpu().numpy().astype(np.float64), feats

    def score_images(self, images: list["Image.Image"]) -> np.ndarray:
        """P(fake) per decoded image (video frames), in order, in batches of `batch_size`."""
        return self.score_images_with_domain(images)[0]

    def score_images_with_domain(self, images: list["Image.Image"]) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
        """P(fake) and the domain check (None without one) per decoded image."""
        out = np.empty(len(images), dtype=np.float64)
        domains: list[dict[str, Any] | None] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [img.convert("RGB") for img in images[start : start + self.batch_size]]
            probs, feats = self.forward(self._pixels(chunk))
            out[start : start + len(chunk)] = probs
            domains += self.domain_of(feats)
        return out, domains

    def domain_of(self, features: np.ndarray) -> list[dict[str, Any] | None]:
        if self.domain is None:
            return [None] * len(features)
        return [self.domain.assess(d) for d in self.domain.distances(features)]

    def _decode(self, item: MediaInput) -> "Image.Image":
        draft = self._prep.draft_size if self._prep is not None else None
        return decode_image(item.data, draft_size=draft)

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        """One Detection per item; undecodable items and videos get outcome "error".

        Items go through the model `batch_size` at a time; while the model scores one batch,
        a helper thread decodes the next (decoding is Pillow or nvJPEG work that does not hold
        the GIL for long), so the model is not left waiting on the decoder.
        """
        chunks = [items[s : s + self.batch_size] for s in range(0, len(items), self.batch_size)]
        out: list[Detection] = []
        if not chunks:
            return out
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as ahead:
            upcoming = ahead.submit(self.prepare, chunks[0])
            for k in range(len(chunks)):
                prepared = upcoming.result()
                if k + 1 < len(chunks):
                    upcoming = ahead.submit(self.prepare, chunks[k + 1])
                out.extend(self.score_prepared(prepared))
        return out

    def prepare(self, items: list[MediaInput]) -> DecodedBatch:
        """Decode one model batch: pixels on the model's device plus a reason per bad item."""
        import torch

        errors = {
            i: f"the image classifier takes images, got a {item.kind} (sample frames first)"
            for i, item in enumerate(items)
            if item.kind != "image"
        }
        wanted = [i for i in range(len(items)) if i not in errors]
        if self.decoder is not None:
            batch = self.decoder.decode([items[i].data for i in wanted])
            rows = [wanted[k] for k in batch.rows]
            errors.update({wanted[k]: reason for k, reason in batch.errors.items()})
            return DecodedBatch(batch.pixels, rows, errors)
        decoded = list(self._threads.map(self._decode_or_reason, [items[i] for i in wanted]))
        rows = [i for i, img in zip(wanted, decoded) if not isinstance(img, str)]
        errors.update({i: img for i, img in zip(wanted, decoded) if isinstance(img, str)})
        if not rows:
            return DecodedBatch(None, [], errors)
        images = [img for img in decoded if not isinstance(img, str)]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        return DecodedBatch(torch.as_tensor(pixels), rows, errors)

    def _decode_or_reason(self, item: MediaInput) -> Any:
        try:
            return self._decode(item)
        except MediaDecodeError as exc:
            return str(exc)

    def score_prepared(self, batch: DecodedBatch) -> list[Detection]:
        """The model over a prepared batch: one Detection per input position, in order."""
        n = len(batch.rows) + len(batch.errors)
        results: list[Detection | None] = [None] * n
        for i, reason in batch.errors.items():
            results[i] = self._error(reason)
        if batch.rows:
            probs, feats = self.forward(batch.pixels)
            for i, score, domain in zip(batch.rows, probs, self.domain_of(feats)):
                results[i] = self._scored(float(score), domain)
        return [r for r in results if r is not None]

    def score_prepared_with_features(self, batch: DecodedBatch) -> tuple[list[Detection], np.ndarray]:
        """Like score_prepared, plus the pooled features of `batch.rows` (for fitting the domain check)."""
        n = len(batch.rows) + len(batch.errors)
        results: list[Detection | None] = [None] * n
        for i, reason in batch.errors.items():
            results[i] = self._error(reason)
        feats = np.zeros((0, 0))
        if batch.rows:
            probs, feats = self.forward(batch.pixels, features=True)
            for i, score, domain in zip(batch.rows, probs, self.domain_of(feats)):
                results[i] = self._scored(float(score), domain)
        return [r for r in results if r is not None], feats

    # ------------------------------------------------------------------ results

    def _base(self) -> dict[str, Any]:
        return learned_identity(self)

    def threshold_details(self) -> dict[str, Any]:
        """What the threshold is and where it came from: never a bare score."""
        calibrated = self.threshold_source == "calibration" and self.calibration is not None
        return {
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "calibrated_fpr": self.calibration.target_fpr if calibrated else None,
            # Fusion lets a score make "likely_fake" only from a reliably calibrated model.
            "calibrated": self.calibration is not None and self.calibration.reliable,
        }

    def domain_details(self, domain: dict[str, Any] | None) -> dict[str, Any]:
        """The `domain` entry of a detection; without a fitted check, why there is none."""
        return {"domain": domain if domain is not None else {"inside": None, "note": self.domain_note}}

    def _scored(self, score: float, domain: dict[str, Any] | None = None) -> Detection:
        fake = score >= self.threshold
        sign = ">=" if fake else "<"
        reason = f"classifier {self.model_id} scored {score:.2f} {sign} {self.threshold:.2f}"
        if self.threshold_source == "calibration" and self.calibration is not None:
            reason += f" (threshold calibrated for a {self.calibration.target_fpr:.1%} false-positive rate)"
        from detectors.domain import domain_reason

        details = self.domain_details(domain)
        return Detection(
            outcome="fake" if fake else "real",
            score=score,
            reasons=[reason] + [r for r in [domain_reason(details["domain"])] if r],
            details={"fake_label": self.fake_label, **self.threshold_details(), **details},
            **self._base(),
        )

    def _error(self, reason: str) -> Detection:
        return Detection(outcome="error", reasons=[reason], details=self.threshold_details(), **self._base())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_digest": self.weights_digest,
            "fake_label": self.fake_label,
            **self.threshold_details(),
            "domain_check": self.domain.describe() if self.domain is not None else self.domain_note,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "preprocessing": "built-in batched" if self._prep is not None else "checkpoint processor",
            "decode": self.decoder.kind if self.decoder is not None else "cpu",
        }
