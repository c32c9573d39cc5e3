"""Training configuration of ClipClap-GZSL; defaults follow the published code (config/clipclap.yaml and
commands.sh of dkurzend/ClipClap-GZSL) unless a comment says otherwise."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from search.gzsl.errors import GZSLConfigError

Similarity = Literal["l2", "dot", "cosine"]
ReconstructionTarget = Literal["text_encoding", "inputs"]


@dataclass(frozen=True)
class GZSLConfig:
    """Architecture, losses, optimisation and protocol settings; merge changes with `dataclasses.replace`."""

    # Architecture: encoders to `encoder_hidden`, then projections into the `joint_dim` space.
    joint_dim: int = 64
    encoder_hidden: int = 512  # O_enc / W_enc width
    projection_hidden: int = 512  # hidden width of the audio-visual projection O_proj and decoder D_o
    encoder_dropout: float = 0.1
    projection_dropout: float = 0.1  # O_proj, D_o ("decoder_dropout")
    text_dropout: float = 0.1  # W_proj, D_w ("additional_dropout")
    batch_norm: bool = True

    # Losses (each switchable for the ablation).
    cross_entropy: bool = True
    reconstruction: bool = True
    regression: bool = True
    # "text_encoding": the published code's decoders rebuild the 512-d encoded label embedding W_enc(t)
    # from both joint embeddings; "inputs": rebuild the raw inputs (features from the audio-visual
    # embedding, label embedding from the text embedding), as the paper's prose can be read.
    reconstruction_target: ReconstructionTarget = "text_encoding"
    # Score of a sample against a class at test time. The published code trains cross-entropy on dot
    # products but classifies by Euclidean distance ("l2": score = -distance); "dot"/"cosine" use that
    # similarity instead. Cross-entropy always uses the dot product, as published.
    similarity: Similarity = "l2"

    # Optimisation: Adam with weight decay 1e-5; ReduceLROnPlateau on the validation HM.
    lr: float = 1e-4
    weight_decay: float = 1e-5
    lr_patience: int = 3
    lr_factor: float = 0.1
    epochs: int = 15
    batches_per_epoch: int = 300
    batch_size: int = 64

    # Protocol: when no validation samples are given, this fraction of each validation-seen class's
    # samples is held out to measure seen accuracy during stage 1 (the benchmarks ship a val sample set).
    val_fraction: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        if not (self.cross_entropy or self.reconstruction or self.regression):
            raise GZSLConfigError("every loss is switched off: enable cross_entropy, reconstruction or regression")
        if self.similarity not in ("l2", "dot", "cosine"):
            raise GZSLConfigError(f"similarity {self.similarity!r} is not one of l2, dot, cosine")
        if self.reconstruction_target not in ("text_encoding", "inputs"):
            raise GZSLConfigError(f"reconstruction_target {self.reconstruction_target!r} is not text_encoding or inputs")
        for name in ("joint_dim", "encoder_hidden", "projection_hidden", "epochs", "batches_per_epoch"):
            if getattr(self, name) < 1:
                raise GZSLConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise GZSLConfigError(f"batch_size must be at least 2 (batch norm), got {self.batch_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise GZSLConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("encoder_dropout", "projection_dropout", "text_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise GZSLConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.lr <= 0:
            raise GZSLConfigError(f"lr must be positive, got {self.lr}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> GZSLConfig:
        """The config of a JSON object; unknown keys raise GZSLConfigError naming the first."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GZSLConfigError(f"unknown GZSL config key {unknown[0]!r}")
        return cls(**values)
