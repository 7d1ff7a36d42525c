"""Image bytes -> one normalised pixel batch for a classifier, on the CPU or on the GPU.

Two decoders with one interface (`decode(blobs) -> DecodedBatch`):

- `CpuDecoder`: Pillow in threads. A JPEG decodes in draft mode (straight from its DCT data at
  1/2, 1/4 or 1/8 scale, never below the model's input), then the checkpoint's own resize /
  centre-crop / rescale / normalise steps run in numpy. Its output matches what
  `transformers`' processors give to ~1e-6.
- `DeviceDecoder`: JPEGs decode on the GPU (nvJPEG through `torchvision.io.decode_jpeg(...,
  device="cuda")`, a whole batch per call), then resizing (antialiased, like Pillow's filters),
  cropping and normalising run as torch ops on that device, so only compressed bytes cross the
  PCIe bus. Files nvJPEG should not be trusted with (not a JPEG, CMYK, EXIF-rotated, no end
  marker, oversized) are decoded by Pillow and join the batch as uint8 tensors. Without CUDA or
  torchvision it decodes with Pillow and still runs the torch steps: that is how its device
  steps are tested on machines without a GPU.

A bad item never fails the batch: it comes back as an error reason at its position. Nothing
here imports Ray; torch and torchvision are imported only when a decoder is made.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.hashing import MAX_PIXELS, MediaDecodeError, decode_image, sniff_mime

if TYPE_CHECKING:
    from PIL import Image

# Pillow filter numbers (Image.Resampling) the torch resize reproduces, and its mode for each.
_TORCH_MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class Preprocess:
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

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize step, for an input of (width, height)."""
        if self.resize_to is not None:
            return self.resize_to[1], self.resize_to[0]
        if self.shortest_edge is None:
            return width, height
        # torchvision's rule, as the transformers processors apply it: the long side scales by
        # the same factor and is truncated to an int.
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def __call__(self, img: "Image.Image") -> np.ndarray:
        """CHW float32 pixels, exactly as the checkpoint's processor makes them."""
        size = self.resized_size(*img.size)
        if size != img.size or self.resize_to is not None:
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


def plain_preprocess(processor: Any) -> Preprocess | None:
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
    resample = _pillow_filter(processor.resample)
    if resample is None:
        return None
    return Preprocess(
        resize_to=resize_to,
        shortest_edge=shortest,
        resample=resample,
        crop=crop,
        rescale=rescale,
        mean=mean,
        std=std,
    )


_FILTER_NAMES = {"nearest": 0, "nearest_exact": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def _pillow_filter(resample: Any) -> int | None:
    """Pillow's filter number for a processor's `resample` (a Pillow int or enum, or a
    torchvision InterpolationMode under the torchvision backend); None if unknown."""
    if resample is None:
        return 2  # BILINEAR, the backends' default
    try:
        return int(resample)
    except (TypeError, ValueError):
        name = str(getattr(resample, "value", resample)).lower().replace("-", "_")
        return _FILTER_NAMES.get(name)


@dataclass
class DecodedBatch:
    """The decodable items of a batch as one NCHW float32 tensor on the model's device.

    `rows[k]` is the input position of pixel row k; `errors` maps every other input position
    to the reason it could not be decoded.
    """

    pixels: Any  # torch.Tensor, or None when nothing decoded
    rows: list[int]
    errors: dict[int, str] = field(default_factory=dict)


def _workers() -> int:
    # Decoding and resizing release the GIL in Pillow, so threads overlap them.
    return max(1, min(8, os.cpu_count() or 1))


class CpuDecoder:
    """Pillow decode (JPEG draft mode) and numpy preprocessing in threads; tensor to `device`."""

    kind = "cpu"

    def __init__(self, prep: Preprocess, device: Any = "cpu", *, workers: int | None = None):
        import torch

        self.prep = prep
        self.device = torch.device(device)
        self._pool = ThreadPoolExecutor(max_workers=workers or _workers(), thread_name_prefix="decode")

    def _one(self, data: bytes) -> np.ndarray | str:
        try:
            return self.prep(decode_image(data, draft_size=self.prep.draft_size))
        except MediaDecodeError as exc:
            return str(exc)

    def decode(self, blobs: list[bytes]) -> DecodedBatch:
        import torch

        done = list(self._pool.map(self._one, blobs))
        rows = [i for i, arr in enumerate(done) if not isinstance(arr, str)]
        errors = {i: arr for i, arr in enumerate(done) if isinstance(arr, str)}
        if not rows:
            return DecodedBatch(None, [], errors)
        tensor = torch.from_numpy(np.stack([done[i] for i in rows]))
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return DecodedBatch(tensor, rows, errors)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def gpu_jpeg_available(device: Any) -> bool:
    """True when JPEGs can be decoded on `device` (a CUDA device and torchvision with nvJPEG)."""
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except Exception:  # not installed, or built for another torch
        return False
    return True


class DeviceDecoder:
    """nvJPEG on CUDA (Pillow otherwise), then resize / crop / normalise as torch ops on `device`."""

    kind = "gpu"

    def __init__(self, prep: Preprocess, device: Any, *, workers: int | None = None):
        import torch

        if prep.resample not in _TORCH_MODES:
            raise ValueError(
                f"resample filter {prep.resample} has no torch equivalent "
                f"(supported: {sorted(_TORCH_MODES)}); use the CPU decoder"
            )
        self.prep = prep
        self.device = torch.device(device)
        self.nvjpeg = gpu_jpeg_available(self.device)
        self._pool = ThreadPoolExecutor(max_workers=workers or _workers(), thread_name_prefix="decode")
        # rescale and normalise folded into one multiply-add: x * scale + shift.
        scale = np.full(3, self.prep.rescale if self.prep.rescale is not None else 1.0, np.float32)
        shift = np.zeros(3, np.float32)
        if prep.mean is not None and prep.std is not None:
            scale, shift = scale / prep.std, -prep.mean / prep.std
        self._scale = torch.tensor(scale, device=self.device).view(1, 3, 1, 1)
        self._shift = torch.tensor(shift, device=self.device).view(1, 3, 1, 1)

    # -- decoding to uint8 CHW tensors --------------------------------------------------------

    @staticmethod
    def _nvjpeg_ok(data: bytes) -> bool:
        """Only plain upright RGB/grey JPEGs with an end marker go to nvJPEG.

        nvJPEG pads a truncated file with grey instead of failing, ignores EXIF rotation and
        mishandles CMYK; Pillow gives those the right pixels or the right error.
        """
        from PIL import Image

        if sniff_mime(data) != "image/jpeg" or not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
            return False
        try:
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                width, height = img.size
                if img.mode not in ("RGB", "L") or width * height > MAX_PIXELS:
                    return False
                return img.getexif().get(0x0112, 1) == 1
        except Exception:
            return False

    def _pillow(self, data: bytes) -> Any:
        import torch

        try:
            img = decode_image(data, draft_size=self.prep.draft_size)
        except MediaDecodeError as exc:
            return str(exc)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy())

    def _decode_uint8(self, blobs: list[bytes]) -> list[Any]:
        """A CHW uint8 tensor (on the CPU or the device) or an error reason per blob."""
        import torch

        out: list[Any] = [None] * len(blobs)
        gpu = [i for i, ok in enumerate(self._pool.map(self._nvjpeg_ok, blobs)) if ok] if self.nvjpeg else []
        if gpu:
            from torchvision.io import ImageReadMode, decode_jpeg

            raw = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in gpu]
            try:
                decoded = decode_jpeg(raw, mode=ImageReadMode.RGB, device=self.device)
            except Exception:  # torchvision raises RuntimeError; be ready for others
                decoded = []
                for tensor in raw:  # one bad file fails a batched call: find it
                    try:
                        decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=self.device))
                    except Exception:
                        decoded.append(None)  # Pillow will say what is wrong with it
            for i, tensor in zip(gpu, decoded):
                out[i] = tensor
        rest = [i for i, t in enumerate(out) if t is None]
        for i, result in zip(rest, self._pool.map(self._pillow, [blobs[i] for i in rest])):
            out[i] = result
        return out

    # -- preprocessing on the device ----------------------------------------------------------

    def _resize(self, batch: Any) -> Any:
        """NCHW float -> resized and centre-cropped NCHW float, Pillow's filters antialiased."""
        import torch.nn.functional as F

        n, _, h, w = batch.shape
        new_w, new_h = self.prep.resized_size(w, h)
        if (new_h, new_w) != (h, w):
            mode = _TORCH_MODES[self.prep.resample]
            kwargs = {} if mode == "nearest-exact" else {"antialias": True, "align_corners": False}
            batch = F.interpolate(batch, size=(new_h, new_w), mode=mode, **kwargs)
            if mode == "bicubic":
                batch = batch.clamp_(0, 255)  # Pillow clips the cubic filter's overshoot to uint8
        if self.prep.crop is not None:
            ch, cw = self.prep.crop
            top, left = (new_h - ch) // 2, (new_w - cw) // 2
            batch = batch[:, :, top : top + ch, left : left + cw]
        return batch

    def decode(self, blobs: list[bytes]) -> DecodedBatch:
        import torch

        decoded = self._decode_uint8(blobs)
        errors = {i: t for i, t in enumerate(decoded) if isinstance(t, str)}
        rows = [i for i, t in enumerate(decoded) if not isinstance(t, str)]
        if not rows:
            return DecodedBatch(None, [], errors)
        # Images of one size are resized together; a batch of photos has only a few sizes.
        groups: dict[tuple[int, int], list[int]] = {}
        for k, i in enumerate(rows):
            groups.setdefault(tuple(decoded[i].shape[1:]), []).append(k)
        out_h, out_w = self._output_size(decoded[rows[0]].shape)
        pixels = torch.empty((len(rows), 3, out_h, out_w), dtype=torch.float32, device=self.device)
        for ks in groups.values():
            # nvJPEG's tensors are on the device already, Pillow's come from the CPU.
            stack = torch.stack([decoded[rows[k]].to(self.device, non_blocking=True) for k in ks])
            resized = self._resize(stack.float())
            if resized.shape[2:] != pixels.shape[2:]:
                raise ValueError(
                    f"preprocessing gives {tuple(resized.shape[2:])} and {tuple(pixels.shape[2:])} "
                    "pixel grids in one batch; this processor cannot batch on the device"
                )
            if self.prep.resample != 0:
                # Pillow rounds every resized pixel back to uint8 before normalising.
                resized = resized.round_()
            index = torch.tensor(ks, device=self.device)
            pixels.index_copy_(0, index, resized * self._scale + self._shift)
        return DecodedBatch(pixels, rows, errors)

    def _output_size(self, chw: Any) -> tuple[int, int]:
        if self.prep.crop is not None:
            return self.prep.crop
        new_w, new_h = self.prep.resized_size(int(chw[2]), int(chw[1]))
        return new_h, new_w

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def make_decoder(prep: Preprocess, device: Any, mode: str = "auto") -> CpuDecoder | DeviceDecoder:
    """mode "cpu", "gpu" (DeviceDecoder: nvJPEG where CUDA and torchvision allow) or "auto"
    (the GPU path when the model is on a CUDA device that can decode JPEGs, else the CPU path)."""
    if mode not in ("auto", "cpu", "gpu"):
        raise ValueError(f"decode must be one of auto, cpu, gpu; got {mode!r}")
    if mode == "cpu":
        return CpuDecoder(prep, device)
    if mode == "gpu":
        return DeviceDecoder(prep, device)
    if gpu_jpeg_available(device) and prep.resample in _TORCH_MODES:
        return DeviceDecoder(prep, device)
    return CpuDecoder(prep, device)
