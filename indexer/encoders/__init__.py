"""Embedding models behind one interface (see base.Encoder) and a registry that resolves their names."""

from indexer.encoders.base import Encoder, EncoderInfo, l2_normalize
from indexer.encoders.registry import DEFAULT_MODEL, MODELS, ModelEntry, ModelRef, load_encoder, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Encoder",
    "EncoderInfo",
    "ModelEntry",
    "ModelRef",
    "l2_normalize",
    "load_encoder",
    "resolve_model",
]
