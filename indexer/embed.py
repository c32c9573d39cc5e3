"""Embedding one media file with an encoder: decode, cut windows, embed, and the file-level mean."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.encoders.base import Encoder, l2_normalize
from indexer.media import decode_audio
from indexer.windows import cut_windows


@dataclass(frozen=True)
class FileEmbedding:
    """A file's window vectors with their spans in seconds, and the file vector (their normalised mean)."""

    spans: list[tuple[float, float]]
    vectors: np.ndarray  # (n_windows, dim)
    file_vector: np.ndarray  # (dim,)
    duration: float


def embed_file(encoder: Encoder, path: str | Path, hop_seconds: float | None = None, batch_size: int = 16) -> FileEmbedding:
    """Embed `path` window by window. Raises AudioDecodeError for unreadable or empty audio."""
    from indexer.errors import AudioDecodeError

    info = encoder.info
    decoded = decode_audio(path, info.sample_rate)
    hop = int(round((hop_seconds or info.window_seconds) * info.sample_rate))
    windows = cut_windows(decoded.samples, info.window_samples, max(1, hop))
    if not windows:
        raise AudioDecodeError(path, "no audio samples")
    vectors = np.concatenate(
        [encoder.embed_audio([w.samples for w in windows[i : i + batch_size]]) for i in range(0, len(windows), batch_size)]
    )
    return FileEmbedding(
        spans=[w.seconds(info.sample_rate) for w in windows],
        vectors=vectors,
        file_vector=l2_normalize(vectors.mean(axis=0)),
        duration=decoded.duration,
    )
