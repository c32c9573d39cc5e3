"""Embedding models behind one interface (see base.Encoder): the registered models as data (registry),
and the resolver that turns a name into a loaded encoder (resolver)."""

from indexer.encoders.base import Encoder, EncoderInfo, l2_normalize
from indexer.encoders.registry import AUTO_MODEL, DEFAULT_MODEL, MODELS, ModelEntry
from indexer.encoders.resolver import (
    EncoderSpec,
    ModelRef,
    load_encoder,
    load_vision_encoder,
    register_family,
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
    "register_family",
    "resolve_model",
]
