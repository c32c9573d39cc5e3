"""Spectral prints of decoded audio, and their correlation at an offset: what tells one recording from
another recording of the same kind.

Window embeddings are semantic: two sentences in one voice, two takes of a piano piece or two patterns
of one drum kit embed almost alike (bench/duplicates.py: cosine 0.96 in the median for such pairs, above
many true copies). A log-mel envelope at 20 ms keeps what differs between them: when each note, word and
hit happens. A copy correlates with its original at one lag; a different recording at none.

The print is gain-invariant (each band's mean log energy is removed), blind to silence, mono (decoders downmix) and band-
limited to 100-3800 Hz at 8 kHz, which every low-bitrate codec and resampling keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from indexer.media.decode import decode_audio

PRINT_RATE = 8000
FRAME_HOP = 160  # 20 ms
FRAME_SIZE = 512
BANDS = 24
F_MIN, F_MAX = 100.0, 3800.0
MIN_OVERLAP_SECONDS = 1.0


@dataclass(frozen=True)
class SpectralPrint:
    """(frames, bands) log-mel energies of a file every 20 ms, each band's mean removed; silence is 0."""

    frames: np.ndarray

    @property
    def seconds_per_frame(self) -> float:
        return FRAME_HOP / PRINT_RATE


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    freqs = np.fft.rfftfreq(FRAME_SIZE, 1.0 / PRINT_RATE)
    edges = 700.0 * (10 ** (np.linspace(mel(np.array(F_MIN)), mel(np.array(F_MAX)), BANDS + 2) / 2595.0) - 1.0)
    filters = np.zeros((BANDS, len(freqs)), dtype=np.float32)
    for b in range(BANDS):
        lo, mid, hi = edges[b : b + 3]
        filters[b] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return filters


def spectral_print(path: str | Path) -> SpectralPrint:
    """The print of a media file; raises AudioDecodeError as decoding does."""
    samples = decode_audio(path, PRINT_RATE).samples
    if len(samples) < FRAME_SIZE:
        samples = np.pad(samples, (0, FRAME_SIZE - len(samples)))
    n = 1 + (len(samples) - FRAME_SIZE) // FRAME_HOP
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME_SIZE)[::FRAME_HOP][:n]
    power = np.abs(np.fft.rfft(frames * np.hanning(FRAME_SIZE).astype(np.float32), axis=1)) ** 2
    logmel = np.log(power @ _mel_filters().T + 1e-8)
    # Frames 40 dB below the loudest are silence: they count as nothing (zero), since silence is alike in
    # every file and codecs fill it with noise of their own. The rest is floored 60 dB below the loudest.
    top = float(logmel.max())
    active = logmel.max(axis=1) >= top - np.log(1e4)
    logmel = np.maximum(logmel, top - np.log(1e6))
    centred = np.zeros_like(logmel, dtype=np.float32)
    if active.any():
        centred[active] = logmel[active] - logmel[active].mean(axis=0)
    return SpectralPrint(centred)


def aligned_match(a: SpectralPrint, b: SpectralPrint, offset: float, search_seconds: float,
                  min_overlap_seconds: float = MIN_OVERLAP_SECONDS) -> tuple[float, float]:
    """The best normalised correlation of `a` and `b` over the lags within `search_seconds` of `offset`
    (content at time t in `a` is at about t + `offset` in `b`), and the lag that gives it in seconds.
    Only the part both files cover counts; lags where they overlap less than `min_overlap_seconds` score 0."""
    A, B = a.frames, b.frames
    step = a.seconds_per_frame
    ta, tb = len(A), len(B)
    n = 1 << int(np.ceil(np.log2(ta + tb)))
    # xcorr[L] = sum_i A[i] . B[i + L], by FFT along time, summed over bands.
    spectrum = (np.conj(np.fft.rfft(A, n, axis=0)) * np.fft.rfft(B, n, axis=0)).sum(axis=1)
    xcorr = np.fft.irfft(spectrum, n)
    lo = max(int(np.floor((offset - search_seconds) / step)), -(ta - 1))
    hi = min(int(np.ceil((offset + search_seconds) / step)), tb - 1)
    if lo > hi:
        return 0.0, offset
    lags = np.arange(lo, hi + 1)
    numerator = xcorr[lags % n]
    # Energy of each side over the overlap: i in [max(0, -L), min(ta, tb - L)), j = i + L.
    ea = np.concatenate([[0.0], np.cumsum(np.einsum("ij,ij->i", A, A, dtype=np.float64))])
    eb = np.concatenate([[0.0], np.cumsum(np.einsum("ij,ij->i", B, B, dtype=np.float64))])
    i0 = np.maximum(0, -lags)
    i1 = np.minimum(ta, tb - lags)
    overlap = i1 - i0
    energy = (ea[np.maximum(i1, i0)] - ea[i0]) * (eb[np.maximum(i1, i0) + lags] - eb[i0 + lags])
    scores = np.where((overlap * step >= min_overlap_seconds) & (energy > 0),
                      numerator / np.sqrt(np.maximum(energy, 1e-12)), 0.0)
    best = int(np.argmax(scores))
    return float(scores[best]), float(lags[best] * step)
