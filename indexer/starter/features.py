"""The starter model's front end: repeat-padded mono windows to log-mel spectrograms, in plain torch.

Deterministic (no random crop, no dither): the same samples always give the same features, which the
trainer computes once per clip and the encoder recomputes at search time with this same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from indexer.starter.config import StarterConfig

# Floor of the mel power before the log: -100 dB, far below 16-bit audio's noise floor.
POWER_FLOOR = 1e-10


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters on the HTK mel scale, unnormalised (torchaudio's default)."""

    def hz_to_mel(f: float) -> float:
        return 2595.0 * float(np.log10(1.0 + f / 700.0))

    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class LogMelFrontEnd(torch.nn.Module):
    """Waveforms (batch, window_samples) at the config's rate -> log-mel (batch, frames, n_mels) in dB,
    floored at each window's peak minus `top_db`."""

    def __init__(self, config: StarterConfig):
        super().__init__()
        self.config = config
        # Buffers, not parameters: fixed by the config, so never stored in (or read from) a checkpoint.
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        self.register_buffer(
            "mel_filters",
            htk_mel_filterbank(config.n_fft // 2 + 1, config.f_min, config.f_max, config.n_mels, config.sample_rate),
            persistent=False,
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        c = self.config
        spec = torch.stft(
            waveforms,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters)
        db = 10.0 * torch.log10(torch.clamp(mel, min=POWER_FLOOR))
        # Digital silence (fades, band-limited scenes) would sit 100 dB down; a floor relative to the
        # window's peak keeps such bins comparable with a real recording's noise floor.
        peak = db.amax(dim=(1, 2), keepdim=True)
        return torch.maximum(db, peak - c.top_db)

    def num_frames(self) -> int:
        """Frames of one full window (center padding adds one)."""
        return self.config.window_samples // self.config.hop_length + 1


def pad_windows(windows: Sequence[np.ndarray], config: StarterConfig) -> torch.Tensor:
    """Stack mono windows into (n, window_samples), repeat-padding short ones as LAION-CLAP does
    (whole repeats of the window, then zeros; `laion_clap.repeat_pad`).

    Raises ValueError for an empty window or one longer than the model's window.
    """
    length = config.window_samples
    # Filled in numpy: torch's stack/repeat split these copies over its intra-op threads, which cost
    # 100x more than the copy itself (108 ms vs 0.7 ms for 16 windows) whenever the other core is busy.
    out = np.zeros((len(windows), length), dtype=np.float32)
    for row, window in zip(out, windows):
        samples = np.asarray(window, dtype=np.float32)
        if samples.ndim != 1 or len(samples) == 0:
            raise ValueError(f"expected a non-empty mono window, got shape {samples.shape}")
        if len(samples) > length:
            raise ValueError(f"window of {len(samples)} samples exceeds {length}")
        repeats = length // len(samples)
        row[: repeats * len(samples)] = np.tile(samples, repeats)
    return torch.from_numpy(out)
