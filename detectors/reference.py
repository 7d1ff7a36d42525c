"""Comparing an item with the authentic original it was copied from (the reference library).

Most election deepfakes are altered copies of real footage. Once the original is known
(storage/references.py finds it), the question "was this altered?" needs no learned weights:
align the copy onto the original, undo what re-posting does to every pixel, and look at what is
left.

* Geometry: ORB features matched between the two and a similarity transform (scale, rotation,
  shift) fitted with RANSAC, so resizes, crops, padding and screenshots line up; the warp takes the
  copy into the original's frame, and only pixels the copy covers are compared.
* Resolution and compression: both are compared at the lower of the two resolutions, blurred
  a little, so JPEG/H.264 blocking and resampling do not count as change.
* Colour: each channel of the copy is histogram-matched to the original over the shared area,
  so a colour grade, a brightness change or a filter (a whole-frame edit) leaves no difference.
* What is left is thresholded against the image's own noise floor (median + k * MAD of the
  difference, and never under an absolute floor). Connected regions of change are kept when
  they are big enough; a region that touches the frame edge and holds no face is taken for an
  overlay (caption band, logo, watermark) and reported but not counted. A region on a face
  (OpenCV's bundled Haar detector, detectors/faces.py, run on the original) is named as such.

The difference heatmap is rendered as a PNG for the evidence page.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

DETECTOR_NAME = "reference-library"
VERSION = "1"

WORK_MAX_SIDE = 512  # originals are compared at no more than this many pixels on their long side
MIN_INLIERS = 12  # fewer RANSAC-consistent feature matches: the two are not the same picture
MIN_INLIER_SHARE = 0.25
BLUR_SIGMA = 1.2  # in working pixels: what JPEG q70 and a resize leave is well under it
ABS_FLOOR = 28.0  # per-pixel colour distance (0-255 scale) that re-encoding never reaches once blurred
NOISE_K = 8.0  # threshold = median + NOISE_K * MAD of the difference, if above ABS_FLOOR
MIN_REGION_SHARE = 0.001  # changed region at least this share of the compared area (a mouth in a wide shot)
MAX_MEDIAN_DIFF = 10.0  # a copy differs from its original this little over most of the picture
MAX_LOCAL_SHARE = 0.5  # a "change" over more than this share is misalignment, not an edit
EDGE_MARGIN_SHARE = 0.03  # a region within this of the frame edge may be an overlay
LOGO_MAX_SHARE = 0.03  # ... when it is this small (a logo, a watermark); caption bands are wide strips


class ReferenceCompareError(ValueError):
    """The two images could not be aligned (not the same picture, or too little texture)."""


@dataclass(frozen=True)
class Region:
    x: int  # in the original's pixel coordinates
    y: int
    w: int
    h: int
    mean_diff: float
    face: bool
    overlay: bool  # a caption band or a small mark at the edge (a logo), with no face in it

    def box(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    def to_dict(self) -> dict[str, Any]:
        return {"box": [self.x, self.y, self.w, self.h], "mean_diff": round(self.mean_diff, 1),
                "face": self.face, "overlay": self.overlay}


@dataclass
class Comparison:
    altered: bool
    regions: list[Region]  # every changed region found, overlays included
    inliers: int
    scale: float  # copy pixels per original pixel
    threshold: float
    heatmap: "np.ndarray | None" = None  # uint8 difference map in working coordinates
    notes: list[str] = field(default_factory=list)

    @property
    def alterations(self) -> list[Region]:
        return [r for r in self.regions if not r.overlay]


def _cv2():
    import cv2

    return cv2


def to_array(img: "Image.Image") -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _shrink(arr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = arr.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return arr, 1.0
    cv2 = _cv2()
    out = cv2.resize(arr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return out, scale


def estimate_alignment(copy: np.ndarray, original: np.ndarray) -> tuple[np.ndarray, int]:
    """2x3 similarity transform taking `copy` pixel coordinates to `original` ones, and the
    RANSAC inlier count. Raises ReferenceCompareError when they do not align."""
    cv2 = _cv2()
    orb = cv2.ORB_create(nfeatures=3000, fastThreshold=10)
    ga, gb = cv2.cvtColor(copy, cv2.COLOR_RGB2GRAY), cv2.cvtColor(original, cv2.COLOR_RGB2GRAY)
    ka, da = orb.detectAndCompute(ga, None)
    kb, db = orb.detectAndCompute(gb, None)
    if da is None or db is None or len(ka) < MIN_INLIERS or len(kb) < MIN_INLIERS:
        raise ReferenceCompareError("too few features to align the item with the reference")
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < MIN_INLIERS:
        raise ReferenceCompareError(f"only {len(good)} feature matches with the reference")
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                               maxIters=4000, confidence=0.995)
    inliers = int(mask.sum()) if mask is not None else 0
    if matrix is None or inliers < MIN_INLIERS or inliers < MIN_INLIER_SHARE * len(good):
        raise ReferenceCompareError(f"no consistent alignment with the reference ({inliers} of {len(good)} matches agree)")
    return matrix.astype(np.float64), inliers


def estimate_alignment_ecc(copy: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The copy -> original transform by intensity alignment (OpenCV ECC), for pictures too smooth
    for feature matching. Starts from "the copy is the whole original, resized", so it finds
    the small crops and shifts platforms add; raises ReferenceCompareError when it does not
    converge to a good fit."""
    cv2 = _cv2()
    side = 256
    sc, so = side / max(copy.shape[:2]), side / max(original.shape[:2])
    a = cv2.resize(cv2.cvtColor(copy, cv2.COLOR_RGB2GRAY), None, fx=sc, fy=sc, interpolation=cv2.INTER_AREA)
    b = cv2.resize(cv2.cvtColor(original, cv2.COLOR_RGB2GRAY), None, fx=so, fy=so, interpolation=cv2.INTER_AREA)
    a = cv2.GaussianBlur(a, (0, 0), 1.0)
    b = cv2.GaussianBlur(b, (0, 0), 1.0)
    # ECC's warp maps template (original) coordinates into the input (copy) image.
    init = np.array([[a.shape[1] / b.shape[1], 0, 0], [0, a.shape[0] / b.shape[0], 0]], dtype=np.float32)
    try:
        cc, warp = cv2.findTransformECC(b, a, init, cv2.MOTION_AFFINE,
                                        (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-5), None, 5)
    except cv2.error as exc:
        raise ReferenceCompareError(f"could not align the item with the reference: {exc.msg or exc}") from None
    if cc < 0.85:
        raise ReferenceCompareError(f"no good alignment with the reference (intensity correlation {cc:.2f})")
    # Invert (original -> copy becomes copy -> original) and undo the working scales.
    inv = cv2.invertAffineTransform(warp.astype(np.float64))
    return np.hstack([inv[:, :2] * sc / so, inv[:, 2:] / so])


def _affine_tone(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per channel, the gain and offset that match `src`'s quartiles over `mask` to `ref`'s."""
    out = np.empty(src.shape, dtype=np.float32)
    for c in range(src.shape[2]):
        s_q = np.percentile(src[..., c][mask], [25, 50, 75])
        r_q = np.percentile(ref[..., c][mask], [25, 50, 75])
        gain = (r_q[2] - r_q[0]) / max(1.0, s_q[2] - s_q[0])
        out[..., c] = (src[..., c].astype(np.float32) - s_q[1]) * gain + r_q[1]
    return out


def _tone_match(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each channel of `src` mapped by a smooth tone curve fitted over `mask`: undoes a global
    tone or colour change (grading, brightness, contrast, filters).

    The curve is a cubic through the median original value of each copy level (bins of 4),
    weighted by sqrt(count), refitted with outlying levels dropped. A local edit or a caption
    band fills a few levels at most: the medians keep it out of the other levels, the refit drops
    the levels it took over, and a curve this stiff cannot bend to hide it (a per-level lookup
    table could map a pasted face's unusual colours onto the original's)."""
    out = np.empty(src.shape, dtype=np.float32)
    for c in range(src.shape[2]):
        x = src[..., c][mask].astype(np.int32)
        y = ref[..., c][mask].astype(np.float64)
        bins = x // 4
        order = np.argsort(bins, kind="stable")
        bins_sorted, y_sorted, x_sorted = bins[order], y[order], x[order]
        edges = np.flatnonzero(np.diff(bins_sorted)) + 1
        xs, ys, ws = [], [], []
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, bins_sorted.size]):
            if hi - lo >= 10:
                xs.append(np.median(x_sorted[lo:hi]) / 255.0)
                ys.append(np.median(y_sorted[lo:hi]) / 255.0)
                ws.append(np.sqrt(hi - lo))
        xs_a, ys_a, ws_a = np.array(xs), np.array(ys), np.array(ws)
        # No level may outweigh the rest: a flat caption band puts thousands of pixels in one.
        ws_a = np.minimum(ws_a, 2.0 * float(np.median(ws_a))) if ws_a.size else ws_a
        keep = np.ones(xs_a.size, dtype=bool)
        coef = np.array([0.0, 0.0, 1.0, 0.0])
        for _ in range(4):
            if keep.sum() < 6:
                break
            coef = np.polyfit(xs_a[keep], ys_a[keep], 3, w=ws_a[keep])
            resid = np.abs(np.polyval(coef, xs_a) - ys_a)
            keep = resid <= max(3.0 * 1.4826 * float(np.median(resid[keep])), 3.0 / 255)
        lut = np.clip(np.polyval(coef, np.arange(256) / 255.0) * 255.0, 0, 255).astype(np.float32)
        out[..., c] = lut[src[..., c]]
    return out


def difference_map(copy: np.ndarray, original: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(difference per original pixel at working size, mask of compared pixels, working scale).

    `matrix` maps copy pixels to original pixels (full resolution)."""
    cv2 = _cv2()
    copy_per_orig = float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))) or 1.0
    copy_per_orig = 1.0 / copy_per_orig  # the matrix maps copy -> original
    # Compare at the lower resolution of the two: upsampling the copy cannot recover detail.
    work_scale = min(1.0, WORK_MAX_SIDE / max(original.shape[:2]), copy_per_orig)
    h, w = max(8, round(original.shape[0] * work_scale)), max(8, round(original.shape[1] * work_scale))
    orig_small = cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA)
    to_work = np.array([[work_scale, 0, 0], [0, work_scale, 0]], dtype=np.float64)
    m = to_work @ np.vstack([matrix, [0, 0, 1]])
    src = copy
    if copy_per_orig * 1.0 > 1.5 * work_scale:  # shrink the copy first so the warp does not alias
        pre = work_scale / copy_per_orig
        src = cv2.resize(copy, (max(1, round(copy.shape[1] * pre)), max(1, round(copy.shape[0] * pre))),
                         interpolation=cv2.INTER_AREA)
        m = m @ np.array([[1 / pre, 0, 0], [0, 1 / pre, 0], [0, 0, 1]])
    warped = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cover = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
    mask = cv2.erode(cover, np.ones((5, 5), np.uint8)) > 0
    if mask.sum() < 0.2 * w * h:
        raise ReferenceCompareError("the item covers too little of the reference to compare")
    b = cv2.GaussianBlur(orig_small.astype(np.float32), (0, 0), BLUR_SIGMA)
    # What changed is found first under a stiff per-channel gain and offset (quartiles matched),
    # which a large edit cannot bend; the tone curve is then fitted on the rest only. Fitted on
    # everything, a darkened caption band pulls the dark levels of the whole picture with it.
    rough = _affine_tone(warped, orig_small, mask)
    diff0 = np.sqrt(((cv2.GaussianBlur(rough, (0, 0), BLUR_SIGMA) - b) ** 2).sum(axis=2) / 3.0)
    fit_on = mask & (cv2.dilate((diff0 > 2 * ABS_FLOOR).astype(np.uint8), np.ones((9, 9), np.uint8)) == 0)
    if fit_on.sum() < 0.3 * mask.sum():
        fit_on = mask
    a = cv2.GaussianBlur(_tone_match(warped, orig_small, fit_on), (0, 0), BLUR_SIGMA)
    diff = np.sqrt(((a - b) ** 2).sum(axis=2) / 3.0)
    diff[~mask] = 0.0
    return diff, mask, work_scale


def _regions(diff: np.ndarray, mask: np.ndarray, threshold: float, work_scale: float,
             faces: list[tuple[int, int, int, int]]) -> list[Region]:
    cv2 = _cv2()
    changed = ((diff > threshold) & mask).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    area = float(mask.sum())
    h, w = diff.shape
    # The compared area's own edges: a copy cropped tighter than the original has its edge inside.
    ys, xs = np.nonzero(mask)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    margin = max(2, round(EDGE_MARGIN_SHARE * max(h, w)))
    out = []
    for i in range(1, n):
        x, y, bw, bh, px = stats[i]
        if px < MIN_REGION_SHARE * area:
            continue
        inv = 1.0 / work_scale
        box = (round(x * inv), round(y * inv), round(bw * inv), round(bh * inv))
        face = bool(any(_overlap(box, f) > 0.2 for f in faces))
        at_edge = (y - top <= margin or bottom - (y + bh - 1) <= margin
                   or x - left <= margin or right - (x + bw - 1) <= margin)
        # Caption bands are wide strips near the top or bottom, even when not flush with the edge.
        band = bw >= 0.25 * (right - left) and (y + bh - 1 <= top + 0.25 * (bottom - top)
                                                or y >= bottom - 0.25 * (bottom - top))
        out.append(Region(*box, mean_diff=float(diff[labels == i].mean()), face=face, overlay=bool((band or (at_edge and px < LOGO_MAX_SHARE * area)) and not face)))
    out.sort(key=lambda r: (not r.face, -r.w * r.h))
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    small = min(a[2] * a[3], b[2] * b[3]) or 1
    return ix * iy / small


def compare(copy: np.ndarray, original: np.ndarray, *, faces: list[tuple[int, int, int, int]] | None = None,
            matrix: np.ndarray | None = None) -> Comparison:
    """Whether `copy` (RGB array) is `original` with a localised alteration.

    `faces`: face boxes in the original's coordinates (found once per original by the caller).
    `matrix`: a known copy -> original transform (videos reuse one); estimated when None.
    Raises ReferenceCompareError when the two cannot be aligned.
    """
    inliers = 0
    if matrix is None:
        small_c, sc = _shrink(copy, 1024)
        small_o, so = _shrink(original, 1024)
        try:
            m_small, inliers = estimate_alignment(small_c, small_o)
            # Back to full-resolution coordinates: x_o = (A (x_c * sc) + t) / so
            matrix = np.hstack([m_small[:, :2] * sc / so, m_small[:, 2:] / so])
        except ReferenceCompareError:
            matrix = estimate_alignment_ecc(copy, original)
    diff, mask, work_scale = difference_map(copy, original, matrix)
    vals = diff[mask]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) * 1.4826
    if med > MAX_MEDIAN_DIFF:
        # Most of the picture differs: whatever aligned (a flat sky, ECC on smooth pictures),
        # this is not a copy of the reference.
        raise ReferenceCompareError(f"the aligned item differs from the reference almost everywhere "
                                    f"(median difference {med:.0f} of 255)")
    threshold = max(ABS_FLOOR, med + NOISE_K * mad)
    regions = _regions(diff, mask, threshold, work_scale, faces or [])
    changed_share = sum(r.w * r.h for r in regions) * work_scale ** 2 / float(mask.sum())
    notes = []
    altered = bool([r for r in regions if not r.overlay])
    if changed_share > MAX_LOCAL_SHARE:
        notes.append(f"difference over {changed_share:.0%} of the frame: not a localised edit")
        altered = False
    heat = np.clip(diff * (255.0 / max(threshold * 2, 1.0)), 0, 255).astype(np.uint8)
    scale = 1.0 / float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return Comparison(altered=altered, regions=regions, inliers=inliers, scale=scale, threshold=threshold,
                      heatmap=heat, notes=notes)


def heatmap_png(original: np.ndarray, heat: np.ndarray) -> bytes:
    """The original (greyed) with the difference laid over it in red, as PNG bytes."""
    from PIL import Image

    cv2 = _cv2()
    h, w = heat.shape
    base = cv2.cvtColor(cv2.cvtColor(cv2.resize(original, (w, h), interpolation=cv2.INTER_AREA),
                                     cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32) * 0.6
    alpha = (heat.astype(np.float32) / 255.0)[..., None]
    red = np.zeros_like(base)
    red[..., 0] = 255.0
    out = (base * (1 - alpha) + red * alpha).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG")
    return buf.getvalue()


def find_faces(original: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes in the original, with the detector the project ships; [] when it cannot run."""
    from PIL import Image

    from detectors.faces import FaceDetectorUnavailable

    try:
        finder = _finder()
    except FaceDetectorUnavailable:
        return []
    return [(b.x, b.y, b.w, b.h) for b in finder.find(Image.fromarray(original))]


_FINDER: Any = None


def _finder() -> Any:
    """One face detector per process (loading the cascade costs more than a detection)."""
    global _FINDER
    if _FINDER is None:
        from detectors.faces import FaceFinder

        # Smaller faces than the classifier needs still matter here: a face swap on a crowd shot.
        _FINDER = FaceFinder(min_face_frac=0.06, max_faces=8)
    return _FINDER
