"""A learned real/fake image classifier from any Hugging Face image-classification checkpoint.

The checkpoint is whatever the operator names (local folder or hub id); nothing about a
particular model is assumed beyond a label meaning "fake". Preprocessing is done here in
batches rather than through `transformers.pipeline`, which handles one image at a time:
JPEGs decode in draft mode close to the model's input size, resizing and normalising
follow the checkpoint's own image-processor settings, and the whole batch goes to the
model as one tensor. Checkpoints whose processor does more than resize / centre-crop /
rescale / normalise fall back to calling their processor on the batch.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.base import Detection, MediaInput
from detectors.hashing import MediaDecodeError, decode_image

if TYPE_CHECKING:
    from PIL import Image

DETECTOR_VERSION = "1.0"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# .bin files a training run leaves beside the weights; they are not the model.
_NOT_WEIGHTS = {"training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin"}
_DTYPES = ("auto", "float32", "bfloat16", "float16")


class ModelLoadError(RuntimeError):
    """The checkpoint could not be found or does not suit this detector."""


@dataclass(frozen=True)
class _Preprocess:
    """The image-processor steps this module reproduces itself."""

    resize_to: tuple[int, int] | None  # (height, width) to warp to
    shortest_edge: int | None  # or: scale so the short side is this long
    resample: int
    crop: tuple[int, int] | None  # (height, width) centre crop after resizing
    rescale: float | None
    mean: np.ndarray | None
    std: np.ndarray | None

    @property
    def draft_size(self) -> tuple[int, int]:
        """The smallest (width, height) a JPEG may be decoded at without losing detail."""
        if self.resize_to is not None:
            return self.resize_to[1], self.resize_to[0]
        side = self.shortest_edge or 0
        return side, side

    def __call__(self, img: "Image.Image") -> np.ndarray:
        if self.resize_to is not None:
            height, width = self.resize_to
            img = img.resize((width, height), self.resample)
        elif self.shortest_edge is not None:
            # torchvision's rule, as the transformers processors apply it: the long side
            # scales by the same factor and is truncated to an int.
            w, h = img.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
            size = (new_short, new_long) if w <= h else (new_long, new_short)
            if size != img.size:
                img = img.resize(size, self.resample)
        if self.crop is not None:
            ch, cw = self.crop
            w, h = img.size
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img.crop((left, top, left + cw, top + ch))
        arr = np.asarray(img, dtype=np.float32)
        if self.rescale is not None:
            arr = arr * np.float32(self.rescale)
        if self.mean is not None and self.std is not None:
            arr = (arr - self.mean) / self.std
        return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _size_field(size: Any, key: str) -> Any:
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _plain_preprocess(processor: Any) -> _Preprocess | None:
    """The processor's steps when they are only resize / crop / rescale / normalise, else None."""
    try:
        from transformers.image_processing_backends import PilBackend, TorchvisionBackend
    except ImportError:  # transformers 4.x: let the processor do its own work
        return None
    cls = type(processor)
    generic = any(
        cls._preprocess is base._preprocess and cls.resize is base.resize
        for base in (PilBackend, TorchvisionBackend)
    )
    if not generic or getattr(processor, "do_pad", False):
        return None
    size = processor.size if getattr(processor, "do_resize", True) else None
    height, width = _size_field(size, "height"), _size_field(size, "width")
    shortest = _size_field(size, "shortest_edge")
    if size is None:
        return None  # no resize means images of mixed sizes: cannot stack, leave to processor
    if height and width:
        resize_to, shortest = (int(height), int(width)), None
    elif shortest and not any(
        _size_field(size, k) for k in ("longest_edge", "max_height", "max_width")
    ):
        resize_to, shortest = None, int(shortest)
    else:
        return None
    crop = None
    if getattr(processor, "do_center_crop", False):
        crop_size = processor.crop_size
        ch, cw = _size_field(crop_size, "height"), _size_field(crop_size, "width")
        if not (ch and cw):
            return None
        crop = (int(ch), int(cw))
        too_small = (
            resize_to[0] < crop[0] or resize_to[1] < crop[1] if resize_to else shortest < max(crop)
        )
        if too_small:
            return None  # the processor would pad; not reproduced here
    elif shortest:
        return None  # aspect-kept sizes differ per image without a crop: cannot stack
    rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else None
    mean = std = None
    if getattr(processor, "do_normalize", False):
        mean = np.asarray(processor.image_mean, dtype=np.float32).reshape(-1)
        std = np.asarray(processor.image_std, dtype=np.float32).reshape(-1)
    resample = processor.resample
    return _Preprocess(
        resize_to=resize_to,
        shortest_edge=shortest,
        resample=2 if resample is None else int(resample),  # BILINEAR, the backends' default
        crop=crop,
        rescale=rescale,
        mean=mean,
        std=std,
    )


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
        threshold: float = 0.5,
        batch_size: int = 32,
        device: str = "auto",
        revision: str | None = None,
        dtype: str = "auto",
    ):
        import torch
        import transformers

        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.model_id = model
        self.threshold = float(threshold)
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
        self.model.to(self.device).eval()
        self.autocast_dtype = self._autocast_dtype(dtype)
        self._prep = _plain_preprocess(self.processor)

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

    def _autocast_dtype(self, dtype: str) -> Any:
        import torch

        if dtype == "float32":
            return None
        if dtype == "auto":
            if self.device.type != "cuda":
                return None  # CPU half precision is slower than fp32 on most CPUs
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
        import torch

        with torch.inference_mode():
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    logits = self.model(pixel_values=pixel_values).logits
            else:
                logits = self.model(pixel_values=pixel_values).logits
            logits = logits.float()
            if self.sigmoid:
                probs = torch.sigmoid(logits[:, self.fake_index])
            else:
                probs = torch.softmax(logits, dim=-1)[:, self.fake_index]
        return probs.cpu().numpy().astype(np.float64)

    def score_images(self, images: list["Image.Image"]) -> np.ndarray:
        """P(fake) per image, in order, computed in batches of `batch_size`."""
        out = np.empty(len(images), dtype=np.float64)
        for start in range(0, len(images), self.batch_size):
            chunk = [img.convert("RGB") for img in images[start : start + self.batch_size]]
            out[start : start + len(chunk)] = self._fake_probs(self._pixels(chunk))
        return out

    def _decode(self, item: MediaInput) -> "Image.Image":
        draft = self._prep.draft_size if self._prep is not None else None
        return decode_image(item.data, draft_size=draft)

    def detect_batch(self, items: list[MediaInput]) -> list[Detection]:
        """One Detection per item; undecodable items and videos get outcome "error"."""
        results: list[Detection | None] = [None] * len(items)
        workers = min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), self.batch_size):
                chunk = list(enumerate(items[start : start + self.batch_size], start))
                # Decoding and resizing release the GIL in Pillow, so threads overlap them.
                prepared = list(pool.map(lambda pair: self._prepare_one(pair[1]), chunk))
                ok = [(i, arr) for (i, _), arr in zip(chunk, prepared) if not isinstance(arr, str)]
                for (i, _), arr in zip(chunk, prepared):
                    if isinstance(arr, str):
                        results[i] = self._error(arr)
                if ok:
                    scores = self._score_prepared([arr for _, arr in ok])
                    for (i, _), score in zip(ok, scores):
                        results[i] = self._scored(float(score))
        return [r for r in results if r is not None]

    def _prepare_one(self, item: MediaInput) -> Any:
        """A preprocessed array (or decoded image on the processor path), or the error reason."""
        if item.kind != "image":
            return f"the image classifier takes images, got a {item.kind} (sample frames first)"
        try:
            img = self._decode(item)
        except MediaDecodeError as exc:
            return str(exc)
        return self._prep(img) if self._prep is not None else img

    def _score_prepared(self, prepared: list[Any]) -> np.ndarray:
        import torch

        if self._prep is None:
            return self._fake_probs(self._pixels(prepared))
        tensor = torch.from_numpy(np.stack(prepared))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return self._fake_probs(tensor)

    # ------------------------------------------------------------------ results

    def _base(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "version": self.version,
            "threshold": self.threshold,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_digest": self.weights_digest,
        }

    def _scored(self, score: float) -> Detection:
        fake = score >= self.threshold
        sign = ">=" if fake else "<"
        return Detection(
            outcome="fake" if fake else "real",
            score=score,
            reasons=[f"classifier {self.model_id} scored {score:.2f} {sign} {self.threshold:.2f}"],
            details={"fake_label": self.fake_label},
            **self._base(),
        )

    def _error(self, reason: str) -> Detection:
        return Detection(outcome="error", reasons=[reason], **self._base())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "weights_digest": self.weights_digest,
            "fake_label": self.fake_label,
            "threshold": self.threshold,
            "device": str(self.device),
            "autocast_dtype": str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "float32",
            "preprocessing": "built-in batched" if self._prep is not None else "checkpoint processor",
        }
