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

import contextlib
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
            bank_sha256=_bank_sha256(),
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

    def save(self, directory: Path, name: str = FILE_NAME) -> Path:
        """Write `hubness.json` (or `name`) into the index directory atomically."""
        path = Path(directory) / name
        temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(temporary, path)
        return path


def load_correction(directory: Path, info: EncoderInfo) -> HubnessCorrection | None:
    """The index's correction if it has one made by this encoder; None otherwise (unreadable counts as none:
    search then runs uncorrected, as for indexes built before corrections existed)."""
    return _read_correction(Path(directory) / FILE_NAME, info)


def _read_correction(path: Path, info: EncoderInfo) -> HubnessCorrection | None:
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
    cached = _cache_file(encoder.info)
    correction = _read_correction(cached, encoder.info)
    if correction is None:
        correction = HubnessCorrection.compute(encoder)
        with contextlib.suppress(OSError):  # a read-only cache only costs the computation next build
            cached.parent.mkdir(parents=True, exist_ok=True)
            correction.save(cached.parent, cached.name)
    correction.save(directory)
    return correction


def _cache_file(info: EncoderInfo) -> Path:
    """Where the correction of the encoder described by `info` is kept between builds, by a hash of all it
    depends on (model, checkpoint, preprocessing with the text model, the bank): embedding the bank's
    texts costs a build ~0.3 s (0.1 s of loading the sentence encoder), 10-15% of indexing 100 files."""
    key = json.dumps({"model_id": info.model_id, "checkpoint_sha256": info.checkpoint_sha256, "dim": info.dim,
                      "preprocessing": info.preprocessing, "bank": _bank_sha256(), "beta": DEFAULT_BETA,
                      "method": METHOD}, sort_keys=True, default=str)
    root = os.environ.get("RESOUND_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "resound")
    return Path(root) / "hubness" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _bank_sha256() -> str:
    return hashlib.sha256("\n".join(reference_queries()).encode()).hexdigest()
