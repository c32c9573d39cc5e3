"""The bundled starter model as a resound encoder (family "starter").

Audio: mono 16 kHz windows of at most 4 s, repeat-padded to 4 s as LAION-CLAP pads, log-mel front end
(indexer.starter.features), CNN. Text: CLIP BPE tokens, small transformer. Both give 256-d unit vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from indexer.encoders.base import EncoderInfo
from indexer.encoders.checkpoints import file_sha256
from indexer.starter.checkpoint import load_starter
from indexer.starter.features import pad_windows

WEIGHTS_PATH = Path(__file__).with_name("weights") / "starter.safetensors"
# Windows embedded per forward pass: bounds memory for long files without slowing small batches.
AUDIO_BATCH = 32
TEXT_BATCH = 256


class StarterEncoder:
    """The starter CLAP-style model loaded from a safetensors checkpoint."""

    def __init__(self, checkpoint: Path = WEIGHTS_PATH, model_id: str = "starter", device: str = "cpu"):
        checkpoint = Path(checkpoint)
        self.model, self.tokenizer, self.metadata = load_starter(checkpoint, device)
        # Channels-last convolutions (oneDNN's native layout): 1.36x fp32 and 1.28x bf16 on CPU, same top 10,
        # cosine 1.000000 to the default layout (bench/model_speedups.py; torch.compile, faster still, costs
        # ~30 s of compiling per process and is not used).
        self.model.audio.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        config = self.model.config
        self.info = EncoderInfo(
            model_id=model_id,
            family="starter",
            dim=config.embed_dim,
            sample_rate=config.sample_rate,
            window_seconds=config.window_seconds,
            checkpoint_sha256=file_sha256(checkpoint),
            preprocessing={
                "resample": "soxr_hq",
                "mono": "mean",
                "fill": "repeatpad",
                "features": "log-mel",
                "stft": {
                    "n_fft": config.n_fft,
                    "win_length": config.win_length,
                    "hop_length": config.hop_length,
                    "window": "hann",
                    "center": True,
                    "pad_mode": "reflect",
                },
                "mel": {"n_mels": config.n_mels, "f_min": config.f_min, "f_max": config.f_max, "scale": "htk"},
                "log": "10*log10(max(power, 1e-10))",
                "text_tokenizer": "clip-bpe",
                "text_context": config.text_context,
            },
        )

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) unit vectors for mono 16 kHz windows of at most `info.window_seconds`."""
        padded = pad_windows(windows, self.model.config)
        out = np.zeros((len(padded), self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(padded), AUDIO_BATCH):
                batch = padded[start : start + AUDIO_BATCH].to(self.device)
                out[start : start + len(batch)] = self.model.embed_waveforms(batch).float().cpu().numpy()
        return out

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit vectors for texts (lower-cased CLIP BPE, truncated to the model's context)."""
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self.tokenizer(list(texts[start : start + TEXT_BATCH])).to(self.device)
                out[start : start + len(tokens)] = self.model.embed_tokens(tokens).float().cpu().numpy()
        return out

    def logit_scale(self) -> float:
        """The learned temperature exp(logit_scale) that turns cosines into logits."""
        return float(self.model.temperature_scale().item())
