"""resound's LAION-CLAP embeddings equal what laion_clap's own code computes, for the same weights."""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile

from indexer.encoders.imports import import_clap_module
from indexer.encoders.laion_clap import LaionClapEncoder, _roberta_from_config, fusion_mel, roberta_tokenizer
from indexer.media import decode_audio
from indexer.windows import cut_windows
from tests import helpers


@pytest.fixture(scope="module")
def laion_clap_module():
    """`laion_clap`, imported with its import-time tokenizer downloads stubbed out (offline they fail)."""
    import transformers

    import_clap_module()
    stubs = [mock.patch.object(getattr(transformers, name), "from_pretrained", return_value=None)
             for name in ("BertTokenizer", "RobertaTokenizer", "BartTokenizer")]
    with contextlib.ExitStack() as stack:
        for stub in stubs:
            stack.enter_context(stub)
        module = importlib.import_module("laion_clap")
    yield module


@pytest.fixture(scope="module")
def reference(laion_clap_module, clap_checkpoint: Path, roberta_tokenizer_dir: Path):
    """laion_clap.CLAP_Module loaded by its own load_ckpt, with the test tokenizer and offline RoBERTa."""
    hook = sys.modules["laion_clap.hook"]
    with _roberta_from_config(), mock.patch.object(
        hook.RobertaTokenizer, "from_pretrained", return_value=roberta_tokenizer(roberta_tokenizer_dir)
    ):
        model = laion_clap_module.CLAP_Module(enable_fusion=False, device="cpu")
    model.load_ckpt(str(clap_checkpoint), verbose=False)
    return model


@pytest.fixture(scope="module")
def encoder(clap_checkpoint: Path) -> LaionClapEncoder:
    return LaionClapEncoder(clap_checkpoint)


def test_audio_embeddings_match_reference(reference, encoder: LaionClapEncoder) -> None:
    rng = np.random.default_rng(0)
    clips = [
        helpers.tone(440, 3.0) + 0.05 * rng.standard_normal(3 * 48000).astype(np.float32),  # short: repeat-pad
        helpers.chirp(200, 6000, 10.0),  # exactly one window
        helpers.noise(7.3, seed=3),  # odd length
        np.clip(2.0 * helpers.tone(100, 1.0), -1.5, 1.5),  # clipping: the int16 round trip must clip the same way
    ]
    ours = encoder.embed_audio(clips)
    theirs = np.concatenate([reference.get_audio_embedding_from_data([c]) for c in clips])
    assert ours.shape == (4, 512)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_long_audio_windows_match_reference_per_window(reference, encoder: LaionClapEncoder) -> None:
    long_clip = helpers.chirp(100, 9000, 23.0)
    windows = cut_windows(long_clip, 480000, 480000)
    assert [(w.start, w.end) for w in windows] == [(0, 480000), (480000, 960000), (624000, 1104000)]
    ours = encoder.embed_audio([w.samples for w in windows])
    theirs = np.concatenate([reference.get_audio_embedding_from_data([w.samples]) for w in windows])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_file_decoding_matches_reference_filelist(reference, encoder: LaionClapEncoder, tmp_path: Path) -> None:
    """A 44.1 kHz stereo file: resampling and downmix agree with laion_clap's librosa.load path."""
    left, right = helpers.tone(330, 4.0, rate=44100), helpers.noise(4.0, seed=5, rate=44100)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 44100)
    decoded = decode_audio(path, 48000)
    assert decoded.source_rate == 44100 and decoded.source_channels == 2
    ours = encoder.embed_audio([decoded.samples])
    theirs = reference.get_audio_embedding_from_filelist([str(path)])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_text_embeddings_match_reference(reference, encoder: LaionClapEncoder) -> None:
    texts = ["the sound of a church organ", "a dog barks", "", "rain " * 100]
    ours = encoder.embed_text(texts)
    theirs = reference.get_text_embedding(texts)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_fusion_mel_matches_librosa_reference() -> None:
    """torchaudio is not installable next to CPU torch; librosa's htk mel is laion_clap's own cross-check."""
    import librosa
    import torch

    cfg = {"sample_rate": 48000, "window_size": 1024, "hop_size": 480, "mel_bins": 64, "fmin": 50, "fmax": 14000}
    x = helpers.chirp(60, 12000, 2.0) + 0.1 * helpers.noise(2.0, seed=9)
    ours = fusion_mel(torch.from_numpy(x), cfg).numpy()
    power = librosa.feature.melspectrogram(
        y=x, sr=48000, n_fft=1024, hop_length=480, win_length=1024, center=True, pad_mode="reflect",
        power=2.0, n_mels=64, norm=None, htk=True, fmin=50, fmax=14000,
    )
    theirs = 10.0 * np.log10(np.maximum(power, 1e-10)).T
    assert ours.shape == theirs.shape == (201, 64)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_fusion_checkpoint_is_inferred_and_embeds(tmp_path: Path, roberta_tokenizer_dir: Path) -> None:
    checkpoint = helpers.write_random_clap_checkpoint(tmp_path / "fusion.pt", seed=2, fusion=True)
    encoder = LaionClapEncoder(checkpoint)
    assert encoder.info.preprocessing["fusion"] is True
    clips = [helpers.tone(440, 2.0), helpers.noise(10.0, seed=1)]
    first, second = encoder.embed_audio(clips), encoder.embed_audio(clips)
    np.testing.assert_array_equal(first, second)  # deterministic: no random crop or chunk choice
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
