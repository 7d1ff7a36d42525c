"""Frame sampling from video bytes with PyAV.

Frames are taken by decoding the stream in order and keeping the first frame at or after
each wanted time. That is slower than seeking but gives the same frames for the same
content whatever the keyframe layout, which is what frame hashing and scoring need.

`sample_frames_and_scene_changes` adds, in the same single decoding pass, the first frame of
each new shot: a face swap is often spliced in as a shot of its own, which uniform sampling can
step over. Each sampled frame says why it was taken.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from detectors.hashing import MediaDecodeError

if TYPE_CHECKING:
    from PIL import Image

# Timestamps from containers are rounded to the stream time base; a frame this close before a
# wanted time counts as "at" it, so 0.5 s sampling of a 25 fps clip does not slip a frame.
_TIME_SLACK_S = 1e-3


UNIFORM = "uniform"
SCENE_CHANGE = "scene_change"


@dataclass(frozen=True)
class SampledFrame:
    t_s: float  # seconds from the first decoded frame
    image: "Image.Image"
    # Why the frame was taken: UNIFORM, SCENE_CHANGE, or both when one frame was both.
    reasons: tuple[str, ...] = (UNIFORM,)
    scene_score: float | None = None  # the scene-change score, for SCENE_CHANGE frames


@dataclass(frozen=True)
class VideoMeta:
    width: int
    height: int
    duration_s: float | None  # None when neither the container nor the packets say


def _open(data: bytes) -> Any:
    import av

    if not data:
        raise MediaDecodeError("corrupt video: empty file")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaDecodeError(f"corrupt video: {_ffmpeg_reason(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise MediaDecodeError("not a video: no video stream in the container")
    return container


def _ffmpeg_reason(exc: Exception) -> str:
    # FFmpeg errors carry "[Errno N] message: '<stream>'"; the message is the useful part.
    return getattr(exc, "strerror", None) or str(exc)


def _metadata_duration_s(container: Any) -> float | None:
    stream = container.streams.video[0]
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # container durations are in AV_TIME_BASE (µs)
    return None


def _packet_duration_s(data: bytes) -> float | None:
    """Span of the packet timestamps: cheap, as nothing is decoded."""
    container = _open(data)
    first = last = None
    try:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
    except Exception:  # a damaged tail still leaves the packets read so far usable
        pass
    finally:
        container.close()
    if first is None or last is None or last <= first:
        return None
    return last - first


def probe_video(data: bytes) -> VideoMeta:
    """Width, height and duration of the first video stream; raises MediaDecodeError."""
    container = _open(data)
    try:
        ctx = container.streams.video[0].codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        duration = _metadata_duration_s(container)
    finally:
        container.close()
    if duration is None:
        duration = _packet_duration_s(data)
    return VideoMeta(width=width, height=height, duration_s=duration)


def _decoded_frames(container: Any) -> Iterator[tuple[float, Any]]:
    """(seconds since the first frame, av.VideoFrame) in presentation order of decoding.

    Damaged packets are skipped rather than ending the walk, so one bad packet in the middle
    of a file does not hide the rest of it.
    """
    import av

    from detectors.media_limits import FrameBudget, check_video_size

    stream = container.streams.video[0]
    check_video_size(int(stream.codec_context.width or 0), int(stream.codec_context.height or 0))
    budget = FrameBudget()  # frames x pixels: a small file of endless 8K frames is a bomb (issue 16)
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate) if stream.average_rate else 25.0
    base: float | None = None
    index = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:
            return  # the container breaks off here (a cut-short file): keep what came before
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            continue
        for frame in frames:
            budget.spend(frame.width, frame.height)
            t = frame.time if frame.time is not None else index / rate
            if base is None:
                base = t
            index += 1
            yield max(0.0, t - base), frame


# Scene-change score, after FFmpeg's `scdet` filter: the mean absolute difference (MAFD) of two
# consecutive frames' small luma thumbnails, in [0, 1], then min(mafd, |mafd - previous mafd|).
# A pan or a shaky camera changes every pixel a little on every frame, so its MAFD is high but
# flat; a cut is a spike above the frames before it. 0.10 is scdet's own default (10 of 100).
_THUMB_SIDE = 32
DEFAULT_SCENE_THRESHOLD = 0.10
DEFAULT_MAX_SCENE_FRAMES = 8
# A flash or a strobe gives several spikes in a row; one frame for them is enough.
DEFAULT_MIN_SCENE_GAP_S = 0.5


@dataclass(frozen=True)
class SceneSettings:
    """When a frame counts as the start of a new shot, and how many such frames to keep."""

    threshold: float = DEFAULT_SCENE_THRESHOLD
    max_frames: int = DEFAULT_MAX_SCENE_FRAMES
    min_gap_s: float = DEFAULT_MIN_SCENE_GAP_S

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"scene-change threshold must be in (0, 1], got {self.threshold}")
        if self.max_frames < 0:
            raise ValueError(f"max scene-change frames must be 0 or more, got {self.max_frames}")
        if self.min_gap_s < 0:
            raise ValueError(f"min gap between scene changes must be 0 or more seconds, got {self.min_gap_s}")


@dataclass
class _SceneTracker:
    """Keeps the `max_frames` strongest shot starts, at least `min_gap_s` apart (of changes
    closer than that, the first)."""

    settings: SceneSettings
    max_side: int | None
    kept: list[SampledFrame] = field(default_factory=list)
    _previous_thumb: Any = None
    _previous_mafd: float = 0.0
    _reformatter: Any = None

    def see(self, t: float, frame: Any) -> None:
        import numpy as np

        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            # One reformatter for the whole walk keeps its scaler: frame.reformat() builds a new
            # one per call, which costs ~20x the shrinking itself (1.4 vs 0.06 ms a frame).
            self._reformatter = VideoReformatter()
        # AREA averages every pixel into the thumbnail, so sensor noise cancels out instead of
        # reading as change.
        small = self._reformatter.reformat(
            frame, width=_THUMB_SIDE, height=_THUMB_SIDE, format="gray", interpolation="AREA"
        )
        thumb = small.to_ndarray().astype(np.float32) / 255.0
        previous, self._previous_thumb = self._previous_thumb, thumb
        if previous is None:
            return  # the first frame starts the video, not a new shot
        mafd = float(np.abs(thumb - previous).mean())
        score = min(mafd, abs(mafd - self._previous_mafd))
        self._previous_mafd = mafd
        if score >= self.settings.threshold and self.settings.max_frames > 0:
            self._offer(round(t, 3), score, frame)

    def _offer(self, t: float, score: float, frame: Any) -> None:
        last = self.kept[-1] if self.kept else None
        if last is not None and t - last.t_s < self.settings.min_gap_s:
            # The earlier change wins: after a flash it is the flash either way, and of a short
            # spliced-in shot it is the shot itself, not the cut back out of it.
            return
        if len(self.kept) >= self.settings.max_frames:
            weakest = min(range(len(self.kept)), key=lambda i: self.kept[i].scene_score or 0.0)
            if score <= (self.kept[weakest].scene_score or 0.0):
                return
            del self.kept[weakest]
        self.kept.append(self._frame(t, score, frame))

    def _frame(self, t: float, score: float, frame: Any) -> SampledFrame:
        return SampledFrame(t_s=t, image=_to_image(frame, self.max_side), reasons=(SCENE_CHANGE,),
                            scene_score=round(score, 4))


def _walk(
    data: bytes, offsets_s: list[float], max_side: int | None, scenes: _SceneTracker | None
) -> list[SampledFrame]:
    """Uniform frames at `offsets_s` and, when `scenes` is given, feed it every decoded frame."""
    wanted = sorted(set(offsets_s))
    container = _open(data)
    taken: list[SampledFrame] = []
    last: tuple[float, Any] | None = None
    try:
        i = 0
        for t, frame in _decoded_frames(container):
            last = (t, frame)
            if scenes is not None:
                scenes.see(t, frame)
            if i < len(wanted) and t + _TIME_SLACK_S >= wanted[i]:
                taken.append(SampledFrame(t_s=round(t, 3), image=_to_image(frame, max_side)))
                # One frame satisfies every wanted time it has already passed.
                while i < len(wanted) and t + _TIME_SLACK_S >= wanted[i]:
                    i += 1
            if i >= len(wanted) and scenes is None:
                break
    finally:
        container.close()
    if last is None:
        raise MediaDecodeError("corrupt video: no frame could be decoded")
    if not taken:
        taken.append(SampledFrame(t_s=round(last[0], 3), image=_to_image(last[1], max_side)))
    return taken


def frames_at(
    data: bytes, offsets_s: list[float], max_side: int | None = None
) -> list[SampledFrame]:
    """The first frame at or after each offset (seconds from the first frame).

    Offsets past the end are dropped; when none could be met the last frame stands in,
    so any decodable video gives at least one frame. Raises MediaDecodeError when no frame
    decodes at all.
    """
    return _walk(data, offsets_s, max_side, None)


def _to_image(frame: Any, max_side: int | None) -> "Image.Image":
    if max_side and max(frame.width, frame.height) > max_side:
        scale = max_side / max(frame.width, frame.height)
        # Let swscale shrink the frame: far cheaper than converting a 4K frame to PIL first.
        frame = frame.reformat(
            width=max(1, round(frame.width * scale)),
            height=max(1, round(frame.height * scale)),
            format="rgb24",
            interpolation="AREA",
        )
    return frame.to_image()


def sample_frames(data: bytes, n: int = 8, *, max_side: int | None = None) -> list[SampledFrame]:
    """Up to `n` frames spread uniformly over the video (the middle of n equal slices).

    The duration comes from the stream or container metadata, or from the packet
    timestamps when the metadata lacks it. Short videos may give fewer than `n` distinct
    frames. `max_side` shrinks large frames during conversion. Raises MediaDecodeError.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    duration = video_duration_s(data)
    offsets = [(i + 0.5) * duration / n for i in range(n)]
    return frames_at(data, offsets, max_side=max_side)


def sample_frames_and_scene_changes(
    data: bytes, n: int = 8, *, max_side: int | None = None, scenes: SceneSettings | None = None
) -> list[SampledFrame]:
    """`n` uniform frames as `sample_frames` takes them, plus the first frame of each new shot.

    One decoding pass over the whole video. Shot starts are frames whose scene-change score
    reaches `scenes.threshold`; at most `scenes.max_frames` of them are kept (the strongest),
    at least `scenes.min_gap_s` apart. A frame that is both a uniform sample and a shot start
    is returned once with both reasons. Sorted by time. Raises MediaDecodeError.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    duration = video_duration_s(data)
    offsets = [(i + 0.5) * duration / n for i in range(n)]
    tracker = _SceneTracker(scenes or SceneSettings(), max_side)
    by_time = {f.t_s: f for f in _walk(data, offsets, max_side, tracker)}
    for cut in tracker.kept:
        same = by_time.get(cut.t_s)
        by_time[cut.t_s] = cut if same is None else SampledFrame(
            t_s=cut.t_s, image=same.image, reasons=same.reasons + cut.reasons, scene_score=cut.scene_score
        )
    return [by_time[t] for t in sorted(by_time)]


def video_duration_s(data: bytes) -> float:
    """Duration from metadata or packet timestamps, else by decoding every frame once.

    Raises MediaDecodeError when the bytes are no decodable video.
    """
    container = _open(data)
    try:
        duration = _metadata_duration_s(container)
    finally:
        container.close()
    if duration is None:
        duration = _packet_duration_s(data)
    if duration is None:
        # Neither metadata nor packets say (a raw stream): the last frame's time is the answer.
        container = _open(data)
        last = None
        try:
            for t, _frame in _decoded_frames(container):
                last = t
        finally:
            container.close()
        if last is None:
            raise MediaDecodeError("corrupt video: no frame could be decoded")
        duration = last
    return duration
