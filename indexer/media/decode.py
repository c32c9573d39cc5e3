"""Decode audio (and the audio track of video containers) to mono float32 at a target rate.

Backends are tried in order, libsndfile first (exact and fast for wav/flac/ogg/mp3), PyAV second (opus,
m4a/aac and every container FFmpeg knows). When all fail, one AudioDecodeError carries each backend's
reason. Channels are averaged to mono and the result resampled with soxr at "HQ" quality, which is what
librosa.load (laion_clap's own file path) does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from indexer.errors import AudioDecodeError

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v"})
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at `sample_rate`, with what the source file was."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int
    backend: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    # Bytes, not str: file names that are not UTF-8 reach libsndfile as their exact bytes.
    data, rate = soundfile.read(os.fsencode(path), dtype="float32", always_2d=True)
    return data, int(rate)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    with open(path, "rb") as f, av.open(f, metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        # Resample to packed float32 at the stream's own rate and layout; rate conversion is done once, by soxr.
        channels = stream.codec_context.channels or 1
        resampler = None
        chunks: list[np.ndarray] = []
        rate = stream.codec_context.sample_rate or stream.rate
        for frame in container.decode(stream):
            if resampler is None:
                rate = frame.sample_rate
                channels = len(frame.layout.channels)
                resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, channels))
        if resampler is not None:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1, channels))
    if not chunks:
        raise ValueError("audio stream holds no samples")
    return np.concatenate(chunks, axis=0), int(rate)


# Tried in order; each raises on failure.
BACKENDS: dict[str, Callable[[Path], tuple[np.ndarray, int]]] = {
    "soundfile": _read_soundfile,
    "pyav": _read_pyav,
}


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 resampled as librosa.resample(res_type='soxr_hq') does it, length included.

    librosa fixes the length to ceil(n * target / source) (soxr may return one sample less); matching
    it keeps resound's vectors equal to laion_clap's file path, where repeat-padding sees every sample.
    """
    if source_rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    out = soxr.resample(samples.astype(np.float32), source_rate, target_rate, quality="HQ").astype(np.float32)
    # librosa's exact float expression: n * (target / source) can round up past an integer (one sample more).
    length = int(np.ceil(len(samples) * (float(target_rate) / source_rate)))
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
    return out[:length]


def decode_audio(path: str | Path, sample_rate: int) -> DecodedAudio:
    """Decode `path` to mono float32 at `sample_rate`. Raises AudioDecodeError naming the file and reasons."""
    path = Path(path)
    reasons: list[str] = []
    for name, read in BACKENDS.items():
        if name == "soundfile" and path.suffix.lower() in VIDEO_EXTENSIONS:
            continue  # libsndfile reads no video container; skip its misleading error
        try:
            data, rate = read(path)
        except Exception as e:  # each backend has its own error types; all are reported together
            reasons.append(f"{name}: {_first_line(e)}")
            continue
        if data.size == 0 or rate <= 0:
            reasons.append(f"{name}: no audio samples")
            continue
        if not np.all(np.isfinite(data)):
            raise AudioDecodeError(path, "samples contain NaN or infinity")
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        return DecodedAudio(
            samples=resample(mono, rate, sample_rate),
            sample_rate=sample_rate,
            source_rate=rate,
            source_channels=int(data.shape[1]),
            backend=name,
        )
    raise AudioDecodeError(path, reasons)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:160] if text else type(e).__name__) or type(e).__name__
