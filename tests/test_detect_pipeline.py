"""DetectionPipeline over a mixed batch: images, a video made with PyAV, and broken items."""
from __future__ import annotations

import hashlib
import io
import math

import pytest
from PIL import Image

from detectors import registry
from detectors.base import MediaInput
from detectors.pipeline import DetectionPipeline, suspect_segments, top_third_mean
from detectors.watermark_payloads import KNOWN_WATERMARKS
from tests.test_c2pa import sign_jpeg
from tests.test_classifier import make_tiny_vit, png
from tests.test_hashing import make_image, make_video
from tests.test_watermark import encode, picture

pytest.importorskip("torch")
pytest.importorskip("c2pa")
pytest.importorskip("imwatermark")


def media(kind: str, data: bytes, mime: str) -> MediaInput:
    return MediaInput(hashlib.sha256(data).hexdigest(), kind, data, mime)


def logit_for(p: float) -> tuple[float, float]:
    """Head bias giving P(fake) = p for every input of a (real, fake) model."""
    return (0.0, math.log(p / (1 - p)))


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict[str, MediaInput]:
    marked = encode(picture(7).copy(), KNOWN_WATERMARKS["sdxl"])
    buf = io.BytesIO()
    Image.fromarray(marked).save(buf, "PNG")
    jpeg = make_image(3, size=(160, 120), fmt="JPEG")
    return {
        "plain": media("image", png(1, (96, 64)), "image/png"),
        "c2pa_ai": media("image", sign_jpeg(make_image(4, size=(128, 96), fmt="JPEG")), "image/jpeg"),
        "watermarked": media("image", buf.getvalue(), "image/png"),
        "video": media("video", make_video(seed=2, seconds=2.0), "video/mp4"),
        "truncated": media("image", jpeg[: len(jpeg) // 2], "image/jpeg"),
        "html": media("image", b"<!DOCTYPE html><html><body>Rate limited</body></html>", "image/jpeg"),
        "bad_video": media("video", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, "video/mp4"),
    }


@pytest.fixture(scope="module")
def low_model(tmp_path_factory):
    return make_tiny_vit(tmp_path_factory.mktemp("low"), fixed_logits=logit_for(0.1))


def test_mixed_batch_gets_one_analysis_each_in_order(batch, low_model):
    pipe = DetectionPipeline(classifier_model=str(low_model), threshold=0.5, review_threshold=0.3, video_frames=6)
    items = list(batch.values())
    analyses = pipe.analyse(items)
    assert [a.sha256 for a in analyses] == [i.sha256 for i in items]
    result = dict(zip(batch, analyses))

    def by(name: str, detector: str):
        return next(d for d in result[name].detections if d.detector == detector)

    assert result["plain"].verdict.band == "no_signal"
    assert [d.detector for d in result["plain"].detections] == [
        "hf-classifier", "c2pa", "invisible-watermark", "metadata-provenance"]
    assert by("plain", "metadata-provenance").outcome == "inconclusive"
    assert by("plain", "hf-classifier").score == pytest.approx(0.1, abs=1e-5)

    # Signed by a certificate made a moment ago, on no trust list: at most a likely fake.
    assert result["c2pa_ai"].verdict.band == "likely_fake"
    assert result["c2pa_ai"].verdict.reasons[0].startswith("C2PA manifest declares trainedAlgorithmicMedia")
    assert "is not on the trust list" in result["c2pa_ai"].verdict.reasons[0]

    assert result["watermarked"].verdict.band == "likely_fake"
    assert result["watermarked"].verdict.reasons[0].startswith("invisible watermark of sdxl decoded")

    video_det = by("video", "hf-classifier")
    assert [d.detector for d in result["video"].detections] == ["hf-classifier", "c2pa", "metadata-provenance"]
    assert video_det.outcome == "real" and video_det.score == pytest.approx(0.1, abs=1e-5)
    # Drifting blobs: one shot, so only the six even samples; and no face in them.
    frames = video_det.details["frames"]
    assert len(frames) == 6 and video_det.details["segments"] == []
    assert all(f["taken"] == ["uniform"] and f["no_face"] and f["faces"] == [] for f in frames)
    assert video_det.details["no_face_frames"] == 6 and video_det.details["scene_change_frames"] == 0
    assert "no face found in 6, so the whole frame was scored" in video_det.reasons[-2]
    assert video_det.reasons[-1].startswith("domain check: none (no domain check fitted")
    assert "mean of the top 2 of 6 sampled frames" in video_det.reasons[0]
    assert by("video", "c2pa").reasons == ["no C2PA manifest"]
    assert result["video"].verdict.band == "no_signal"

    for name, reason in [("truncated", "corrupt image: truncated"), ("html", "not an image: sniffed text/html")]:
        assert by(name, "hf-classifier").outcome == "error"
        assert by(name, "hf-classifier").reasons == [reason]
        assert by(name, "invisible-watermark").reasons == [reason]
        assert result[name].verdict.band == "needs_review"
        assert any(reason in r for r in result[name].verdict.reasons)

    bad = by("bad_video", "hf-classifier")
    assert bad.outcome == "error" and bad.reasons[0].startswith("corrupt video")
    assert result["bad_video"].verdict.band == "needs_review"
    assert result["video"].to_dict()["verdict"]["band"] == "no_signal"


def test_scores_between_review_and_threshold_need_review_and_video_segments(batch, tmp_path):
    model = make_tiny_vit(tmp_path / "mid", fixed_logits=logit_for(0.4))
    pipe = DetectionPipeline(classifier_model=str(model), threshold=0.35, review_threshold=0.2,
                             c2pa=False, watermark=False, video_frames=4)
    plain, video = pipe.analyse([batch["plain"], batch["video"]])
    # Over the threshold, but the model was never calibrated: its score alone asks for review.
    assert plain.detections[0].outcome == "fake" and plain.verdict.band == "needs_review"
    assert plain.verdict.reasons[-1].startswith("model not calibrated")
    det = video.detections[0]
    assert video.verdict.band == "needs_review" and det.details["domain"]["inside"] is None
    assert det.outcome == "fake" and det.score == pytest.approx(0.4, abs=1e-5)
    times = [f["t_s"] for f in det.details["frames"]]
    assert det.details["segments"] == [[times[0], times[-1]]]  # every frame is over the threshold
    assert det.reasons[1] == f"frames scoring >= 0.35 at {times[0]:.1f}-{times[-1]:.1f} s"

    review = DetectionPipeline(classifier_model=str(model), threshold=0.5, review_threshold=0.3,
                               c2pa=False, watermark=False)
    assert review.analyse([batch["plain"]])[0].verdict.band == "needs_review"


def test_without_classifier_and_describe(batch, low_model):
    pipe = DetectionPipeline(classifier_model=None)
    assert [d["name"] for d in pipe.describe()] == ["c2pa", "invisible-watermark", "metadata-provenance"]
    analyses = pipe.analyse([batch["c2pa_ai"], batch["video"]])
    assert analyses[0].verdict.band == "likely_fake"  # an untrusted signer
    assert [d.detector for d in analyses[1].detections] == ["c2pa", "metadata-provenance"]

    full = DetectionPipeline(classifier_model=str(low_model)).describe()
    assert [d["name"] for d in full] == [
        "hf-classifier", "opencv-haar-frontalface", "c2pa", "invisible-watermark", "metadata-provenance"]
    assert len(full[1]["weights_digest"]) == 64  # the bundled cascade file is the face detector's weights
    assert full[0]["model_id"] == str(low_model) and len(full[0]["weights_digest"]) == 64
    assert all(d["version"] for d in full)


def test_bad_settings():
    with pytest.raises(ValueError, match="review_threshold <= threshold"):
        DetectionPipeline(classifier_model=None, threshold=0.3, review_threshold=0.5)
    with pytest.raises(ValueError, match="video_frames"):
        DetectionPipeline(classifier_model=None, video_frames=0)
    with pytest.raises(ValueError, match="scene-change threshold"):
        DetectionPipeline(classifier_model=None, scene_threshold=0.0)
    with pytest.raises(ValueError, match="max scene-change frames"):
        DetectionPipeline(classifier_model=None, max_scene_frames=-1)


def test_video_aggregation_rules():
    assert top_third_mean([0.1] * 6 + [0.9, 0.8]) == pytest.approx((0.9 + 0.8 + 0.1) / 3)
    assert top_third_mean([0.7]) == 0.7
    # Eight even frames and two at scene changes: still the top 3, so one high frame among ten
    # weighs as much as one among eight.
    assert top_third_mean([1.0] + [0.0] * 9, n_uniform=8) == pytest.approx(1 / 3)
    assert top_third_mean([1.0] + [0.0] * 9) == pytest.approx(1 / 4)
    assert top_third_mean([0.9, 0.1], n_uniform=9) == pytest.approx(0.5)  # never more than there are
    with pytest.raises(ValueError):
        top_third_mean([])
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert suspect_segments(times, [0.9, 0.8, 0.1, 0.2, 0.7, 0.9], 0.5) == [[0.0, 0.5], [2.0, 2.5]]
    assert suspect_segments(times, [0.1] * 6, 0.5) == []


def test_registry_names():
    # A subset: other detectors register here too.
    assert {"c2pa", "hf-classifier", "invisible-watermark", "metadata-provenance"} <= set(registry.DETECTORS)
    assert registry.get("c2pa").name == "c2pa"
    with pytest.raises(KeyError, match="known:"):
        registry.get("nope")

    class Clash:
        name = "c2pa"

    with pytest.raises(ValueError, match="taken"):
        registry.register(Clash)
