"""Frame sampling from video bytes with PyAV.

Frames are taken by decoding the stream in order and keeping the first frame at or after
each wanted time. That is slower than seeking but gives the same frames for the same
content whatever the keyframe layout, which is what frame hashing and scoring need.
Scene-change sampling and face crops come later.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from detectors.hashing import MediaDecodeError

if TYPE_CHECKING:
    from PIL import Image

# Timestamps from containers are rounded to the stream time base; a frame this close before a
# wanted time counts as "at" it, so 0.5 s sampling of a 25 fps clip does not slip a frame.
_TIME_SLACK_S = 1e-3


@dataclass(frozen=True)
class SampledFrame:
    t_s: float  # seconds from the first decoded frame
    image: "Image.Image"


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

    stream = container.streams.video[0]
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
            t = frame.time if frame.time is not None else index / rate
            if base is None:
                base = t
            index += 1
            yield max(0.0, t - base), frame


def frames_at(
    data: bytes, offsets_s: list[float], max_side: int | None = None
) -> list[SampledFrame]:
    """The first frame at or after each offset (seconds from the first frame).

    Offsets past the end are dropped; when none could be met the last frame stands in,
    so any decodable video gives at least one frame. Raises MediaDecodeError when no frame
    decodes at all.
    """
    wanted = sorted(set(offsets_s))
    container = _open(data)
    taken: list[SampledFrame] = []
    last: tuple[float, Any] | None = None
    try:
        i = 0
        for t, frame in _decoded_frames(container):
            last = (t, frame)
            if i < len(wanted) and t + _TIME_SLACK_S >= wanted[i]:
                taken.append(SampledFrame(t_s=round(t, 3), image=_to_image(frame, max_side)))
                # One frame satisfies every wanted time it has already passed.
                while i < len(wanted) and t + _TIME_SLACK_S >= wanted[i]:
                    i += 1
            if i >= len(wanted):
                break
    finally:
        container.close()
    if last is None:
        raise MediaDecodeError("corrupt video: no frame could be decoded")
    if not taken:
        taken.append(SampledFrame(t_s=round(last[0], 3), image=_to_image(last[1], max_side)))
    return taken


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
