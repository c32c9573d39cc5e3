"""The registered models, as data: each entry says which implementation (family) loads it, where its
checkpoint comes from, with which options, and what resound knows of its files in advance.

This module imports no encoder: the encoders and the model store (model_store.py) read it, and the
resolver (resolver.py), which turns a name into a loaded encoder, sits above all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.encoders.checkpoints import HubFile

if TYPE_CHECKING:
    from indexer.encoders.base import Encoder

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


# The bundled models' weights ship inside the package (indexer/starter/weights).
STARTER_WEIGHTS = Path(__file__).resolve().parent.parent / "starter" / "weights" / "starter.safetensors"
# The head over aiSFX's frozen tower (the tower itself is weights/aisfx_tower.safetensors, whose sha256 the
# head records): docs/starter-model.md.
STARTER_AISFX_WEIGHTS = STARTER_WEIGHTS.with_name("starter_aisfx.safetensors")

MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry("starter-aisfx", "starter", STARTER_AISFX_WEIGHTS,
                   "resound's bundled default: aiSFX's frozen sound-effects tower (Ma & Lerch, ISMIR 2022) with a "
                   "learned head + frozen all-MiniLM-L6-v2 text tower with a learned projection; hears real "
                   "recordings best of the bundled models; indexes at 0.43x the CNN starter's speed (see MODEL_CARD.md)",
                   dim=256, licence="MIT; aiSFX tower CC BY 4.0"),
        ModelEntry("starter", "starter", STARTER_WEIGHTS,
                   "resound's small bundled model: log-mel CNN + frozen all-MiniLM-L6-v2 text tower with a "
                   "learned projection, trained on rendered instruments, events, speech and noises and on real "
                   "recordings from Debian packages; indexes 2.3x as fast as starter-aisfx (see MODEL_CARD.md)",
                   dim=256, licence="MIT"),
        _laion("630k-audioset-best", "LAION-CLAP HTSAT-tiny, LAION-Audio-630K + AudioSet", amodel="HTSAT-tiny", fusion=False),
        _laion("630k-best", "LAION-CLAP HTSAT-tiny, LAION-Audio-630K", amodel="HTSAT-tiny", fusion=False),
        _laion("630k-audioset-fusion-best", "LAION-CLAP HTSAT-tiny with feature fusion, 630K + AudioSet", amodel="HTSAT-tiny", fusion=True),
        _laion("630k-fusion-best", "LAION-CLAP HTSAT-tiny with feature fusion, LAION-Audio-630K", amodel="HTSAT-tiny", fusion=True),
    ]
}
DEFAULT_MODEL = "starter-aisfx"  # the library's default; the command lines default to AUTO_MODEL
# "auto": the best registered model already on disk, else DEFAULT_MODEL (indexer/encoders/auto.py).
AUTO_MODEL = "auto"
# What `auto` prefers, best first: the general-purpose LAION-CLAP checkpoints, then the fusion ones.
AUTO_ORDER = ("630k-audioset-best", "630k-best", "630k-audioset-fusion-best", "630k-fusion-best")

# Checkpoint file suffix -> family, for models given as a local path (plugins add theirs: resolver.py).
FAMILY_BY_SUFFIX = {".pt": "laion_clap", ".ckpt": "laion_clap", ".pth": "laion_clap", ".safetensors": "starter"}


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
