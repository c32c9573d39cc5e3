"""The one interface every embedding model implements.

An encoder turns fixed-length mono audio windows (at its own sample rate) and texts into L2-normalised
vectors of one dimension, so that inner product is cosine similarity. Vision encoders also embed images.
The CLAP models, the bundled starter model and the audio-visual concatenation are all encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class EncoderInfo:
    """What an index records about the model that made its vectors (its provenance)."""

    model_id: str  # registry name, or "laion-clap:<file name>" for a local checkpoint
    family: str  # implementation: "laion_clap", "starter", ...
    dim: int
    sample_rate: int
    window_seconds: float
    checkpoint_sha256: str
    metric: str = "inner_product"
    # Everything a reader needs to reproduce the vectors from raw audio (resampler, quantisation, padding).
    preprocessing: dict[str, Any] = field(default_factory=dict)
    # Whether the model also embeds images (CLIP-style vision tower).
    modalities: tuple[str, ...] = ("audio", "text")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))


@runtime_checkable
class Encoder(Protocol):
    """An embedding model: audio windows and texts to unit vectors in one space."""

    info: EncoderInfo

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Embed mono float32 windows at `info.sample_rate` -> (n, dim) float32, unit norm.

        Each window holds at most `info.window_samples` samples. Shorter ones (a short file) are padded
        by the encoder as its reference code does; callers pass real samples, never padding of their own.
        """
        ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts -> (n, dim) float32, unit norm."""
        ...


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `x` scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)
