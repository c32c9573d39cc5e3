"""The starter model's architecture and front end as one dataclass, stored with its weights.

A checkpoint carries its `StarterConfig` as JSON in the safetensors metadata, so loading it needs no
constant from this code: a checkpoint trained with other sizes loads as long as the layer types exist.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from indexer.errors import CheckpointError


@dataclass(frozen=True)
class StarterConfig:
    """Sizes of the audio CNN, the text projection and the joint space, and the log-mel front end."""

    # Front end: log-mel spectrogram of a fixed window, shorter windows repeat-padded.
    sample_rate: int = 16000
    window_seconds: float = 4.0
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    top_db: float = 80.0  # floor each window's log-mel at its maximum minus this (librosa's top_db)
    # Which audio tower: "cnn", the CNN below trained by resound from scratch; or "aisfx", aiSFX's pretrained
    # sound-effects tower (aisfx.py, weights/aisfx_tower.safetensors), frozen, whose block embeddings are
    # averaged per window and read by a learned head (model.PretrainedAudioHead). An "aisfx" config uses
    # aiSFX's own front end (44.1 kHz, 96 mels, 2048/1024 STFT): see AISFX_CONFIG. "aisfx+starter": the same,
    # with the shipped CNN starter's 256-d audio vector of the window beside aiSFX's (companion.py).
    audio_tower: str = "cnn"
    audio_hidden: int = 1024  # width of the "aisfx" head's hidden layer
    # Audio encoder: conv blocks (two 3x3 convs, BN, ReLU, 2x2 average pool) of these widths.
    audio_channels: tuple[int, ...] = (24, 48, 96, 192)
    # Log-mel frames averaged before the CNN: 2 turns the 10 ms hop into 20 ms steps, halving the
    # CNN's cost on two CPU cores; instrument timbre and onsets survive 20 ms resolution.
    time_pool: int = 2
    audio_dropout: float = 0.0
    # Text side: a frozen pretrained sentence encoder (all-MiniLM-L6-v2, 384-d unit vectors, see
    # minilm.py), then a learned projection into the joint space: an MLP beside a linear path.
    text_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    text_input_dim: int = 384
    text_hidden: int = 1024
    text_dropout: float = 0.1
    # Text anchors (query time only, see model.TextAnchors): the sentence vectors of this many training
    # texts, kept with the weights; a query's projection is blended with its nearest anchors' projections,
    # so words no caption used land among the captions they are near in the sentence encoder's space
    # instead of where the learned projection extrapolates them. 0: no anchors (plain projection).
    text_anchors: int = 0
    anchor_weight: float = 0.5  # share of the query's own projection in the blend
    anchor_temperature: float = 0.05  # softmax temperature over the neighbours' cosines
    anchor_neighbours: int = 50
    # Joint space.
    embed_dim: int = 256
    init_logit_scale: float = 2.6593  # log(1 / 0.07), CLIP's initial temperature

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    def to_json(self) -> str:
        """The config as a JSON object (tuples become lists)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StarterConfig:
        """Parse `to_json`'s output; raises CheckpointError for anything else."""
        try:
            raw: dict[str, Any] = json.loads(text)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"starter config is not JSON ({e})") from e
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if not isinstance(raw, dict) or unknown:
            raise CheckpointError(f"starter config has unknown fields {unknown}")
        # Checkpoints written before text anchors existed have none.
        raw.setdefault("text_anchors", 0)
        # ... nor an audio tower other than the CNN.
        raw.setdefault("audio_tower", "cnn")
        raw.setdefault("audio_hidden", 1024)
        if raw["audio_tower"] not in AUDIO_TOWERS:
            raise CheckpointError(f"starter config names an unknown audio tower {raw['audio_tower']!r}")
        if "audio_channels" in raw:
            raw["audio_channels"] = tuple(raw["audio_channels"])
        return cls(**raw)


AUDIO_TOWERS = ("cnn", "aisfx", "aisfx+starter")
# Width of the shipped CNN starter's audio vector, which the "aisfx+starter" tower reads beside aiSFX's.
COMPANION_DIM = 256

# The frozen-aiSFX generation: aiSFX's front end (the fields below describe it for provenance; aisfx.py
# holds its constants) and windows of exactly two of its 100-frame blocks (199 hops of 1024 samples,
# 4.62 s), embedded without overlap and averaged.
AISFX_CONFIG = StarterConfig(
    audio_tower="aisfx",
    sample_rate=44100,
    window_seconds=199 * 1024 / 44100,
    n_fft=2048,
    win_length=2048,
    hop_length=1024,
    n_mels=96,
    f_min=0.0,
    f_max=22050.0,
    time_pool=1,
    audio_channels=(),
)
AISFX_STARTER_CONFIG = replace(AISFX_CONFIG, audio_tower="aisfx+starter")
TINY_CONFIG = StarterConfig(
    audio_channels=(8, 16),
    text_hidden=32,
    embed_dim=32,
    window_seconds=1.0,
)
