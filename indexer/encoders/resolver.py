"""Model names -> encoders: a registered name, "auto" or a checkpoint path becomes a checkpoint on disk
(`resolve_model`) and then a loaded encoder (`load_encoder`, `EncoderSpec.load`).

The resolver sits above the registry (registry.py, data), the model store and the encoders: it imports an
encoder's module only when a model of that family is loaded, so resolving a name (what a cold `search query`
does before it knows whether it needs the model at all) never imports torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.encoders.auto import choose_model
from indexer.encoders.base import Encoder
from indexer.encoders.checkpoints import HubFile, file_sha256, resolve_hub_file
from indexer.encoders.registry import AUTO_MODEL, DEFAULT_MODEL, FAMILY_BY_SUFFIX, MODELS
from indexer.errors import CheckpointNotFoundError, UnknownModelError

# What loads a model of one family: (checkpoint, model id, device, options) -> encoder.
EncoderFactory = Callable[[Path, str, str, dict[str, Any]], Encoder]


def _load_laion_clap(checkpoint: Path, model_id: str, device: str, options: dict[str, Any]) -> Encoder:
    from indexer.encoders.laion_clap import LaionClapEncoder

    # A registered model's files are resound's to manage: keep a safetensors copy beside the checkpoint.
    return LaionClapEncoder(checkpoint, model_id=model_id, device=device, convert=model_id in MODELS, **options)


def _load_starter(checkpoint: Path, model_id: str, device: str, options: dict[str, Any]) -> Encoder:
    from indexer.starter import StarterEncoder

    return StarterEncoder(checkpoint, model_id=model_id, device=device)


# Family name (ModelEntry.family) -> factory; plugins add theirs with register_family.
FAMILIES: dict[str, EncoderFactory] = {
    "laion_clap": _load_laion_clap,
    "starter": _load_starter,
}
# Checkpoint suffix -> family for local paths: the registry's, then the plugins'.
_FAMILY_BY_SUFFIX: dict[str, str] = dict(FAMILY_BY_SUFFIX)


def register_family(name: str, factory: EncoderFactory, suffixes: tuple[str, ...] = ()) -> None:
    """Add an encoder implementation; checkpoint files with `suffixes` load through it.

    Plugins call this from a module named in $RESOUND_PLUGINS (comma-separated), imported on first use.
    """
    FAMILIES[name] = factory
    for suffix in suffixes:
        _FAMILY_BY_SUFFIX[suffix.lower()] = name


def _load_plugins() -> None:
    import importlib
    import os

    for module in filter(None, (m.strip() for m in os.environ.get("RESOUND_PLUGINS", "").split(","))):
        importlib.import_module(module)


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a checkpoint on disk, not yet loaded."""

    model_id: str
    family: str
    checkpoint: Path
    options: dict[str, Any]

    def sha256(self) -> str:
        return file_sha256(self.checkpoint)


def resolve_model(name: str) -> ModelRef:
    """The checkpoint behind a registered name, "auto" or a local checkpoint path (downloads when needed)."""
    _load_plugins()
    if name == AUTO_MODEL:
        name = choose_model(name).model
    if name in MODELS:
        entry = MODELS[name]
        path = resolve_hub_file(entry.checkpoint) if isinstance(entry.checkpoint, HubFile) else entry.checkpoint
        if not Path(path).is_file():
            raise CheckpointNotFoundError(f"{path}: the weights of model {name!r} are missing (reinstall resound)")
        return ModelRef(entry.name, entry.family, Path(path), dict(entry.options))
    path = Path(name).expanduser()
    family = _FAMILY_BY_SUFFIX.get(path.suffix.lower())
    if family is not None:
        if not path.is_file():
            raise UnknownModelError(f"{name}: checkpoint file not found")
        return ModelRef(f"{family}:{path.name}", family, path.resolve(), {})
    known = ", ".join(sorted(MODELS))
    raise UnknownModelError(f"unknown model {name!r}: use one of {known}, or a path to a checkpoint file")


_LOADED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def load_encoder(name: str, device: str = "cpu") -> Encoder:
    """Load (once per process) the encoder for a model name or checkpoint path."""
    ref = resolve_model(name)
    key = (str(ref.checkpoint), ref.sha256(), device)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = FAMILIES[ref.family](ref.checkpoint, ref.model_id, device, ref.options)
        return _LOADED[key]


def load_vision_encoder(spec: str, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """Load (once per process) an open_clip model by `ARCH/TAG` or `ARCH:/path`."""
    from indexer.encoders.open_clip import OpenClipEncoder, resolve_vision_checkpoint

    _, checkpoint = resolve_vision_checkpoint(spec)
    key = ("open_clip", spec, file_sha256(checkpoint), device)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = OpenClipEncoder(spec, device=device)
        return _LOADED[key]


@dataclass(frozen=True)
class EncoderSpec:
    """What to embed with: an audio model, and for audio-visual indexes a CLIP model and the mixing."""

    model: str = DEFAULT_MODEL
    vision_model: str | None = None
    audio_weight: float = 1.0
    visual_weight: float = 1.0
    frames_per_window: int = 1

    def identity(self) -> tuple[str, str]:
        """(model id, checkpoint sha256) as the index records them, found without loading any weights."""
        ref = resolve_model(self.model)
        if self.vision_model is None:
            return ref.model_id, ref.sha256()
        import hashlib

        from indexer.encoders.open_clip import resolve_vision_checkpoint, vision_model_id

        arch, checkpoint = resolve_vision_checkpoint(self.vision_model)
        v_sha = file_sha256(checkpoint)
        model_id = f"{ref.model_id}+{vision_model_id(self.vision_model, arch, checkpoint)}"
        return model_id, hashlib.sha256(f"{ref.sha256()}:{v_sha}".encode()).hexdigest()

    def load(self, device: str = "cpu") -> Encoder:
        """The encoder: the audio model alone, or an AudioVisualEncoder."""
        audio = load_encoder(self.model, device)
        if self.vision_model is None:
            return audio
        from indexer.encoders.audio_visual import AudioVisualEncoder

        return AudioVisualEncoder(audio, load_vision_encoder(self.vision_model, device), self.model,
                                  self.vision_model, self.audio_weight, self.visual_weight, self.frames_per_window)

    @classmethod
    def from_provenance(cls, family: str, model_id: str, checkpoint: str, preprocessing: dict[str, Any]) -> EncoderSpec:
        """The spec that rebuilds an index's own encoder."""
        if family == "audio_visual":
            weights = preprocessing.get("weights", [1.0, 1.0])
            frames = preprocessing.get("frames", "middle")
            return cls(preprocessing["audio_model"], preprocessing["vision_model"], float(weights[0]), float(weights[1]),
                       1 if frames == "middle" else int(str(frames).split()[0]))
        return cls(model_id if model_id in MODELS else checkpoint)
