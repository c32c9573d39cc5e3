"""Cutting decoded audio into the fixed-length windows an encoder embeds.

Windows start every `hop` seconds. A file shorter than one window is one (short) window, which the encoder
pads its own way. When the last hop-aligned window stops short of the end, one more window is aligned to
the end of the file, so every sample is covered by a full-length window and no window is mostly padding.

`cut_windows` cuts samples already in memory; `stream_windows` cuts a stream of chunks into the same
windows, each as soon as its last sample arrives. It needs no length in advance: the hop-aligned windows
are those that fit, and the window aligned to the end comes from the last `window` samples, kept until the
stream ends. So a container whose header misstates its duration still gets exactly the windows of what
it decodes to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


def stream_windows(chunks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[AudioWindow]:
    """The windows `cut_windows` gives for the concatenated mono `chunks`, yielded as soon as each is
    complete (copies: the stream's buffer is reused). Memory holds one window and one chunk."""
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # stream position of buffer[0]
    total = 0  # samples received
    next_start = 0  # the next hop-aligned window
    last_start = -1
    for chunk in chunks:
        if not len(chunk):
            continue
        buffer = np.concatenate([buffer, chunk]) if len(buffer) else np.asarray(chunk)
        total += len(chunk)
        while next_start + window <= total:
            i = next_start - offset
            yield AudioWindow(next_start, next_start + window, buffer[i : i + window].copy())
            last_start, next_start = next_start, next_start + hop
        # Keep what the next hop-aligned window needs, and the last `window` samples for the end-aligned one.
        keep_from = max(offset, min(next_start, total - window))
        buffer, offset = buffer[keep_from - offset :], keep_from
    if total == 0:
        return
    if last_start < 0:  # shorter than one window: one short window (offset is 0, nothing was dropped)
        yield AudioWindow(0, total, buffer[:total].copy())
    elif last_start + window < total:
        start = total - window
        yield AudioWindow(start, total, buffer[start - offset : start - offset + window].copy())
