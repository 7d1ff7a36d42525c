"""Video frames taken evenly and at scene changes, faces found and cropped, scored per face.

The test clip is real H.264 made with PyAV: two shots of the demo world's scenes (a slow pan
with fresh sensor noise on every frame, as demo_platform's clips), the first showing a face
that OpenCV's bundled Haar cascade finds, the second with no one in it.
"""
from __future__ import annotations

import hashlib
import types

import numpy as np
import pytest
from PIL import Image

from demo_platform import imagery
from demo_platform.video import FPS, VIDEO_SIZE, encode_mp4
from detectors.base import MediaInput
from detectors.faces import CASCADE_FILE, FaceBox, FaceDetectorUnavailable, FaceFinder, cascade_path
from detectors.video import (
    SCENE_CHANGE,
    UNIFORM,
    SceneSettings,
    sample_frames,
    sample_frames_and_scene_changes,
)

pytest.importorskip("cv2")

W, H = VIDEO_SIZE
SHOT_FRAMES = 20  # 2 s at the demo's 10 fps
CUT_S = SHOT_FRAMES / FPS
FACE_SEED, EMPTY_SEED = 3, 105  # a scene whose face the cascade finds in every frame; one without


def shot(seed: int, *, face: bool, pan: int = 32) -> tuple[list[np.ndarray], tuple[int, int, int, int] | None]:
    """Frames of a panning shot and the head's box in the scene (before panning)."""
    rng = np.random.default_rng(seed)
    scene, box = imagery.render_scene(rng, W + pan, H, face=face)
    frames = []
    for i in range(SHOT_FRAMES):
        offset = round(pan * i / (SHOT_FRAMES - 1))
        crop = np.ascontiguousarray(scene[:, offset : offset + W])
        frames.append(imagery.camera(crop, np.random.default_rng([seed, i])))
    return frames, box


@pytest.fixture(scope="module")
def clip() -> dict:
    with_face, head = shot(FACE_SEED, face=True)
    empty, _ = shot(EMPTY_SEED, face=False)
    return {"data": encode_mp4(with_face + empty), "head": head, "pan": 32}


def head_at(clip: dict, t_s: float) -> tuple[int, int, int, int]:
    """The drawn head's box in the frame shown at `t_s` (the camera pans right)."""
    offset = round(clip["pan"] * round(t_s * FPS) / (SHOT_FRAMES - 1))
    x0, y0, x1, y1 = clip["head"]
    return x0 - offset, y0, x1 - offset, y1


def test_uniform_frames_and_the_cut_each_say_why_they_were_taken(clip):
    frames = sample_frames_and_scene_changes(clip["data"], 6)
    times = [f.t_s for f in frames]
    assert times == sorted(times)
    cuts = [f for f in frames if SCENE_CHANGE in f.reasons]
    # The first frame of the second shot, and nothing within the panning shots.
    assert [f.t_s for f in cuts] == [pytest.approx(CUT_S)]
    assert cuts[0].scene_score is not None and cuts[0].scene_score >= 0.1
    uniform = [f for f in frames if UNIFORM in f.reasons]
    assert [f.t_s for f in uniform] == [f.t_s for f in sample_frames(clip["data"], 6)]
    assert all(f.scene_score is None for f in uniform)

    # A frame that is both is returned once with both reasons: one uniform sample of a 4 s
    # clip is taken at 2 s, where the cut is.
    both = sample_frames_and_scene_changes(clip["data"], 1)
    assert [(f.t_s, f.reasons) for f in both] == [(pytest.approx(CUT_S), (UNIFORM, SCENE_CHANGE))]


def test_scene_change_settings(clip):
    none_kept = sample_frames_and_scene_changes(clip["data"], 4, scenes=SceneSettings(max_frames=0))
    assert all(SCENE_CHANGE not in f.reasons for f in none_kept)
    deaf = sample_frames_and_scene_changes(clip["data"], 4, scenes=SceneSettings(threshold=0.9))
    assert all(SCENE_CHANGE not in f.reasons for f in deaf)
    with pytest.raises(ValueError, match="scene-change threshold"):
        SceneSettings(threshold=0)
    with pytest.raises(ValueError, match="min gap"):
        SceneSettings(min_gap_s=-1)


def test_many_cuts_keep_the_strongest_up_to_the_cap():
    # Six one-second shots of flat grey levels: the jumps between them differ in size.
    levels = [40, 120, 60, 230, 20, 30]
    frames = [np.full((H, W, 3), level, np.uint8) for level in levels for _ in range(FPS)]
    data = encode_mp4(frames)
    all_cuts = sample_frames_and_scene_changes(data, 1, scenes=SceneSettings(max_frames=8))
    assert [round(f.t_s) for f in all_cuts if SCENE_CHANGE in f.reasons] == [1, 2, 3, 4]  # 20->30 is no cut
    capped = sample_frames_and_scene_changes(data, 1, scenes=SceneSettings(max_frames=2))
    # The two biggest jumps: 60->230 (at 3 s) and 230->20 (at 4 s).
    assert [round(f.t_s) for f in capped if SCENE_CHANGE in f.reasons] == [3, 4]


def test_a_short_spliced_in_shot_that_uniform_sampling_steps_over_is_taken(clip):
    # 1.3 s of one shot, 0.3 s of another (the splice), then 2 s of a third: 3.6 s in all.
    first, _ = shot(FACE_SEED, face=True)
    splice, _ = shot(EMPTY_SEED, face=False)
    last, _ = shot(EMPTY_SEED + 1, face=False)
    data = encode_mp4(first[:13] + splice[:3] + last)
    in_splice = [f.t_s for f in sample_frames(data, 8) if 1.3 <= f.t_s < 1.6]
    assert in_splice == []  # the even samples fall at 1.2 and 1.6 s
    frames = sample_frames_and_scene_changes(data, 8)
    cuts = [f.t_s for f in frames if SCENE_CHANGE in f.reasons]
    # The cut into the splice is kept; the cut out of it, 0.3 s later, is within the minimum gap.
    assert cuts == [pytest.approx(1.3)]
    short_gap = sample_frames_and_scene_changes(data, 8, scenes=SceneSettings(min_gap_s=0.2))
    assert [f.t_s for f in short_gap if SCENE_CHANGE in f.reasons] == [pytest.approx(1.3), pytest.approx(1.6)]


def test_face_found_where_the_head_is_and_not_in_the_empty_shot(clip):
    finder = FaceFinder()
    for frame in sample_frames_and_scene_changes(clip["data"], 6):
        faces = finder.find(frame.image)
        if frame.t_s >= CUT_S:
            assert faces == [], f"no one is in the second shot, found {faces} at {frame.t_s} s"
            continue
        assert len(faces) == 1, f"one face expected at {frame.t_s} s, found {faces}"
        x0, y0, x1, y1 = head_at(clip, frame.t_s)
        face = faces[0]
        cx, cy = face.x + face.w / 2, face.y + face.h / 2
        assert x0 <= cx <= x1 and y0 <= cy <= y1, f"face {face} outside the head {x0, y0, x1, y1}"


def test_crop_adds_the_margin_and_stays_inside_the_image():
    finder = FaceFinder(margin=0.25)
    image = Image.new("RGB", (200, 100))
    assert finder.crop(image, FaceBox(80, 30, 40, 40)).size == (60, 60)
    assert finder.crop(image, FaceBox(0, 0, 40, 40)).size == (50, 50)  # clipped at the corner
    with pytest.raises(ValueError, match="min_face_frac"):
        FaceFinder(min_face_frac=0)


def test_opencv_without_the_bundled_cascade_is_named(tmp_path):
    # What opencv-python 5 looks like: no cascade files beside cv2.data.
    opencv5 = types.SimpleNamespace(__version__="5.0.0", data=types.SimpleNamespace(haarcascades=str(tmp_path)),
                                    CascadeClassifier=object)
    with pytest.raises(FaceDetectorUnavailable, match=r"opencv-python>=4.8,<5"):
        cascade_path(opencv5)
    import cv2

    assert cascade_path(cv2).name == CASCADE_FILE


# ------------------------------------------------------------------------------------ pipeline

torch = pytest.importorskip("torch")


def video_item(data: bytes) -> MediaInput:
    return MediaInput(hashlib.sha256(data).hexdigest(), "video", data, "video/mp4")


@pytest.fixture(scope="module")
def random_vit(tmp_path_factory):
    from tests.test_classifier import make_tiny_vit

    return make_tiny_vit(tmp_path_factory.mktemp("vit"), seed=3)


def test_pipeline_scores_face_crops_and_counts_frames_without_faces(clip, random_vit):
    from detectors.pipeline import DetectionPipeline

    pipe = DetectionPipeline(classifier_model=str(random_vit), c2pa=False, watermark=False, metadata=False,
                             video_frames=6)
    det = pipe.analyse([video_item(clip["data"])])[0].detections[0]
    frames = det.details["frames"]
    in_empty_shot = [f for f in frames if f["t_s"] >= CUT_S]
    assert det.details["no_face_frames"] == len(in_empty_shot) == 4
    assert all(f["no_face"] and f["faces"] == [] for f in in_empty_shot)
    assert det.details["scene_change_frames"] == 1
    assert [f["taken"] for f in frames if f["t_s"] == pytest.approx(CUT_S)] == [[SCENE_CHANGE]]
    assert det.details["face_detector"]["weights_digest"] == pipe.faces.weights_digest
    assert "faces found in 3 of 7 sampled frames and scored as crops; no face found in 4, so the whole " \
           "frame was scored" in det.reasons
    assert "7 frames sampled: 6 spread evenly, 1 at scene changes" in det.reasons
    # The top third is a third of the evenly spread frames: the extra one does not dilute it.
    assert "(mean of the top 2 of 7 sampled frames)" in det.reasons[0]

    # What was scored is the crop of each face and the whole frame, as the finder and the
    # classifier give them on their own; the frame keeps the highest.
    sampled = {f.t_s: f.image for f in sample_frames_and_scene_changes(clip["data"], 6, max_side=1024)}
    for f in frames:
        image = sampled[f["t_s"]]
        crops = [pipe.faces.crop(image, FaceBox(*face["box"])) for face in f["faces"]]
        expected = pipe.classifier.score_images(crops + [image])
        assert [face["score"] for face in f["faces"]] + [f["frame_score"]] == pytest.approx(list(expected), abs=1e-5)
        assert f["score"] == pytest.approx(max(expected), abs=1e-5)


def test_face_only_scoring_and_suspect_segments_in_seconds(clip, tmp_path):
    from detectors.pipeline import DetectionPipeline
    from tests.test_classifier import make_tiny_vit
    from tests.test_detect_pipeline import logit_for

    model = make_tiny_vit(tmp_path / "high", fixed_logits=logit_for(0.9))
    pipe = DetectionPipeline(classifier_model=str(model), c2pa=False, watermark=False, metadata=False,
                             video_frames=6, video_frame_with_faces=False)
    analysis = pipe.analyse([video_item(clip["data"])])[0]
    det = analysis.detections[0]
    frames = det.details["frames"]
    # Uncalibrated model: over its threshold, yet only a review.
    assert det.outcome == "fake" and analysis.verdict.band == "needs_review"
    assert det.details["segments"] == [[frames[0]["t_s"], frames[-1]["t_s"]]]
    assert f"frames scoring >= 0.50 at {frames[0]['t_s']:.1f}-{frames[-1]['t_s']:.1f} s" in det.reasons
    with_faces = [f for f in frames if f["faces"]]
    assert len(with_faces) == 3 and all(f["frame_score"] is None for f in with_faces)
    assert all(f["frame_score"] == pytest.approx(0.9, abs=1e-5) for f in frames if not f["faces"])
    # The verdict carries the face counts in plain words.
    assert any("no face found in 4" in r for r in analysis.verdict.reasons)

    plain = DetectionPipeline(classifier_model=str(model), c2pa=False, watermark=False, metadata=False,
                              video_frames=6, video_faces=False, scene_changes=False)
    det = plain.analyse([video_item(clip["data"])])[0].detections[0]
    assert len(det.details["frames"]) == 6 and "no_face_frames" not in det.details
    assert all(f["taken"] == [UNIFORM] and "no_face" not in f for f in det.details["frames"])
