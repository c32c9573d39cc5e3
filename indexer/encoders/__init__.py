"""Embedding models behind one interface (see base.Encoder) and a registry that resolves their names."""

from indexer.encoders.base import Encoder, EncoderInfo, l2_normalize
from indexer.encoders.registry import (
    AUTO_MODEL,
    DEFAULT_MODEL,
    MODELS,
    EncoderSpec,
    ModelEntry,
    ModelRef,
    load_encoder,
    load_vision_encoder,
    resolve_model,
)

__all__ = [
    "AUTO_MODEL",
    "DEFAULT_MODEL",
    "MODELS",
    "Encoder",
    "EncoderInfo",
    "EncoderSpec",
    "ModelEntry",
    "ModelRef",
    "l2_normalize",
    "load_encoder",
    "load_vision_encoder",
    "resolve_model",
]
