"""From one media file to what an encoder embeds: windows of samples, and frames for audio-visual models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.encoders.base import Encoder, l2_normalize
from indexer.errors import AudioDecodeError
from indexer.media import VIDEO_EXTENSIONS, decode_audio
from indexer.media.video import frames_at, has_video_stream, video_duration
from indexer.windows import cut_windows, window_starts


@dataclass
class SegmentInputs:
    """A file cut into windows: each window's samples (None without sound) and frames (None without picture)."""

    spans: list[tuple[float, float]]
    samples: list[np.ndarray | None]
    frames: list[list[np.ndarray] | None]
    duration: float
    source_rate: int
    channels: int

    @property
    def modalities(self) -> str:
        audio = any(s is not None for s in self.samples)
        visual = any(f is not None for f in self.frames)
        return "audio+visual" if audio and visual else "visual" if visual else "audio"


@dataclass(frozen=True)
class WindowPlan:
    """How to cut a file for an encoder: all a decoding worker process needs to know (picklable)."""

    sample_rate: int
    window_samples: int
    hop_samples: int
    frames_per_window: int = 0  # 0: the encoder takes no frames

    @classmethod
    def of(cls, encoder: Encoder, hop_seconds: float | None = None) -> "WindowPlan":
        info = encoder.info
        hop = max(1, int(round((hop_seconds or info.window_seconds) * info.sample_rate)))
        frames = int(getattr(encoder, "frames_per_window", 0)) if hasattr(encoder, "embed_segments") else 0
        return cls(info.sample_rate, info.window_samples, hop, frames)

    def frame_times(self, start: float, end: float) -> list[float]:
        """Where to sample a window's frames: its middle, or k evenly spaced points."""
        k = self.frames_per_window
        return [start + (i + 0.5) * (end - start) / k for i in range(k)]


def segment_inputs(encoder: Encoder | WindowPlan, path: str | Path, hop_seconds: float | None = None) -> SegmentInputs:
    """Decode `path` and cut it into the encoder's windows; audio-visual encoders also get frames.

    Raises AudioDecodeError (VideoDecodeError for frames) naming the file and the reason.
    """
    path = Path(path)
    plan = encoder if isinstance(encoder, WindowPlan) else WindowPlan.of(encoder, hop_seconds)
    window, hop, sr = plan.window_samples, plan.hop_samples, plan.sample_rate
    wants_frames = plan.frames_per_window > 0 and path.suffix.lower() in VIDEO_EXTENSIONS
    video = wants_frames and has_video_stream(path)
    try:
        decoded = decode_audio(path, sr)
    except AudioDecodeError:
        if not video:
            raise
        decoded = None  # a silent video: indexed by its pictures alone
    if decoded is not None:
        windows = cut_windows(decoded.samples, window, hop)
        spans = [w.seconds(sr) for w in windows]
        samples: list[np.ndarray | None] = [w.samples for w in windows]
        duration, rate, channels = decoded.duration, decoded.source_rate, decoded.source_channels
    else:
        duration = video_duration(path)
        n = int(duration * sr)
        spans = [(s / sr, min(s + window, n) / sr) for s in window_starts(n, window, hop)]
        samples, rate, channels = [None] * len(spans), 0, 0
    if not spans:
        raise AudioDecodeError(path, "no audio samples")
    frames: list[list[np.ndarray] | None] = [None] * len(spans)
    if video:
        times = [plan.frame_times(a, b) for a, b in spans]
        flat = frames_at(path, [t for ts in times for t in ts])
        frames, start = [], 0
        for ts in times:
            frames.append(flat[start : start + len(ts)])
            start += len(ts)
    return SegmentInputs(spans, samples, frames, duration, rate, channels)


def embed_inputs(encoder: Encoder, samples: list, frames: list) -> np.ndarray:
    """Vectors of windows (and frames, for audio-visual encoders)."""
    if hasattr(encoder, "embed_segments"):
        return encoder.embed_segments(samples, frames)  # type: ignore[attr-defined]
    return encoder.embed_audio(samples)


@dataclass(frozen=True)
class FileEmbedding:
    """A file's window vectors with their spans in seconds, and the file vector (their normalised mean)."""

    spans: list[tuple[float, float]]
    vectors: np.ndarray  # (n_windows, dim)
    file_vector: np.ndarray  # (dim,)
    duration: float


def embed_file(encoder: Encoder, path: str | Path, hop_seconds: float | None = None, batch_size: int = 16) -> FileEmbedding:
    """Embed `path` window by window. Raises AudioDecodeError for unreadable or empty media."""
    inputs = segment_inputs(encoder, path, hop_seconds)
    n = len(inputs.spans)
    vectors = np.concatenate([
        embed_inputs(encoder, inputs.samples[i : i + batch_size], inputs.frames[i : i + batch_size])
        for i in range(0, n, batch_size)
    ])
    return FileEmbedding(inputs.spans, vectors, l2_normalize(vectors.mean(axis=0)), inputs.duration)
