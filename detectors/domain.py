"""Is an item like the data a classifier was validated on? A domain check from the model's own features.

A learned score means something only for inputs like those its threshold was calibrated on: a
demo model trained on rendered scenes scores real photographs at 1.00 just as readily as its
fakes. So every calibrated model carries this check, fitted on the same data `detectors eval`
calibrated it on:

* features: the model's own hidden states (`pool_features`): for CNNs every stage's channel
  means and spreads (what the score is computed from, and the low-level statistics that set a
  camera photo apart from the images the model knows), for ViTs the last layer's mean token;
* score: the Mahalanobis distance of an item's features from the calibration data's mean, under a
  Ledoit-Wolf shrunk covariance (a plain sample covariance of a few hundred 128-d vectors is
  near-singular, and its inverse would blow up along directions the data barely spans);
* limit: a split-conformal quantile. The covariance is fitted on one part of the calibration items
  and the limit is the ceil((n+1) * 0.99)-th smallest distance among the n held-out items, so on
  new items from the same distribution at least 99% fall inside (>= 95% is what is required).

Saved beside the weights as `domain.npz` with the weights digest it was fitted for: a retrained
model does not inherit an old check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DOMAIN_FILE = "domain.npz"
# Names how features are pooled: a check saved under another recipe is refitted, never misread.
FEATURES = "stages-mean-std/v1"
DEFAULT_COVERAGE = 0.975
DEFAULT_HOLDOUT = 0.3
MAX_DIM = 2048  # features kept per item (the covariance is MAX_DIM squared)
MIN_ITEMS = 40  # below this neither the covariance nor the limit means anything


class DomainError(ValueError):
    """The domain check cannot be fitted or loaded; the message says why."""


def _pool_one(hidden: Any, with_spread: bool) -> np.ndarray:
    # Pooled where the tensor lives (on the GPU, only (B, C) vectors cross to the host).
    if hasattr(hidden, "detach"):
        import torch

        t = hidden.detach().float()
        if t.ndim == 4:  # (B, C, H, W): per-channel mean and, for texture, spatial spread
            parts = [t.mean(dim=(2, 3))] + ([t.std(dim=(2, 3), correction=0)] if with_spread else [])
            t = torch.cat(parts, dim=1)
        elif t.ndim == 3:  # (B, T, D): the mean token
            t = t.mean(dim=1)
        elif t.ndim != 2:
            raise DomainError(f"cannot pool a hidden state of shape {tuple(t.shape)}")
        return t.cpu().numpy().astype(np.float64)
    arr = np.asarray(hidden, dtype=np.float64)
    if arr.ndim == 4:
        return np.concatenate([arr.mean(axis=(2, 3))] + ([arr.std(axis=(2, 3))] if with_spread else []), axis=1)
    if arr.ndim == 3:
        return arr.mean(axis=1)
    if arr.ndim == 2:
        return arr
    raise DomainError(f"cannot pool a hidden state of shape {arr.shape}")


def pool_features(hidden_states: Any) -> np.ndarray:
    """(batch, dim) features from a model's hidden states, last layer first.

    For convolutional stages (B, C, H, W) every stage counts, each as its channel means and
    spatial standard deviations: the early stages hold the texture and noise statistics that
    tell a camera photo from a rendered scene, which the last stage (trained only to separate
    real from fake within the training data) has largely discarded. Layers are added from the
    last backwards while the total stays within MAX_DIM, so a large model keeps its deepest ones
    and the covariance stays invertible and cheap. Token sequences (ViTs) give the last layer's
    mean token. A single tensor is pooled as it is.
    """
    if not isinstance(hidden_states, (tuple, list)):
        return _pool_one(hidden_states, with_spread=False)
    layers = list(hidden_states)[::-1]
    if getattr(layers[0], "ndim", 0) != 4:
        return _pool_one(layers[0], with_spread=False)
    parts: list[np.ndarray] = []
    dim = 0
    for layer in layers:
        width = 2 * int(layer.shape[1])
        if parts and dim + width > MAX_DIM:
            break
        pooled = _pool_one(layer, with_spread=dim + width <= MAX_DIM)
        parts.append(pooled)
        dim += pooled.shape[1]
    return np.concatenate(parts, axis=1)


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf (2004) shrinkage of the sample covariance towards mu * I, with the
    data-driven shrinkage intensity that minimises the expected Frobenius loss."""
    n, p = x.shape
    xc = x - x.mean(axis=0)
    sample = xc.T @ xc / n
    mu = np.trace(sample) / p
    target = mu * np.eye(p)
    d2 = np.sum((sample - target) ** 2)
    # b2: how far each observation's outer product strays from the sample covariance.
    sq = xc ** 2
    b2 = (np.sum(sq.T @ sq) / n - np.sum(sample ** 2)) / n
    shrink = 0.0 if d2 == 0 else min(max(b2 / d2, 0.0), 1.0)
    return shrink * target + (1.0 - shrink) * sample


@dataclass
class DomainCheck:
    mean: np.ndarray
    precision: np.ndarray  # inverse of the shrunk covariance
    limit: float
    coverage: float  # the conformal level the limit was set at
    holdout_inside: float  # share of the held-out items inside the limit (measured)
    n_fit: int
    n_holdout: int
    weights_digest: str

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def distances(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise DomainError(f"features of shape {features.shape} do not fit a domain check of dimension {self.dim}")
        d = features - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def assess(self, distance: float) -> dict[str, Any]:
        """What a detection records: the distance, the limit and whether the item is inside."""
        return {"distance": round(float(distance), 3), "limit": round(self.limit, 3),
                "inside": bool(distance <= self.limit)}

    def describe(self) -> dict[str, Any]:
        return {"method": f"Mahalanobis distance of pooled hidden states ({FEATURES}; Ledoit-Wolf covariance)",
                "limit": round(self.limit, 3), "coverage": self.coverage, "holdout_inside": self.holdout_inside,
                "n_fit": self.n_fit, "n_holdout": self.n_holdout, "dim": self.dim}

    def save(self, folder: Path) -> Path:
        path = Path(folder) / DOMAIN_FILE
        tmp = path.with_name(".domain.tmp.npz")
        np.savez(tmp, mean=self.mean, precision=self.precision, limit=self.limit, coverage=self.coverage,
                 holdout_inside=self.holdout_inside, n_fit=self.n_fit, n_holdout=self.n_holdout,
                 weights_digest=np.array(self.weights_digest), features=np.array(FEATURES))
        tmp.replace(path)
        path.chmod(0o644)
        return path


def fit_domain(features: np.ndarray, weights_digest: str, *, coverage: float = DEFAULT_COVERAGE,
               holdout: float = DEFAULT_HOLDOUT, seed: int = 0) -> DomainCheck:
    """Fit mean and shrunk covariance on (1 - holdout) of the items, and the limit on the rest."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise DomainError(f"features must be (items, dim), got shape {features.shape}")
    n = features.shape[0]
    if n < MIN_ITEMS:
        raise DomainError(f"a domain check needs at least {MIN_ITEMS} scored items, got {n}")
    if not 0.5 <= coverage < 1.0 or not 0.0 < holdout < 1.0:
        raise DomainError(f"need 0.5 <= coverage < 1 and 0 < holdout < 1, got {coverage} and {holdout}")
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(int(round(n * holdout)), 20)
    held, fit = features[order[:n_hold]], features[order[n_hold:]]
    mean = fit.mean(axis=0)
    cov = ledoit_wolf(fit)
    try:
        precision = np.linalg.inv(cov)
    except np.linalg.LinAlgError as exc:
        raise DomainError(f"the features' covariance cannot be inverted ({exc}): are they all equal?") from exc
    check = DomainCheck(mean=mean, precision=precision, limit=math.inf, coverage=coverage, holdout_inside=1.0,
                        n_fit=len(fit), n_holdout=n_hold, weights_digest=weights_digest)
    dist = np.sort(check.distances(held))
    # Split-conformal: the k-th smallest of n held-out scores bounds a new one with prob >= k/(n+1).
    k = math.ceil((n_hold + 1) * coverage)
    check.limit = float(dist[min(k, n_hold) - 1])
    check.holdout_inside = float((dist <= check.limit).mean())
    return check


def load_domain(folder: Path, weights_digest: str) -> tuple[DomainCheck | None, str | None]:
    """(check, None), or (None, why there is none) for a model folder."""
    path = Path(folder) / DOMAIN_FILE
    if not path.is_file():
        return None, "no domain check fitted for this model (run 'deepwatch detectors eval')"
    try:
        with np.load(path) as z:
            check = DomainCheck(
                mean=z["mean"].astype(np.float64), precision=z["precision"].astype(np.float64),
                limit=float(z["limit"]), coverage=float(z["coverage"]), holdout_inside=float(z["holdout_inside"]),
                n_fit=int(z["n_fit"]), n_holdout=int(z["n_holdout"]), weights_digest=str(z["weights_digest"]))
            recipe = str(z["features"]) if "features" in z.files else "last-layer-mean"
    except (OSError, KeyError, ValueError) as exc:
        raise DomainError(f"{path}: not a readable domain check: {exc}") from exc
    if recipe != FEATURES:
        return None, f"{path.name} pools features as {recipe!r}, not {FEATURES!r}; re-run 'deepwatch detectors eval'"
    if check.weights_digest != weights_digest:
        return None, f"{path.name} was fitted for other weights ({check.weights_digest[:12]}); re-run 'deepwatch detectors eval'"
    return check, None


def domain_reason(domain: dict[str, Any] | None) -> str | None:
    """The domain check in words, for a detection's reasons (shown on evidence pages and packets)."""
    if not domain:
        return None
    if domain.get("inside") is None:
        return f"domain check: none ({domain.get('note') or 'not fitted'})"
    side = "inside" if domain["inside"] else "outside"
    sign = "<=" if domain["inside"] else ">"
    return (f"domain check: {side} the data the model was validated on "
            f"(distance {domain['distance']:.1f} {sign} limit {domain['limit']:.1f})")


def combine_domains(entries: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One domain entry for a score built from several (ensemble members, video frames): inside
    only when every part is; the distance and limit shown are the part farthest out, relative to
    its limit; no check on any part means no check for the whole."""
    if not entries or any(e is None or e.get("inside") is None for e in entries):
        notes = [e.get("note") for e in entries if e is not None and e.get("note")]
        return {"inside": None, "note": notes[0] if notes else "no domain check fitted for this model"}
    worst = max(entries, key=lambda e: e["distance"] / e["limit"] if e["limit"] > 0 else math.inf)  # type: ignore[index]
    return {"distance": worst["distance"], "limit": worst["limit"],  # type: ignore[index]
            "inside": all(e["inside"] for e in entries), "parts": len(entries)}  # type: ignore[index]
