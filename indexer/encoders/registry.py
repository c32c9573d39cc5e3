"""Model names -> encoders. The registry is data: each entry says which implementation (family) loads
it, where its checkpoint comes from and with which options; `load_encoder` resolves a name or a path."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from indexer.encoders.base import Encoder
from indexer.encoders.checkpoints import HubFile, file_sha256, resolve_hub_file
from indexer.errors import UnknownModelError

LAION_CLAP_REPO = "lukewys/laion_clap"


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, implementation, checkpoint source and options."""

    name: str
    family: str
    checkpoint: HubFile | Path
    description: str
    options: dict[str, Any] = field(default_factory=dict)


def _laion(name: str, description: str, **options: Any) -> ModelEntry:
    return ModelEntry(name, "laion_clap", HubFile(LAION_CLAP_REPO, f"{name}.pt"), description, options)


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        _laion("630k-audioset-best", "LAION-CLAP HTSAT-tiny, LAION-Audio-630K + AudioSet", amodel="HTSAT-tiny", fusion=False),
        _laion("630k-best", "LAION-CLAP HTSAT-tiny, LAION-Audio-630K", amodel="HTSAT-tiny", fusion=False),
        _laion("630k-audioset-fusion-best", "LAION-CLAP HTSAT-tiny with feature fusion, 630K + AudioSet", amodel="HTSAT-tiny", fusion=True),
        _laion("630k-fusion-best", "LAION-CLAP HTSAT-tiny with feature fusion, LAION-Audio-630K", amodel="HTSAT-tiny", fusion=True),
    ]
}
DEFAULT_MODEL = "630k-audioset-best"

# Checkpoint file suffix -> family, for models given as a local path.
_FAMILY_BY_SUFFIX = {".pt": "laion_clap", ".ckpt": "laion_clap", ".pth": "laion_clap"}


def _load_laion_clap(checkpoint: Path, model_id: str, device: str, options: dict[str, Any]) -> Encoder:
    from indexer.encoders.laion_clap import LaionClapEncoder

    return LaionClapEncoder(checkpoint, model_id=model_id, device=device, **options)


FAMILIES: dict[str, Callable[[Path, str, str, dict[str, Any]], Encoder]] = {
    "laion_clap": _load_laion_clap,
}


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
    """The checkpoint behind a registered name or a local checkpoint path (downloads when needed)."""
    if name in MODELS:
        entry = MODELS[name]
        path = resolve_hub_file(entry.checkpoint) if isinstance(entry.checkpoint, HubFile) else entry.checkpoint
        return ModelRef(entry.name, entry.family, Path(path), dict(entry.options))
    path = Path(name).expanduser()
    family = _FAMILY_BY_SUFFIX.get(path.suffix.lower())
    if family is not None:
        if not path.is_file():
            raise UnknownModelError(f"{name}: checkpoint file not found")
        return ModelRef(f"{family}:{path.name}", family, path.resolve(), {})
    known = ", ".join(sorted(MODELS))
    raise UnknownModelError(f"unknown model {name!r}: use one of {known}, or a path to a checkpoint file")


_LOADED: dict[tuple[str, str, str], Encoder] = {}
_LOCK = threading.Lock()


def load_encoder(name: str, device: str = "cpu") -> Encoder:
    """Load (once per process) the encoder for a model name or checkpoint path."""
    ref = resolve_model(name)
    key = (str(ref.checkpoint), ref.sha256(), device)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = FAMILIES[ref.family](ref.checkpoint, ref.model_id, device, ref.options)
        return _LOADED[key]
