"""Fuzzing the decode and windowing path: any bytes, any signal, any rate and channel count either decode
to finite mono float32 windows at the target rate or raise AudioDecodeError; nothing else escapes."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import AudioDecodeError
from indexer.media import decode_audio
from indexer.windows import cut_windows

TARGET_RATE = 16000
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_and_window(path: Path) -> None:
    try:
        decoded = decode_audio(path, TARGET_RATE)
    except AudioDecodeError as e:
        assert str(path) in str(e) and e.reasons
        return
    samples = decoded.samples
    assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
    assert np.all(np.isfinite(samples))
    assert decoded.sample_rate == TARGET_RATE
    for w in cut_windows(samples, 4000, 3000):
        assert 0 < len(w.samples) <= 4000


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".mp3", ".flac", ".ogg", ".m4a", ".mp4"]))
def test_arbitrary_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        _decode_and_window(path)


@FUZZ
@given(
    header=st.sampled_from(["WAV", "FLAC", "OGG"]),
    rate=st.integers(1000, 192000),
    channels=st.integers(1, 8),
    frames=st.integers(1, 5000),
    cut=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_real_headers_with_truncated_or_odd_content(header: str, rate: int, channels: int, frames: int, cut: float,
                                                    seed: int) -> None:
    rng = np.random.default_rng(seed)
    signal = rng.uniform(-1.5, 1.5, size=(frames, channels)).astype(np.float32)  # clipping values too
    buffer = io.BytesIO()
    try:
        soundfile.write(buffer, signal, rate, format=header, subtype="VORBIS" if header == "OGG" else None)
    except (soundfile.LibsndfileError, ValueError, TypeError):
        return  # a combination libsndfile cannot even write
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz.{header.lower()}"
        path.write_bytes(data[: max(1, int(len(data) * cut))])  # truncated anywhere, header included
        _decode_and_window(path)
