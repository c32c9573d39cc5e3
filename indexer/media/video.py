"""Reading video frames at chosen times with PyAV (for the CLIP side of audio-visual indexing).

The video stream is decoded once, front to back, and only the frames nearest to the requested times are
converted to RGB arrays: conversion and resizing cost more than decoding, and one pass avoids seeking
inaccuracy around keyframes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.errors import AudioDecodeError
from indexer.media.source import MediaSource, media_path, open_media


class VideoDecodeError(AudioDecodeError):
    """A video file whose frames cannot be read."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(path, reason)
        self.args = (f"{path}: cannot decode video ({reason})",)


# Seek this far before the earliest time wanted: the nearest frame may lie just before it.
SEEK_MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class VideoInfo:
    duration: float
    frame_rate: float
    width: int
    height: int


def has_video_stream(path: MediaSource) -> bool:
    """True when the container holds a video stream (cover art in audio files does not count)."""
    import av

    try:
        with open_media(path) as f, av.open(f, metadata_errors="ignore") as container:
            return any(
                s.type == "video" and not (s.disposition & av.stream.Disposition.attached_pic)
                for s in container.streams
            )
    except Exception:  # unreadable: the audio decoder reports why
        return False


def video_duration(path: MediaSource) -> float:
    """Seconds of the first video stream (container duration when the stream does not say)."""
    import av

    try:
        with open_media(path) as f, av.open(f, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
            last = 0.0
            for frame in container.decode(stream):  # no header duration: decode to the end
                last = float(frame.time or last)
            return last
    except Exception as e:  # PyAV/FFmpeg errors have many types
        raise VideoDecodeError(media_path(path), str(e).splitlines()[0][:160] if str(e) else type(e).__name__) from e


def frames_at(path: MediaSource, times: Sequence[float], max_side: int = 256, seek: bool = False) -> list[np.ndarray]:
    """RGB frames (h, w, 3) uint8 nearest to each time in `times` (seconds), in the order given.

    Frames are shrunk so that their longer side is at most `max_side` (CLIP models take 224 px).
    `seek` starts decoding at the keyframe before the earliest time instead of at the beginning: a long
    file read a few windows at a time then decodes each stretch once, not everything before it again.
    """
    import av

    if not times:
        return []
    wanted = sorted(set(float(t) for t in times))
    best: dict[float, tuple[float, "av.VideoFrame"]] = {}
    try:
        with open_media(path) as f, av.open(f, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VideoDecodeError(media_path(path), "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if seek and wanted[0] > SEEK_MARGIN_SECONDS and stream.time_base is not None:
                # backward: the keyframe at or before the target, so every frame from there on is decoded.
                target = int((wanted[0] - SEEK_MARGIN_SECONDS) / stream.time_base)
                container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time)
                # Requested times this frame could be nearest to: those within reach on either side.
                i = bisect.bisect_left(wanted, t)
                for j in (i - 1, i):
                    if 0 <= j < len(wanted):
                        distance = abs(wanted[j] - t)
                        if wanted[j] not in best or distance < best[wanted[j]][0]:
                            best[wanted[j]] = (distance, frame)
                if t > wanted[-1] and all(w in best for w in wanted):
                    break
            out = {w: _to_rgb(frame, max_side) for w, (_, frame) in best.items()}
    except VideoDecodeError:
        raise
    except Exception as e:  # PyAV/FFmpeg errors have many types
        raise VideoDecodeError(media_path(path), str(e).splitlines()[0][:160] if str(e) else type(e).__name__) from e
    if not out:
        raise VideoDecodeError(media_path(path), "video stream holds no frames")
    # Times past the last frame get the last frame.
    last = out[max(out)]
    return [out.get(float(t), last) for t in times]


def _to_rgb(frame: "av.VideoFrame", max_side: int) -> np.ndarray:  # noqa: F821
    scale = min(1.0, max_side / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    return frame.to_ndarray(format="rgb24", width=width, height=height)
