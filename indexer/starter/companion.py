"""The shipped CNN starter's audio vectors as a frozen companion of the aiSFX tower ("aisfx+starter").

An "aisfx+starter" model's head reads, per 4.62 s window at 44.1 kHz, aiSFX's pooled 512-d embedding
concatenated with the 256-d unit audio vector that the shipped CNN starter (weights/starter.safetensors)
gives the same window resampled to 16 kHz and cut to its 4 s: aiSFX knows real sound effects, the CNN the
rendered instruments and scenes it was trained on, and the head learns from both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from indexer.media.decode import resample
from indexer.starter.config import COMPANION_DIM

COMPANION_PATH = Path(__file__).with_name("weights") / "starter.safetensors"
# Metadata key of an "aisfx+starter" checkpoint: the sha256 of the companion starter its head read.
COMPANION_KEY = "companion_sha256"


class StarterCompanion:
    """The frozen CNN starter's audio side: 44.1 kHz windows -> (n, 256) unit vectors."""

    def __init__(self, path: Path = COMPANION_PATH, device: str = "cpu"):
        from indexer.starter.checkpoint import load_starter

        self.model, _, _ = load_starter(Path(path), device)
        if self.model.config.audio_tower != "cnn" or self.model.config.embed_dim != COMPANION_DIM:
            raise ValueError(f"{path}: not a {COMPANION_DIM}-d CNN starter")
        self.model.eval().audio.to(memory_format=torch.channels_last)
        self.device = torch.device(device)

    def windows(self, windows: Sequence[np.ndarray], source_rate: int) -> torch.Tensor:
        """The companion's padded 16 kHz input (n, 64000) of mono windows at `source_rate`."""
        from indexer.starter.features import pad_windows

        config = self.model.config
        cut = [resample(np.asarray(w, dtype=np.float32), source_rate, config.sample_rate)[: config.window_samples] for w in windows]
        return pad_windows(cut, config)

    def embed(self, padded: torch.Tensor) -> torch.Tensor:
        """(n, 256) float32 unit vectors of `windows`' output."""
        with torch.inference_mode():
            return self.model.embed_waveforms(padded.to(self.device)).float()
