"""Decoding every supported format to mono float32 at the encoder's rate, and clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from indexer.errors import AudioDecodeError
from indexer.media import decode_audio
from tests import helpers


@pytest.mark.parametrize(
    ("name", "backend"),
    [("a.wav", "soundfile"), ("a.flac", "soundfile"), ("a.ogg", "soundfile"), ("a.mp3", "soundfile"),
     ("a.opus", "soundfile"), ("a.m4a", "pyav")],
)
def test_formats_decode_to_the_target_rate(tmp_path: Path, name: str, backend: str) -> None:
    path = helpers.write_audio(tmp_path / name, helpers.tone(1000, 2.0, rate=44100), rate=44100)
    decoded = decode_audio(path, 48000)
    assert decoded.sample_rate == 48000 and decoded.samples.dtype == np.float32
    assert decoded.backend == backend
    # Lossy codecs add priming/padding samples: within 60 ms of the true duration.
    assert abs(decoded.duration - 2.0) < 0.06
    # The tone survives: its spectrum peaks at 1 kHz.
    spectrum = np.abs(np.fft.rfft(decoded.samples[4800:4800 + 48000]))
    assert abs(np.argmax(spectrum) * 48000 / 48000 - 1000) <= 2


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left = np.full(16000, 0.5, dtype=np.float32)
    right = np.full(16000, -0.25, dtype=np.float32)
    soundfile.write(str(tmp_path / "s.wav"), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    decoded = decode_audio(tmp_path / "s.wav", 16000)
    assert decoded.source_channels == 2
    np.testing.assert_allclose(decoded.samples, 0.125)


def test_audio_track_of_a_video_container(tmp_path: Path) -> None:
    path = helpers.write_video(tmp_path / "clip.mp4", [(0.0, (200, 10, 10))], seconds=2.0, audio=helpers.tone(500, 2.0))
    decoded = decode_audio(path, 48000)
    assert decoded.backend == "pyav" and abs(decoded.duration - 2.0) < 0.06
    spectrum = np.abs(np.fft.rfft(decoded.samples[4800:52800]))
    assert abs(np.argmax(spectrum) - 500) <= 2


def test_corrupt_file_error_names_file_and_a_plain_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + b"\x00" * 100)
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(path, 48000)
    assert str(err.value) == f"{path}: truncated FLAC"
    # Each decoder's own message stays available as the technical detail.
    assert [r.split(":")[0] for r in err.value.reasons] == ["soundfile", "pyav"]
    assert err.value.detail == "; ".join(err.value.reasons)


def test_empty_and_nan_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty.wav"):
        decode_audio(tmp_path / "empty.wav", 48000)
    nan = np.full(1000, np.nan, dtype=np.float32)
    soundfile.write(str(tmp_path / "nan.wav"), nan, 48000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="NaN"):
        decode_audio(tmp_path / "nan.wav", 48000)
