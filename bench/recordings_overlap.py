"""Audit: is any held-out recording a re-encoded copy of a training recording?

    python bench/recordings_overlap.py

`evaluation_recordings()` already drops files that are byte for byte training files. This audit looks for
copies that differ in bytes (another format, rate or encoder): every held-out clip is decoded to mono
8 kHz and compared with every training clip of about the same length (within 5%) by the maximum of their
normalised cross-correlation over the first 10 s. A copy correlates near 1; different sounds stay low.
Prints the closest pairs and how many held-out clips have a partner above 0.8.
"""

from __future__ import annotations

import sys

import numpy as np

from indexer.errors import AudioDecodeError
from indexer.media.decode import decode_audio
from indexer.training.recordings import RecordedClip, evaluation_recordings, training_recordings

RATE = 8000
SECONDS = 10
THRESHOLD = 0.8


def _samples(clip: RecordedClip) -> np.ndarray | None:
    try:
        return decode_audio(clip.path, RATE).samples.astype(np.float64)
    except AudioDecodeError:  # an undecodable file is reported by the benches that use it
        return None


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Maximum over lags of the normalised cross-correlation of `a` and `b`."""
    n = len(a) + len(b)
    product = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    return float(np.max(np.abs(product)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main() -> int:
    training = [(c, x) for c in training_recordings() if (x := _samples(c)) is not None and len(x) > 0.2 * RATE]
    held_out = [(c, x) for c in evaluation_recordings() if (x := _samples(c)) is not None]
    closest = []
    for clip, x in held_out:
        best: tuple[float, RecordedClip | None] = (0.0, None)
        for other, y in training:
            if abs(len(x) - len(y)) <= 0.05 * max(len(x), len(y)):
                value = correlation(x[: SECONDS * RATE], y[: SECONDS * RATE])
                if value > best[0]:
                    best = (value, other)
        closest.append((best[0], clip, best[1]))
    closest.sort(key=lambda t: -t[0])
    for value, clip, other in closest[:10]:
        partner = f"{other.path} ({other.label})" if other else "none of the same length"
        print(f"{value:.3f}  {clip.path} ({clip.label})  ~  {partner}")
    copies = sum(value > THRESHOLD for value, _, _ in closest)
    print(f"{copies} of {len(held_out)} held-out clips have a training clip of their length correlating above "
          f"{THRESHOLD} ({len(training)} training clips compared)")
    return 1 if copies else 0


if __name__ == "__main__":
    sys.exit(main())
