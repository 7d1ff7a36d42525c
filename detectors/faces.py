"""Faces in video frames, and the crops of them that the classifier scores.

The detector is OpenCV's frontal-face Haar cascade. Its weights (an XML file) ship inside the
opencv-python wheel, in `cv2.data.haarcascades`, so nothing is fetched at run time; it runs on
CPU in a few milliseconds per frame, which matters because every sampled frame of every video
goes through it. It finds frontal and near-frontal faces; profile and very small faces are
missed, which is why a frame with no face found is still scored whole, and counted.

opencv-python 5 wheels ship neither `CascadeClassifier` nor the cascade files (the class moved
to opencv-contrib, whose wheels carry no data either): the 4.x line (>= 4.8, < 5) has both.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Detection runs on a copy no larger than this: Haar cascades are scale-searched, so time grows
# with pixel count, and a face under ~1/20 of a 640 px frame is too small to judge anyway.
DETECT_MAX_SIDE = 640


class FaceDetectorUnavailable(RuntimeError):
    """The installed OpenCV cannot run the bundled face detector; the message says what to do."""


@dataclass(frozen=True)
class FaceBox:
    """A face in the coordinates of the image it was found in."""

    x: int
    y: int
    w: int
    h: int

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def cascade_path(cv2: Any) -> Path:
    """The bundled cascade file, or FaceDetectorUnavailable naming the OpenCV at fault."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / CASCADE_FILE
    if not hasattr(cv2, "CascadeClassifier") or not folder or not path.is_file():
        raise FaceDetectorUnavailable(
            f"OpenCV {cv2.__version__} has no bundled Haar face cascade ({CASCADE_FILE} in "
            "cv2.data.haarcascades); opencv-python 5 dropped it: install 'opencv-python>=4.8,<5', "
            "or turn video face crops off"
        )
    return path


class FaceFinder:
    """Frontal faces with OpenCV's bundled Haar cascade, largest first."""

    name = "opencv-haar-frontalface"

    def __init__(
        self,
        *,
        min_face_frac: float = 0.1,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        max_faces: int = 4,
        margin: float = 0.3,
    ):
        """`min_face_frac`: smallest face side as a share of the frame's shorter side (smaller
        faces give crops too small for a classifier to judge, and cost the most search time).
        `min_neighbors`: overlapping hits a face needs (higher: fewer false faces, more misses).
        `max_faces`: the largest faces kept per frame. `margin`: share of the face size added on
        each side of a crop, so the classifier sees the blend seam at the face's edge.
        """
        import cv2

        if not 0.0 < min_face_frac < 1.0:
            raise ValueError(f"min_face_frac must be in (0, 1), got {min_face_frac}")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be above 1, got {scale_factor}")
        if min_neighbors < 0 or max_faces < 1 or margin < 0:
            raise ValueError(
                f"need min_neighbors >= 0, max_faces >= 1 and margin >= 0, got "
                f"{min_neighbors}, {max_faces} and {margin}"
            )
        path = cascade_path(cv2)
        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FaceDetectorUnavailable(f"OpenCV could not load the face cascade {path}")
        self.min_face_frac = min_face_frac
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_faces = max_faces
        self.margin = margin
        self.version = f"opencv-{cv2.__version__}"
        # The cascade is this detector's weights: its digest goes into every video's evidence.
        self.weights_digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "model_id": CASCADE_FILE,
                "weights_digest": self.weights_digest}

    def find(self, image: "Image.Image") -> list[FaceBox]:
        """Faces in `image`, largest first, at most `max_faces`."""
        import numpy as np

        scale = min(1.0, DETECT_MAX_SIDE / max(image.size))
        small = image if scale == 1.0 else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        )
        gray = np.asarray(small.convert("L"))
        # Equalising spreads the grey levels: dark or washed-out footage otherwise loses faces.
        gray = self._cv2.equalizeHist(gray)
        side = max(12, round(min(gray.shape) * self.min_face_frac))
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        boxes = [
            FaceBox(round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for x, y, w, h in (found if len(found) else [])
        ]
        boxes.sort(key=lambda b: b.w * b.h, reverse=True)
        return boxes[: self.max_faces]

    def crop(self, image: "Image.Image", box: FaceBox) -> "Image.Image":
        """A square around the face with `margin` added on each side, clipped to the image."""
        side = max(box.w, box.h) * (1 + 2 * self.margin)
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
        right, bottom = min(image.width, round(cx + side / 2)), min(image.height, round(cy + side / 2))
        return image.crop((left, top, right, bottom))
