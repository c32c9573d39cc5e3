"""Hubness correction for text queries, computed when an index is built and applied at query time.

In a high-dimensional joint space some items sit close to every query ("hubs"): a crowd of short noise
clips, for one, fills the top of unrelated text queries. Centring the text side on the mean of a bank of
reference queries removes the part of every query that all queries share:

    score(q, x) = <q - mu, x> / |q - mu|,    mu = beta * mean of the reference queries' unit vectors

For one query this subtracts <mu, x> from every item's cosine (the rest is a per-query constant): an item's
penalty is its mean similarity to the reference queries, which is CSLS's hubness term (Lample et al.
2018) with the neighbourhood taken as the whole bank, and query-side centring (Suzuki et al. 2013). Being
a change of the query vector, it runs before the FAISS search, on any index type, with filters and
grouping unchanged. The reference bank is the demo corpus's sound-class names, bare and in CLIP's
template: generic sound queries, none of them from an evaluation set.

The correction is stored as `hubness.json` in the index directory, with the encoder's model id and
checkpoint hash; a correction made by another model is ignored, never applied.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.encoders.base import EncoderInfo, l2_normalize

FILE_NAME = "hubness.json"
METHOD = "text-query-centring"
# Strength of the centring; 1 removes the bank's mean entirely.
DEFAULT_BETA = 1.0


def reference_queries() -> list[str]:
    """The bank whose mean is removed from text queries: every demo sound class, bare and templated."""
    from indexer.demo import SOUND_CLASSES
    from indexer.starter.prompts import TEMPLATE

    labels = sorted(SOUND_CLASSES)
    return labels + [TEMPLATE.format(label=label) for label in labels]


@dataclass(frozen=True)
class HubnessCorrection:
    """The text-query centring of one index (see module docstring)."""

    model_id: str
    checkpoint_sha256: str
    beta: float
    text_mean: np.ndarray  # (dim,) mean of the reference queries' unit vectors (beta not applied)
    bank_sha256: str
    bank_size: int

    @classmethod
    def compute(cls, encoder, beta: float = DEFAULT_BETA) -> HubnessCorrection:  # encoder: indexer.encoders.Encoder
        """Embed the reference bank with `encoder` and keep its mean."""
        bank = reference_queries()
        vectors = l2_normalize(encoder.embed_text(bank))
        return cls(
            model_id=encoder.info.model_id,
            checkpoint_sha256=encoder.info.checkpoint_sha256,
            beta=beta,
            text_mean=vectors.mean(axis=0).astype(np.float32),
            bank_sha256=hashlib.sha256("\n".join(bank).encode()).hexdigest(),
            bank_size=len(bank),
        )

    def apply(self, query: np.ndarray) -> np.ndarray:
        """The centred, renormalised query vector(s) (last axis is the embedding)."""
        centred = np.asarray(query, dtype=np.float32) - self.beta * self.text_mean
        return l2_normalize(centred)

    def fits(self, info: EncoderInfo) -> bool:
        """Whether the correction was made by the encoder described by `info`."""
        return (
            self.model_id == info.model_id
            and self.checkpoint_sha256 == info.checkpoint_sha256
            and len(self.text_mean) == info.dim
        )

    def to_json(self) -> dict[str, object]:
        return {
            "method": METHOD,
            "model_id": self.model_id,
            "checkpoint_sha256": self.checkpoint_sha256,
            "beta": self.beta,
            "bank_sha256": self.bank_sha256,
            "bank_size": self.bank_size,
            "text_mean": [float(v) for v in self.text_mean],
        }

    def save(self, directory: Path) -> Path:
        """Write `hubness.json` into the index directory atomically."""
        path = Path(directory) / FILE_NAME
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(temporary, path)
        return path


def load_correction(directory: Path, info: EncoderInfo) -> HubnessCorrection | None:
    """The index's correction if it has one made by this encoder; None otherwise (unreadable counts as none:
    search then runs uncorrected, as for indexes built before corrections existed)."""
    path = Path(directory) / FILE_NAME
    try:
        raw = json.loads(path.read_text())
        if raw.get("method") != METHOD:
            return None
        correction = HubnessCorrection(
            model_id=raw["model_id"],
            checkpoint_sha256=raw["checkpoint_sha256"],
            beta=float(raw["beta"]),
            text_mean=np.asarray(raw["text_mean"], dtype=np.float32),
            bank_sha256=raw["bank_sha256"],
            bank_size=int(raw["bank_size"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return correction if correction.fits(info) else None


def ensure_correction(directory: Path, encoder) -> HubnessCorrection | None:
    """Compute and save the correction unless the index already has one for this encoder. Audio-visual
    encoders (text queries per modality) get none."""
    if hasattr(encoder, "restrict") or "text" not in encoder.info.modalities:
        return None
    existing = load_correction(directory, encoder.info)
    if existing is not None:
        return existing
    correction = HubnessCorrection.compute(encoder)
    correction.save(directory)
    return correction
