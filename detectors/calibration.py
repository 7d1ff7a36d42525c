"""Detector metrics from scores and labels: ROC, AUC, EER, a threshold calibrated to a target
false-positive rate, and reliability (calibration) bins with their diagram.

Plain numpy, so the numbers in a model card can be checked by hand. Conventions throughout:
label 1 is fake (the positive class), a score is P(fake), and an item is called fake when
`score >= threshold`, the rule `HFImageClassifier` applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RELIABILITY_BINS = 10


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D and the same length, got {labels.shape} and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers")
    return labels.astype(np.int64), scores


def _need_both(labels: np.ndarray) -> None:
    if not (labels == 1).any() or not (labels == 0).any():
        raise ValueError(
            f"need both real and fake examples, got {(labels == 0).sum()} real and {(labels == 1).sum()} fake"
        )


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    _, inverse, counts = np.unique(values[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # last 1-based rank of each group of equal values
    mean_rank = ends - (counts - 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[inverse]
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC: the chance a random fake scores above a random real image, ties counted half.

    Computed by the Mann-Whitney rank sum in O(n log n), which equals the area under the ROC
    curve drawn through every distinct threshold.
    """
    labels, scores = _check(labels, scores)
    _need_both(labels)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    rank_sum = average_ranks(scores)[labels == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class Roc:
    """Operating points for thresholds at every distinct score, highest first.

    `thresholds[i]` gives `fpr[i]`, `tpr[i]`; point 0 is the threshold above every score
    (nothing flagged: fpr = tpr = 0), stored as +inf.
    """

    thresholds: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> Roc:
    labels, scores = _check(labels, scores)
    _need_both(labels)
    distinct = np.unique(scores)[::-1]  # descending
    pos, neg = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])
    # How many of each class score >= t, for each distinct t.
    tp = len(pos) - np.searchsorted(pos, distinct, side="left")
    fp = len(neg) - np.searchsorted(neg, distinct, side="left")
    return Roc(
        thresholds=np.concatenate([[np.inf], distinct]),
        fpr=np.concatenate([[0.0], fp / len(neg)]),
        tpr=np.concatenate([[0.0], tp / len(pos)]),
    )


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(EER, threshold near it): where the false-positive rate equals the miss rate.

    The ROC is a staircase, so the two rates rarely meet at a point that is one of its
    thresholds; the EER is read where the straight line between the two operating points
    that bracket the crossing has FPR == FNR (the usual convention). The threshold returned
    is the lower of the two bracketing thresholds.
    """
    roc = roc_curve(labels, scores)
    diff = (1.0 - roc.tpr) - roc.fpr  # FNR - FPR: +1 at "flag nothing", -1 at "flag all"
    i = int(np.argmax(diff <= 0))  # first point where misses no longer outnumber false alarms
    if diff[i] == 0 or i == 0:
        return float(roc.fpr[i]), float(min(roc.thresholds[i], 1.0))
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1)
    eer = roc.fpr[i - 1] + t * (roc.fpr[i] - roc.fpr[i - 1])
    return float(eer), float(roc.thresholds[i])


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold calibrate_threshold chose on scored data (classifier.Calibration is the file
    form that `detectors eval` writes from it)."""

    threshold: float
    target_fpr: float
    fpr_at_threshold: float
    tpr_at_threshold: float
    reached: bool  # False when no threshold in [0, 1] gets the FPR down to the target
    n_real: int
    n_fake: int

    @property
    def fpr_resolution(self) -> float:
        """The smallest step in FPR this real set can measure (one image)."""
        return 1.0 / self.n_real


def calibrate_threshold(labels: np.ndarray, scores: np.ndarray, target_fpr: float) -> ThresholdChoice:
    """The lowest threshold whose false-positive rate on the real images is <= `target_fpr`.

    With n real images at most k = floor(target * n) may score >= the threshold, so it must lie
    just above the (k+1)-th highest real score; it is that score's next float64 up, the lowest
    threshold there is with that FPR. Items scoring exactly 1.0 cannot be excluded by any
    threshold in [0, 1]: then the threshold is 1.0 and `reached` is False.
    """
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be between 0 and 1 (exclusive), got {target_fpr}")
    labels, scores = _check(labels, scores)
    _need_both(labels)
    real = np.sort(scores[labels == 0])[::-1]
    fake = scores[labels == 1]
    allowed = int(np.floor(target_fpr * len(real) + 1e-9))  # the epsilon: 0.01 * 300 is 2.9999...
    boundary = real[allowed] if allowed < len(real) else -np.inf
    threshold = float(min(max(np.nextafter(boundary, np.inf), 0.0), 1.0))
    fpr = float((real >= threshold).mean())
    return ThresholdChoice(
        threshold=threshold,
        target_fpr=float(target_fpr),
        fpr_at_threshold=fpr,
        tpr_at_threshold=float((fake >= threshold).mean()),
        reached=fpr <= target_fpr,
        n_real=len(real),
        n_fake=len(fake),
    )


def accuracy_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    labels, scores = _check(labels, scores)
    return float(((scores >= threshold).astype(np.int64) == labels).mean())


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_score: float | None  # mean predicted P(fake) in the bin
    fake_fraction: float | None  # observed share of fakes in the bin

    def to_dict(self) -> dict[str, float | int | None]:
        return {"lower": self.lower, "upper": self.upper, "count": self.count,
                "mean_score": self.mean_score, "fake_fraction": self.fake_fraction}


def reliability_bins(labels: np.ndarray, scores: np.ndarray, n_bins: int = RELIABILITY_BINS) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; bin i holds scores in [i/n, (i+1)/n), the last includes 1."""
    labels, scores = _check(labels, scores)
    index = np.clip((scores * n_bins).astype(np.int64), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        out.append(ReliabilityBin(
            lower=b / n_bins,
            upper=(b + 1) / n_bins,
            count=n,
            mean_score=float(scores[mask].mean()) if n else None,
            fake_fraction=float(labels[mask].mean()) if n else None,
        ))
    return out


def expected_calibration_error(bins: list[ReliabilityBin]) -> float:
    """Count-weighted mean gap between predicted P(fake) and the observed fake share."""
    total = sum(b.count for b in bins)
    if total == 0:
        raise ValueError("no scores in any bin")
    return float(sum(b.count * abs(b.mean_score - b.fake_fraction) for b in bins if b.count) / total)


def draw_reliability_diagram(bins: list[ReliabilityBin], path: str | Path, *, title: str = "") -> Path:
    """A reliability diagram as PNG: observed fake share per bin against the diagonal of a
    perfectly calibrated model, with the number of images per bin underneath.

    Drawn with Pillow (already a dependency) rather than pulling in a plotting library for
    one chart.
    """
    from PIL import Image, ImageDraw, ImageFont

    width, height = 640, 600
    left, right, top = 100, 30, 50
    plot_h, hist_h, gap = 360, 80, 50
    plot_w = width - left - right
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)

    def x_at(v: float) -> float:
        return left + v * plot_w

    def y_at(v: float) -> float:
        return top + (1.0 - v) * plot_h

    draw.text((left, 12), title or "Reliability diagram", fill="black", font=font)
    # Grid and axes.
    for k in range(11):
        v = k / 10
        draw.line([(x_at(v), top), (x_at(v), top + plot_h)], fill=(230, 230, 230))
        draw.line([(left, y_at(v)), (left + plot_w, y_at(v))], fill=(230, 230, 230))
        if k % 2 == 0:
            draw.text((x_at(v) - 8, top + plot_h + 4), f"{v:.1f}", fill="black", font=small)
            draw.text((left - 30, y_at(v) - 6), f"{v:.1f}", fill="black", font=small)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    draw.line([(x_at(0), y_at(0)), (x_at(1), y_at(1))], fill=(150, 150, 150), width=1)
    # Bars: observed fake share per bin; dots: mean predicted score in the bin.
    for b in bins:
        if not b.count:
            continue
        x0, x1 = x_at(b.lower) + 2, x_at(b.upper) - 2
        draw.rectangle([x0, y_at(b.fake_fraction), x1, y_at(0)], fill=(70, 110, 190), outline=(40, 60, 120))
        cx, cy = x_at(b.mean_score), y_at(b.mean_score)
        draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(220, 80, 40))
    draw.text((left + plot_w // 2 - 80, top + plot_h + 20), "predicted P(fake)", fill="black", font=font)
    draw.text((6, top + plot_h // 2 - 40), "observed\nfake\nshare", fill="black", font=font)
    # Histogram of counts.
    h_top = top + plot_h + gap
    most = max((b.count for b in bins), default=0) or 1
    for b in bins:
        x0, x1 = x_at(b.lower) + 2, x_at(b.upper) - 2
        bar = hist_h * b.count / most
        draw.rectangle([x0, h_top + hist_h - bar, x1, h_top + hist_h], fill=(160, 160, 160))
        draw.text((x0 + 2, h_top + hist_h + 2), str(b.count), fill="black", font=small)
    draw.text((6, h_top + hist_h // 2 - 8), "images", fill="black", font=font)
    path = Path(path)
    img.save(path, "PNG")
    return path


# -- how sure a measured FPR is --------------------------------------------------------------------
FPR_CONFIDENCE = 0.95


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no scipy needed)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def fpr_upper_bound(false_positives: int, n_real: int, confidence: float = FPR_CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound on the FPR after `false_positives` of `n_real`: the
    p at which seeing that few would happen with probability 1 - confidence (bisection)."""
    if n_real < 1 or not 0 <= false_positives <= n_real:
        raise ValueError(f"need 0 <= false_positives <= n_real and n_real >= 1, got {false_positives}, {n_real}")
    if false_positives == n_real:
        return 1.0
    lo, hi = false_positives / n_real, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _binom_cdf(false_positives, n_real, mid) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def real_needed(target_fpr: float, confidence: float = FPR_CONFIDENCE) -> int:
    """The fewest real items whose every one scoring below the threshold bounds the FPR at
    `target_fpr`: (1 - target)^n <= 1 - confidence (299 for 1% at 95%)."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-target_fpr))


@dataclass(frozen=True)
class BoundedChoice:
    """A threshold whose FPR upper confidence bound is within the target, or the best there is."""

    choice: ThresholdChoice
    false_positives: int
    fpr_upper_bound: float
    confidence: float
    reliable: bool  # the bound is <= the target
    real_needed: int


def calibrate_threshold_bounded(labels: np.ndarray, scores: np.ndarray, target_fpr: float,
                                confidence: float = FPR_CONFIDENCE) -> BoundedChoice:
    """The lowest threshold at which the Clopper-Pearson upper bound (at `confidence`) on the
    FPR over the real items is <= `target_fpr`.

    The measured FPR alone says little on a small set: 0 of 50 real images over the threshold
    is consistent with a true FPR of 6%. So allow k false positives only while the bound for k
    of n stays within the target. When even k = 0 does not (fewer real items than
    `real_needed`), the threshold still lets no real item through, and `reliable` is False.
    """
    labels, scores = _check(labels, scores)
    _need_both(labels)
    n_real = int((labels == 0).sum())
    allowed = -1
    while allowed + 1 < n_real and fpr_upper_bound(allowed + 1, n_real, confidence) <= target_fpr:
        allowed += 1
    # calibrate_threshold allows floor(t * n) false positives: ask for exactly `allowed` (none
    # when even that is not enough: the strictest threshold the data supports).
    choice = calibrate_threshold(labels, scores, min((max(allowed, 0) + 0.5) / n_real, 1 - 1e-12))
    choice = ThresholdChoice(**{**choice.__dict__, "target_fpr": float(target_fpr),
                                "reached": choice.fpr_at_threshold <= target_fpr})
    real = scores[labels == 0]
    fp = int((real >= choice.threshold).sum())
    bound = fpr_upper_bound(fp, n_real, confidence)
    return BoundedChoice(choice=choice, false_positives=fp, fpr_upper_bound=bound, confidence=confidence,
                         reliable=bound <= target_fpr and choice.reached, real_needed=real_needed(target_fpr, confidence))
