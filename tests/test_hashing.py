"""Sniffing, decoding and perceptual hashing of images and videos (detectors.hashing, .video)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import fixtures_dir
from PIL import Image

from detectors.hashing import (
    MediaDecodeError,
    decode_image,
    hamming,
    image_phash,
    probe_media,
    sniff_mime,
    video_frame_hashes,
    video_match,
)
from detectors.video import sample_frames, video_duration_s



def fixture_dir(sub: str) -> Path:
    return fixtures_dir() / sub


# ---------------------------------------------------------------------------- media makers


def make_image(seed: int = 0, size: tuple[int, int] = (320, 240), fmt: str = "JPEG") -> bytes:
    """A smooth picture with some texture, so hashes and watermarks behave as on photos."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.zeros((h, w, 3))
    for _ in range(6):
        colour, (cx, cy, r) = rng.random(3), rng.random(3)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.1 * r))[..., None] * colour
    img = img / img.max() * 220 + rng.normal(0, 4, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


def make_video(
    seed: int = 0,
    seconds: float = 3.0,
    fps: int = 25,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    fmt: str = "mp4",
    brightness: float = 1.0,
) -> bytes:
    """Coloured blobs drifting over a dark field, encoded with PyAV."""
    import av

    rng = np.random.default_rng(seed)
    blobs = rng.random((6, 5))
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            t = i / fps
            img = np.zeros((h, w, 3))
            for b in blobs:
                cx, cy = b[0] + 0.3 * np.sin(t * b[1] * 3), b[2] + 0.3 * np.cos(t * b[3] * 3)
                img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.05 * b[4]))[..., None] * b[:3]
            frame = (np.clip(img * brightness, 0, 1) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def reencode(data: bytes, codec: str = "mpeg4", size: tuple[int, int] = (200, 150), fmt: str = "mp4") -> bytes:
    """Another encoding of the same video: new codec, new size, low bitrate."""
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, av.open(out, "w", format=fmt) as dst:
        stream = dst.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.bit_rate = 200_000
        for frame in src.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            new = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width=size[0], height=size[1])
            for packet in stream.encode(new):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out.getvalue()


# ---------------------------------------------------------------------------- images


def test_phash_matches_imagehash_reference_values():
    folder = fixture_dir("dedup/imagehash")
    rows = [r for r in csv.DictReader((folder / "expected_hashes.csv").open()) if r["algorithm"] == "phash"]
    assert rows, "expected_hashes.csv lists no pHash"
    for row in rows:
        data = (folder / row["file"]).read_bytes()
        assert image_phash(data) == row["expected_hash"], row["file"]
        info = probe_media(data, "image/png")
        assert (info.kind, info.mime, info.phash) == ("image", "image/png", row["expected_hash"])


def test_draft_mode_phash_stays_within_a_few_bits_of_full_decode():
    import imagehash

    folder = fixture_dir("pdq/images/bridge-mods")
    path = folder / "aaa-orig.jpg"
    data = path.read_bytes()
    plain = str(imagehash.phash(Image.open(path)))
    assert len(image_phash(data)) == 16
    assert hamming(image_phash(data), plain) <= 4
    info = probe_media(data, "image/jpeg")
    assert (info.width, info.height) == Image.open(path).size  # full size, not the draft size


@pytest.mark.parametrize(
    "data, mime",
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00", "video/quicktime"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00", "image/avif"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"\n  <!DOCTYPE html><html><body>403</body></html>", "text/html"),
        (b'{"error": "not found"}', "application/json"),
        (b"Access denied\n", "text/plain"),
        (b"\x00\x01\x02\x03garbage", None),
    ],
)
def test_sniff_mime(data, mime):
    assert sniff_mime(data) == mime


def test_truncated_jpeg_is_corrupt():
    data = make_image(fmt="JPEG")
    with pytest.raises(MediaDecodeError, match="^corrupt image: truncated$"):
        decode_image(data[: len(data) // 2])
    with pytest.raises(MediaDecodeError, match="corrupt image: truncated"):
        probe_media(data[: len(data) // 2], "image/jpeg")


def test_html_served_as_jpeg_is_not_an_image():
    page = b"<!doctype html><html><head><title>Login</title></head><body>Sign in</body></html>"
    with pytest.raises(MediaDecodeError, match="^not an image: sniffed text/html$"):
        probe_media(page, "image/jpeg")
    with pytest.raises(MediaDecodeError, match="^not an image: sniffed text/html$"):
        image_phash(page)
    with pytest.raises(MediaDecodeError, match="not an image: empty file"):
        probe_media(b"", "image/png")
    with pytest.raises(MediaDecodeError, match="not media: unrecognised bytes"):
        probe_media(b"\x00\x01\x02\x03" * 10, None)


def test_decompression_bomb_is_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (8000, 7000)).save(buf, "PNG")  # 56 Mpixel in a few KB
    with pytest.raises(MediaDecodeError, match="decompression bomb"):
        decode_image(buf.getvalue())


def test_same_picture_hashes_close_and_different_pictures_far():
    a = make_image(1, fmt="PNG")
    a_jpeg = io.BytesIO()
    Image.open(io.BytesIO(a)).resize((200, 150)).save(a_jpeg, "JPEG", quality=70)
    b = make_image(2, fmt="PNG")
    assert hamming(image_phash(a), image_phash(a_jpeg.getvalue())) <= 6
    assert hamming(image_phash(a), image_phash(b)) > 10


def test_hamming_checks_its_input():
    assert hamming("ff00", "0f00") == 4
    with pytest.raises(ValueError, match="differ in length"):
        hamming("ff", "ff00")
    with pytest.raises(ValueError, match="not hex"):
        hamming("zz", "ff")


# ---------------------------------------------------------------------------- videos


def test_video_frame_hashes_match_a_reencoded_copy_and_not_another_video():
    original = make_video(seed=0)
    copy = reencode(original, codec="mpeg4", size=(200, 150))
    other = make_video(seed=1)

    h_orig, h_copy, h_other = (video_frame_hashes(v) for v in (original, copy, other))
    assert len(h_orig) == 6  # 0.0, 0.5 ... 2.5 s of a 3 s clip
    assert all(len(h) == 16 for h in h_orig)
    assert video_match(h_orig, h_copy) == (True, 1.0)
    matched, share = video_match(h_orig, h_other)
    assert not matched and share < 0.5

    info = probe_media(copy, "video/mp4")
    assert (info.kind, info.mime, info.width, info.height) == ("video", "video/mp4", 200, 150)
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert info.phash is None and video_match(info.frame_hashes, h_orig)[0]


def test_video_match_needs_half_of_both_videos():
    short = ["0" * 16] * 2
    long = ["0" * 16] * 2 + ["f" * 16] * 6
    assert video_match(short, long) == (False, 0.25)  # all of short is in long, not the reverse
    assert video_match([], long) == (False, 0.0)


def test_long_video_frames_are_spread_over_its_whole_length():
    video = make_video(seconds=6.0, fps=10)
    hashes = video_frame_hashes(video, every_s=0.5, max_frames=4)
    assert len(hashes) == 4  # every 1.5 s instead of the first 2 s


def test_corrupt_video_raises():
    video = make_video()
    for bad, reason in [
        (video[: len(video) // 3], "corrupt video"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "corrupt video"),
    ]:
        with pytest.raises(MediaDecodeError, match=reason):
            probe_media(bad, "video/mp4")
    with pytest.raises(MediaDecodeError, match="not a video: sniffed text/html"):
        probe_media(b"<html><body>gone</body></html>", "video/mp4")


def test_sample_frames_spreads_over_the_duration():
    frames = sample_frames(make_video(seconds=4.0), n=8)
    times = [f.t_s for f in frames]
    assert len(frames) == 8 and times == sorted(times)
    assert times[0] == pytest.approx(0.25, abs=0.05) and times[-1] == pytest.approx(3.75, abs=0.05)
    assert frames[0].image.size == (160, 120) and frames[0].image.mode == "RGB"
    small = sample_frames(make_video(size=(320, 240)), n=2, max_side=64)
    assert small[0].image.size == (64, 48)


def test_sample_frames_without_duration_metadata():
    raw = make_video(seconds=2.0, fmt="h264")  # a bare H.264 stream: no container, no durations
    duration = video_duration_s(raw)
    assert duration == pytest.approx(2.0, abs=0.1)
    frames = sample_frames(raw, n=4)
    targets = [(i + 0.5) * duration / 4 for i in range(4)]
    # Each sample is the first frame at or after its target: within one frame (0.04 s) of it.
    assert len(frames) == 4
    assert all(0 <= f.t_s - t < 0.041 for f, t in zip(frames, targets))
    with pytest.raises(MediaDecodeError):
        sample_frames(b"\x00" * 100)


def test_exif_rotation_is_applied_before_hashing():
    upright = Image.open(io.BytesIO(make_image(5, size=(240, 320), fmt="PNG")))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 320x240
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    info = probe_media(buf.getvalue(), "image/jpeg")
    assert (info.width, info.height) == (240, 320)
    png = io.BytesIO()
    upright.save(png, "PNG")
    assert hamming(info.phash, image_phash(png.getvalue())) <= 4
