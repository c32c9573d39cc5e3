"""Audio to text: ranking candidate texts for an audio vector."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from indexer.encoders.base import Encoder, l2_normalize


def rank_texts(encoder: Encoder, audio_vector: np.ndarray, texts: Sequence[str], k: int = 10) -> list[tuple[str, float]]:
    """The `k` texts most similar to `audio_vector`, best first, with their cosine similarity."""
    if not texts:
        return []
    scores = l2_normalize(encoder.embed_text(list(texts))) @ audio_vector
    order = np.argsort(-scores, kind="stable")[:k]
    return [(texts[i], float(scores[i])) for i in order]
