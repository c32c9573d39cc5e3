"""Waveform thumbnails of segments: PNGs drawn server-side from the decoded audio, kept in an LRU cache.

Segment ids are never reused by the catalog (autoincrement), so (segment id, size) names one picture for
as long as the segment exists; a changed file gets new segments, hence new ids, at the next build.
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from indexer.media import decode_audio
from indexer.media.decode import resample

# Plenty for a few hundred pixel columns; decoding at a low rate keeps thumbnails of long files cheap.
THUMBNAIL_RATE = 8000
PEAK_COLOUR = (125, 170, 240, 255)
RMS_COLOUR = (40, 90, 200, 255)
AXIS_COLOUR = (150, 150, 160, 160)
# Segments quieter than this (-26 dBFS) are drawn small instead of blown up to full height: quiet looks quiet.
MIN_SCALE = 0.05


def read_span(path: str | Path, start: float, end: float, rate: int = THUMBNAIL_RATE) -> np.ndarray:
    """Mono float32 samples of `path` from `start` to `end` seconds at `rate`.

    libsndfile seeks straight to the span (wav, flac, ogg, mp3); other formats are decoded whole by the
    indexer's own decoder chain and cut.
    """
    import soundfile

    try:
        with soundfile.SoundFile(os.fsencode(path)) as f:
            f.seek(min(int(start * f.samplerate), f.frames))
            data = f.read(max(0, int((end - start) * f.samplerate)), dtype="float32", always_2d=True)
            return resample(data.mean(axis=1), f.samplerate, rate)
    except (RuntimeError, OSError, ValueError):  # any libsndfile failure: the decoder chain tries every backend and says why
        decoded = decode_audio(path, rate)
        return decoded.samples[int(start * rate) : int(end * rate)]


def waveform_png(samples: np.ndarray, width: int, height: int) -> bytes:
    """A `width` x `height` PNG of the samples: peak envelope, with the RMS envelope drawn over it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    middle = (height - 1) / 2
    draw.line([(0, middle), (width - 1, middle)], fill=AXIS_COLOUR)
    samples = np.nan_to_num(np.asarray(samples, dtype=np.float32))
    if len(samples):
        edges = np.linspace(0, len(samples), width + 1).astype(np.int64)
        starts = np.minimum(edges[:-1], len(samples) - 1)
        counts = np.maximum(edges[1:] - edges[:-1], 1)
        high = np.maximum.reduceat(samples, starts)
        low = np.minimum.reduceat(samples, starts)
        rms = np.sqrt(np.add.reduceat(samples.astype(np.float64) ** 2, starts) / counts)
        scale = middle / max(float(np.abs(samples).max()), MIN_SCALE)
        for x in range(width):
            draw.line([(x, middle - high[x] * scale), (x, middle - low[x] * scale)], fill=PEAK_COLOUR)
            r = min(rms[x], max(high[x], -low[x]))
            draw.line([(x, middle - r * scale), (x, middle + r * scale)], fill=RMS_COLOUR)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


class ThumbnailCache:
    """The most recently used PNGs by key; thread-safe (requests render in a thread pool)."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            png = self._entries.get(key)
            if png is not None:
                self._entries.move_to_end(key)
            return png

    def put(self, key: tuple, png: bytes) -> None:
        with self._lock:
            self._entries[key] = png
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
