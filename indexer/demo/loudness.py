"""Level normalisation of finished clips: comparable loudness, never clipping."""

from __future__ import annotations

import numpy as np

from indexer.demo.errors import RenderError

# Gated loudness by dynamics: soft clips stay audibly quieter than loud ones.
TARGET_DBFS = {"soft": -26.0, "loud": -18.0}
PEAK_CEILING_DBFS = -1.0
FRAME_S = 0.1
# Frames more than this far below the loudest frame are silence or tail and do not count.
RELATIVE_GATE_DB = 20.0


def gated_rms(audio: np.ndarray, sample_rate: int) -> float:
    """RMS over the 100 ms frames within 20 dB of the loudest one, so pauses do not lower it."""
    frame = max(int(FRAME_S * sample_rate), 1)
    usable = len(audio) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
    powers = np.mean(np.square(audio[:usable].reshape(-1, frame)), axis=1)
    loudest = powers.max()
    if loudest == 0.0:
        return 0.0
    return float(np.sqrt(np.mean(powers[powers >= loudest * 10 ** (-RELATIVE_GATE_DB / 10)])))


def normalise(audio: np.ndarray, sample_rate: int, target_dbfs: float) -> np.ndarray:
    """Scale `audio` to `target_dbfs` gated RMS, or lower if its peak would pass -1 dBFS.

    Raises RenderError for a silent clip: a renderer that produced nothing must not pass unnoticed.
    """
    level = gated_rms(audio, sample_rate)
    if level == 0.0:
        raise RenderError("the clip is silent")
    gain = 10 ** (target_dbfs / 20) / level
    peak = float(np.abs(audio).max())
    gain = min(gain, 10 ** (PEAK_CEILING_DBFS / 20) / peak)
    return audio * gain


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round float audio in [-1, 1] to 16-bit PCM samples."""
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
