"""Model names -> encoders. The registry is data: each entry says which implementation (family) loads
it, where its checkpoint comes from and with which options; `load_encoder` resolves a name or a path."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from indexer.encoders.base import Encoder
from indexer.encoders.checkpoints import HubFile, file_sha256, resolve_hub_file
from indexer.errors import CheckpointNotFoundError, UnknownModelError

LAION_CLAP_REPO = "lukewys/laion_clap"


# The text side of every LAION-CLAP model: roberta-base's BPE files (the weights come with the checkpoint).
ROBERTA_FILES = (HubFile("roberta-base", "vocab.json"), HubFile("roberta-base", "merges.txt"))


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, implementation, checkpoint source and options.

    `files` are the other files the model needs (tokenizers), fetched and verified with the checkpoint;
    `sha256` is the checkpoint's hash where resound knows it in advance (otherwise the hub's LFS hash is
    checked at download time and recorded); `size_bytes` likewise.
    """

    name: str
    family: str
    checkpoint: HubFile | Path
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    dim: int | None = None
    licence: str = ""
    files: tuple[HubFile, ...] = ()
    sha256: str | None = None
    size_bytes: int | None = None


def _laion(name: str, description: str, **options: Any) -> ModelEntry:
    return ModelEntry(name, "laion_clap", HubFile(LAION_CLAP_REPO, f"{name}.pt"), description, options, dim=512,
                      licence="CC0-1.0; tokenizer MIT", files=ROBERTA_FILES)


# The bundled model's weights ship inside the package (indexer/starter/weights).
STARTER_WEIGHTS = Path(__file__).resolve().parent.parent / "starter" / "weights" / "starter.safetensors"

MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry("starter", "starter", STARTER_WEIGHTS,
                   "resound's bundled CLAP-style model: log-mel CNN + frozen all-MiniLM-L6-v2 text tower with a "
                   "learned projection, trained on rendered instruments, events, speech and noises and on real "
                   "recordings from Debian packages (see its MODEL_CARD.md)",
                   dim=256, licence="MIT"),
        _laion("630k-audioset-best", "LAION-CLAP HTSAT-tiny, LAION-Audio-630K + AudioSet", amodel="HTSAT-tiny", fusion=False),
        _laion("630k-best", "LAION-CLAP HTSAT-tiny, LAION-Audio-630K", amodel="HTSAT-tiny", fusion=False),
        _laion("630k-audioset-fusion-best", "LAION-CLAP HTSAT-tiny with feature fusion, 630K + AudioSet", amodel="HTSAT-tiny", fusion=True),
        _laion("630k-fusion-best", "LAION-CLAP HTSAT-tiny with feature fusion, LAION-Audio-630K", amodel="HTSAT-tiny", fusion=True),
    ]
}
DEFAULT_MODEL = "starter"  # the library's default; the command lines default to AUTO_MODEL
# "auto": the best registered model already on disk, else the starter (indexer/encoders/auto.py).
AUTO_MODEL = "auto"
# What `auto` prefers, best first: the general-purpose LAION-CLAP checkpoints, then the fusion ones.
AUTO_ORDER = ("630k-audioset-best", "630k-best", "630k-audioset-fusion-best", "630k-fusion-best")

# Checkpoint file suffix -> family, for models given as a local path.
_FAMILY_BY_SUFFIX = {".pt": "laion_clap", ".ckpt": "laion_clap", ".pth": "laion_clap", ".safetensors": "starter"}


def _load_laion_clap(checkpoint: Path, model_id: str, device: str, options: dict[str, Any]) -> Encoder:
    from indexer.encoders.laion_clap import LaionClapEncoder

    # A registered model's files are resound's to manage: keep a safetensors copy beside the checkpoint.
    return LaionClapEncoder(checkpoint, model_id=model_id, device=device, convert=model_id in MODELS, **options)


def _load_starter(checkpoint: Path, model_id: str, device: str, options: dict[str, Any]) -> Encoder:
    from indexer.starter import StarterEncoder

    return StarterEncoder(checkpoint, model_id=model_id, device=device)


FAMILIES: dict[str, Callable[[Path, str, str, dict[str, Any]], Encoder]] = {
    "laion_clap": _load_laion_clap,
    "starter": _load_starter,
}


# Windows per forward pass where a build is not told (BuildOptions.batch_size None), by family, on CPU,
# measured by `python bench/indexing_throughput.py --batch-sizes 4,8,16` (model only; README "Indexing
# throughput on CPU"): the starter is fastest at 8 in bf16 on the build's one model thread (25.4 windows/s
# against 22.7 at 4 and 24.2 at 16); HTSAT-tiny (`--clap --threads 1`) at 4 (bf16 3.8 windows/s against
# 3.6 at 8 and 2.9 at 16; fp32 2.4 / 2.1 / 1.8). Small batches also hand the first vectors to the catalog
# sooner. GPUs keep the former default (not measured).
CPU_BATCH_SIZE: dict[str, int] = {"starter": 8, "laion_clap": 4}
GPU_BATCH_SIZE = 16
FALLBACK_BATCH_SIZE = 16


def default_batch_size(encoder: Encoder) -> int:
    """Windows per forward pass for `encoder` on its device when none is asked for."""
    device = str(getattr(encoder, "device", "cpu"))
    if device.startswith("cuda"):
        return GPU_BATCH_SIZE
    return CPU_BATCH_SIZE.get(encoder.info.family, FALLBACK_BATCH_SIZE)


def register_family(name: str, factory: Callable[[Path, str, str, dict[str, Any]], Encoder],
                    suffixes: tuple[str, ...] = ()) -> None:
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
        from indexer.encoders.auto import choose_model

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
    def from_provenance(cls, family: str, model_id: str, checkpoint: str, preprocessing: dict[str, Any]) -> "EncoderSpec":
        """The spec that rebuilds an index's own encoder."""
        if family == "audio_visual":
            weights = preprocessing.get("weights", [1.0, 1.0])
            frames = preprocessing.get("frames", "middle")
            return cls(preprocessing["audio_model"], preprocessing["vision_model"], float(weights[0]), float(weights[1]),
                       1 if frames == "middle" else int(str(frames).split()[0]))
        return cls(model_id if model_id in MODELS else checkpoint)
