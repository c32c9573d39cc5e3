"""The aiSFX tower shipped in indexer/starter/weights gives the original checkpoint's embeddings.

tests/data/aisfx-reference.npz holds the embeddings of tests/data/aisfx-clip.wav (3.46 s, two full
blocks) and aisfx-clip-short.wav (1.5 s, one zero-padded block) computed once by the `aisfx` 0.1.2
wheel's own code path: its Essentia spectrogram (`spectrogram_essentia.compute_spectrogram`, Essentia
2.1b6 in a throwaway environment), `spectrogram_normalize('original')`, `blocking(hop 0.5, drop partial)`
and `CrossNet(EmbeddingNet('max', 3, 1, 64)).get_embedding` on the ORIGINAL checkpoint.pth (loaded with
weights_only=True). resound's torch front end and tower on the converted safetensors differ from it by at
most 1.3e-5 (embedding values up to 8.1; spectrogram 9.3e-6).
"""

from __future__ import annotations

import collections
import datetime
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.errors import CheckpointError, CheckpointNotFoundError
from indexer.media.decode import decode_audio
from indexer.starter.aisfx import (
    TOWER_PATH,
    AisfxEmbedder,
    AisfxFrontEnd,
    block_frames,
    frame_count,
    load_aisfx_tower,
    window_blocks,
)
from indexer.starter.config import AISFX_CONFIG

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def embedder() -> AisfxEmbedder:
    return AisfxEmbedder()


@pytest.mark.parametrize(
    ("wav", "key", "blocks"), [("aisfx-clip.wav", "clip", 2), ("aisfx-clip-short.wav", "short", 1)]
)
def test_shipped_tower_matches_the_original_checkpoint(
    embedder: AisfxEmbedder, wav: str, key: str, blocks: int
) -> None:
    reference = np.load(DATA / "aisfx-reference.npz")[key]
    samples = decode_audio(DATA / wav, 44100).samples  # 44.1 kHz file: no resampling
    got = embedder.block_embeddings(torch.from_numpy(samples)).numpy()
    assert got.shape == reference.shape == (blocks, 512)
    assert np.abs(got - reference).max() < 1e-4


def test_bf16_embeddings_stay_within_cosine_of_fp32(embedder: AisfxEmbedder) -> None:
    samples = torch.from_numpy(decode_audio(DATA / "aisfx-clip.wav", 44100).samples)
    exact = embedder.block_embeddings(samples)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = embedder.block_embeddings(samples)
    assert torch.nn.functional.cosine_similarity(exact, approx).min() > 0.999


def test_front_end_frames_follow_essentia() -> None:
    # FrameCutter: every frame that starts inside the signal, the first centred on sample 0.
    assert [frame_count(n) for n in (44100, 102400, 5000)] == [45, 101, 6]
    spec = AisfxFrontEnd()(torch.zeros(1, 44100))
    assert spec.shape == (1, 45, 96)
    assert float(spec.abs().max()) == 0.0  # silence is log10(0 + 1) = 0, the normalisation's minimum


def test_blocking_drops_a_partial_tail_but_keeps_a_lone_block() -> None:
    spec = torch.arange(170 * 2, dtype=torch.float32).reshape(170, 2)
    assert block_frames(spec).shape == (2, 100, 2)  # blocks at 0 and 50; the one at 100 would run past
    assert torch.equal(block_frames(spec)[1], spec[50:150])
    short = block_frames(spec[:60])
    assert short.shape == (1, 100, 2) and float(short[0, 60:].abs().max()) == 0.0


def test_tower_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="missing.safetensors"):
        load_aisfx_tower(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other), metadata={"format": "resound-starter/2"})
    with pytest.raises(CheckpointError, match="other.safetensors: not an aiSFX tower file"):
        load_aisfx_tower(other)


def test_shipped_tower_records_licence_and_source() -> None:
    from safetensors import safe_open

    with safe_open(str(TOWER_PATH), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["licence"] == "CC-BY-4.0"
    assert "Ma and A. Lerch" in metadata["attribution"] and "ISMIR 2022" in metadata["attribution"]
    # sha256 of aisfx-0.1.2-py2.py3-none-any.whl:aisfx/models/checkpoint.pth
    assert metadata["source_sha256"] == "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"


def test_converter_refuses_a_pickle_naming_other_globals() -> None:
    from indexer.training.aisfx_convert import load_checkpoint

    def saved(obj: object) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    state = collections.OrderedDict({"embedding_net.w": torch.ones(2)})
    loaded, datasets = load_checkpoint(saved((state, {"prosfx": (0, np.int64(78))})))
    assert torch.equal(loaded["embedding_net.w"], torch.ones(2)) and datasets == {"prosfx": (0, 78)}
    with pytest.raises(ValueError, match="unexpected globals.*datetime"):
        load_checkpoint(saved((state, {"when": datetime.date(2022, 1, 1)})))


# -- the frozen-aiSFX starter generation (config.audio_tower "aisfx") ---------------------------------

TINY_AISFX = replace(AISFX_CONFIG, text_hidden=32, audio_hidden=32, embed_dim=32)


def test_window_blocks_keep_a_tail_of_half_a_block() -> None:
    features = torch.ones(200, 96)
    assert window_blocks(features).shape == (2, 100, 96)
    assert window_blocks(features[:149]).shape == (1, 100, 96)  # 49 frames of a second block: dropped
    two = window_blocks(features[:150])
    assert (
        two.shape == (2, 100, 96) and float(two[1, 50:].abs().max()) == 0.0
    )  # zero-padded as the wheel pads
    assert window_blocks(features[:30]).shape == (1, 100, 96)


def test_aisfx_head_round_trip_and_the_tower_it_was_trained_on(tmp_path: Path) -> None:
    from indexer.starter import StarterEncoder
    from indexer.starter.checkpoint import save_starter
    from indexer.starter.encoder import AUDIO_TOWER_KEY
    from indexer.starter.model import StarterModel
    from indexer.training.train import _frozen_tower_metadata

    torch.manual_seed(0)
    model = StarterModel(TINY_AISFX).eval()
    text_model = {"id": "sentence-transformers/all-MiniLM-L6-v2", "sha256": "0" * 64}
    path = save_starter(
        model, tmp_path / "a.safetensors", text_model, torch.float32, _frozen_tower_metadata(TINY_AISFX)
    )
    encoder = StarterEncoder(path)
    samples = decode_audio(DATA / "aisfx-clip.wav", 44100).samples
    windows = [samples, samples[:20000]]
    vectors = encoder.embed_audio(windows)
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(encoder.embed_prepared(encoder.prepare_audio(windows)), vectors, atol=1e-6)
    # The head reads the mean of the tower's blocks: the same as the tower run by hand.
    blocks = window_blocks(encoder.prepare_audio([samples])[0])
    with torch.inference_mode():
        expected = model.embed_mel(encoder.tower(blocks).mean(dim=0, keepdim=True)).numpy()
    np.testing.assert_allclose(vectors[:1], expected, atol=1e-5)
    assert encoder.info.sample_rate == 44100 and encoder.info.preprocessing["fill"] == "zeros"
    other = save_starter(
        model, tmp_path / "b.safetensors", text_model, torch.float32, {AUDIO_TOWER_KEY: "0" * 64}
    )
    # The tower loads on the first audio (a text query never reads it): that is where another tower is refused.
    other_encoder = StarterEncoder(other)
    assert other_encoder.info.preprocessing["audio_tower"]["sha256"] == "0" * 64
    with pytest.raises(
        CheckpointError, match=r"b.safetensors: trained on the aiSFX tower with sha256 000000000000"
    ):
        other_encoder.embed_audio([samples])


def test_tiny_aisfx_training_run_lowers_the_loss(tmp_path: Path) -> None:
    from indexer.starter import StarterEncoder
    from indexer.training.train import train_starter
    from tests.test_starter import _tiny_config

    result = train_starter(_tiny_config(tmp_path, "tiny", model=TINY_AISFX), log=lambda line: None)
    assert result.losses[-1] < result.losses[0]
    assert result.parameters["audio"] == sum(
        p.numel() for p in StarterEncoder(result.weights_path).model.audio.parameters()
    )
    encoder = StarterEncoder(result.weights_path)
    assert encoder.embed_text(["piano"]).shape == (1, 32)


def test_aisfx_starter_head_reads_the_shipped_starters_vector_beside_aisfx(tmp_path: Path) -> None:
    from indexer.starter import StarterEncoder
    from indexer.starter.checkpoint import save_starter
    from indexer.starter.companion import COMPANION_KEY, StarterCompanion
    from indexer.starter.encoder import AUDIO_TOWER_KEY
    from indexer.starter.model import StarterModel
    from indexer.training.train import _frozen_tower_metadata

    config = replace(TINY_AISFX, audio_tower="aisfx+starter")
    torch.manual_seed(0)
    model = StarterModel(config).eval()
    text_model = {"id": "sentence-transformers/all-MiniLM-L6-v2", "sha256": "0" * 64}
    metadata = _frozen_tower_metadata(config)
    path = save_starter(model, tmp_path / "a.safetensors", text_model, torch.float32, metadata)
    encoder = StarterEncoder(path)
    samples = decode_audio(DATA / "aisfx-clip.wav", 44100).samples
    vectors = encoder.embed_audio([samples])
    # The head's input: aiSFX's mean of blocks, then the CNN starter's unit vector of the window at 16 kHz.
    companion = StarterCompanion()
    with torch.inference_mode():
        pooled = encoder.tower(window_blocks(encoder.prepare_audio([samples])[0][0])).mean(dim=0, keepdim=True)
        second = companion.embed(companion.windows([samples], 44100))
        expected = model.embed_mel(torch.cat([pooled, second], dim=1)).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert encoder.info.preprocessing["companion"]["sha256"] == metadata[COMPANION_KEY]
    other = save_starter(
        model, tmp_path / "b.safetensors", text_model, torch.float32,
        {AUDIO_TOWER_KEY: metadata[AUDIO_TOWER_KEY], COMPANION_KEY: "0" * 64},
    )
    with pytest.raises(CheckpointError, match=r"b.safetensors: trained beside the starter with sha256 000000000000"):
        StarterEncoder(other).embed_audio([samples])
