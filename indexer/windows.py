"""Cutting decoded audio into the fixed-length windows an encoder embeds.

Windows start every `hop` seconds. A file shorter than one window is one (short) window, which the encoder
pads its own way. When the last hop-aligned window stops short of the end, one more window is aligned to
the end of the file, so every sample is covered by a full-length window and no window is mostly padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AudioWindow:
    """One window of a file: its sample range and the samples themselves (a view, not a copy)."""

    start: int
    end: int
    samples: np.ndarray

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start offsets of the windows covering `n_samples` samples (see module docstring)."""
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n_samples <= window:
        return [0] if n_samples > 0 else []
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def cut_windows(samples: np.ndarray, window: int, hop: int) -> list[AudioWindow]:
    """The windows of `samples` (mono), as views into it."""
    return [
        AudioWindow(start, min(start + window, len(samples)), samples[start : start + window])
        for start in window_starts(len(samples), window, hop)
    ]
