"""The bundled starter model: shipped weights, encoder contract, checkpoint errors, loss, metrics and a
tiny seeded training run on rendered clips."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.encoders.base import Encoder
from indexer.errors import CheckpointError, CheckpointNotFoundError
from indexer.starter import TINY_CONFIG, WEIGHTS_PATH, StarterEncoder
from indexer.starter.checkpoint import load_starter, save_starter
from indexer.starter.features import pad_windows
from indexer.starter.model import StarterModel
from indexer.training.augment import AugmentConfig
from indexer.training.evaluate import retrieval_metrics, scene_metrics, zero_shot_accuracy
from indexer.training.train import (
    TrainConfig,
    audio_neighbourhood_loss,
    contrastive_loss,
    text_geometry_loss,
    train_starter,
)

SAMPLE_RATE = 16000


def tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture(scope="module")
def shipped() -> StarterEncoder:
    return StarterEncoder(WEIGHTS_PATH)


TEXT_MODEL = {"id": "sentence-transformers/all-MiniLM-L6-v2", "sha256": "0" * 64}


def tiny_model(seed: int = 0) -> StarterModel:
    torch.manual_seed(seed)
    return StarterModel(TINY_CONFIG).eval()


def sentence_vectors(n: int, seed: int = 0) -> torch.Tensor:
    """Stand-ins for the frozen text model's unit vectors."""
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, TINY_CONFIG.text_input_dim, generator=generator), dim=1)


def test_shipped_weights_embed_unit_vectors(shipped: StarterEncoder) -> None:
    assert isinstance(shipped, Encoder)
    assert shipped.info.family == "starter"
    assert shipped.info.model_id == "starter"
    assert (shipped.info.dim, shipped.info.sample_rate, shipped.info.window_seconds) == (256, 16000, 4.0)
    assert len(shipped.info.checkpoint_sha256) == 64
    assert WEIGHTS_PATH.stat().st_size < 25 * 2**20
    # A short window (repeat-padded by the encoder) and a full one.
    audio = shipped.embed_audio([tone(440, 1.0), tone(220, 4.0)])
    assert audio.shape == (2, 256) and audio.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    assert shipped.embed_audio([]).shape == (0, 256)
    assert 1.0 < shipped.logit_scale() <= 100.0


def test_embed_text_is_deterministic(shipped: StarterEncoder) -> None:
    texts = ["a cello", "rain on a window", "This is a sound of piano.", "zxqv unknownword " * 30]
    first = shipped.embed_text(texts)
    second = shipped.embed_text(list(reversed(texts)))[::-1]
    assert first.shape == (4, 256)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_repeat_padding_and_window_limit() -> None:
    config = TINY_CONFIG
    short = np.arange(1, 7001, dtype=np.float32)
    padded = pad_windows([short], config)[0].numpy()
    # 16000 samples: two whole repeats of the 7000-sample clip, then zeros.
    np.testing.assert_array_equal(padded[:14000], np.tile(short, 2))
    np.testing.assert_array_equal(padded[14000:], np.zeros(2000, dtype=np.float32))
    with pytest.raises(ValueError, match="exceeds 16000"):
        pad_windows([np.zeros(16001, dtype=np.float32)], config)
    with pytest.raises(ValueError, match="non-empty"):
        pad_windows([np.zeros(0, dtype=np.float32)], config)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    windows = pad_windows([tone(440, 1.0), tone(660, 0.5)], model.config)
    sentences = sentence_vectors(2)
    with torch.inference_mode():
        audio, text = model.embed_waveforms(windows), model.embed_sentences(sentences)
    save_starter(model, tmp_path / "f32.safetensors", TEXT_MODEL, dtype=torch.float32)
    loaded, text_model, metadata = load_starter(tmp_path / "f32.safetensors")
    assert loaded.config == model.config and text_model == TEXT_MODEL
    assert metadata["format"] == "resound-starter/2"
    with torch.inference_mode():
        torch.testing.assert_close(loaded.embed_waveforms(windows), audio, rtol=0, atol=0)
        torch.testing.assert_close(loaded.embed_sentences(sentences), text, rtol=0, atol=0)
    save_starter(model, tmp_path / "f16.safetensors", TEXT_MODEL, dtype=torch.float16)
    half, _, _ = load_starter(tmp_path / "f16.safetensors")
    with torch.inference_mode():
        assert (half.embed_waveforms(windows) * audio).sum(dim=1).min() > 0.999
        assert (half.embed_sentences(sentences) * text).sum(dim=1).min() > 0.999


def test_a_retired_starter_checkpoint_is_refused_by_name(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    old = tmp_path / "old.safetensors"
    save_file({"w": torch.zeros(2)}, str(old), metadata={"format": "resound-starter/1", "config": "{}"})
    with pytest.raises(CheckpointError, match=r"old.safetensors: a resound-starter/1 starter checkpoint, which this resound no longer loads \(its text tower \(CLIP BPE"):
        StarterEncoder(old)


def test_a_text_model_other_than_the_trained_one_is_refused(tmp_path: Path) -> None:
    path = save_starter(tiny_model(), tmp_path / "w.safetensors", TEXT_MODEL)
    encoder = StarterEncoder(path)  # audio needs no text model
    assert encoder.embed_audio([tone(440, 1.0)]).shape == (1, TINY_CONFIG.embed_dim)
    assert encoder.info.preprocessing["text_model_sha256"] == "0" * 64
    with pytest.raises(CheckpointError, match=r"model.safetensors: text model sha256 53aa51172d14 is not the sentence-transformers/all-MiniLM-L6-v2 \(sha256 000000000000\) that .*w.safetensors was trained with"):
        encoder.embed_text(["a cello"])


def test_text_geometry_loss_matches_a_loop() -> None:
    projected = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    sentences = sentence_vectors(5)
    expected = np.mean([
        (float(projected[i] @ projected[j]) - float(sentences[i] @ sentences[j])) ** 2
        for i in range(5) for j in range(5) if i != j
    ])
    assert math.isclose(float(text_geometry_loss(projected, sentences)), expected, rel_tol=1e-5)
    assert float(text_geometry_loss(sentences, sentences)) < 1e-12



def test_audio_neighbourhood_loss_on_three_clips() -> None:
    """Teacher: clips 1 and 3 identical, clip 2 orthogonal; student: three orthogonal clips. At temperature 1,
    rows 1 and 3 have teacher neighbours softmax(0, 1) against the student's uniform (1/2, 1/2), row 2 is
    uniform in both: the mean KL is 2/3 (log 2 - H(softmax(0, 1)))."""
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])  # norms differ: only cosines count
    student = torch.eye(3)
    p = 1 / (1 + math.e)
    expected = 2 / 3 * (math.log(2) + p * math.log(p) + (1 - p) * math.log(1 - p))
    assert math.isclose(float(audio_neighbourhood_loss(student, teacher, 1.0)), expected, rel_tol=1e-6)
    assert math.isclose(expected, 0.0739627, rel_tol=1e-5)
    # The student's cosines equal the teacher's (any widths, any scale): nothing to learn.
    same = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert abs(float(audio_neighbourhood_loss(same, teacher, 0.05))) < 1e-7
    # A teacher at half the temperature is the teacher with its cosines doubled.
    doubled = audio_neighbourhood_loss(student, teacher, 1.0, 0.5)
    p = 1 / (1 + math.e**2)
    assert math.isclose(float(doubled), 2 / 3 * (math.log(2) + p * math.log(p) + (1 - p) * math.log(1 - p)), rel_tol=1e-6)
    # Two clips: each row has one neighbour, whose probability is 1 whatever the cosines.
    assert float(audio_neighbourhood_loss(student[:2], teacher[:2], 0.05)) == 0.0

def test_missing_and_corrupt_weights_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(CheckpointNotFoundError, match="absent.safetensors"):
        StarterEncoder(missing)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="corrupt.safetensors"):
        StarterEncoder(corrupt)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign.safetensors: not a starter checkpoint"):
        StarterEncoder(foreign)


def test_contrastive_loss_matches_a_loop() -> None:
    generator = torch.Generator().manual_seed(3)
    audio = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    captions = torch.tensor([0, 1, 0, 2])  # clips 0 and 2 share their caption: both are positives
    labels = torch.tensor([0, 1, 0, 1])
    scale = torch.tensor(10.0)
    logits = (scale * audio @ text.T).tolist()
    expected = 0.0
    for i in range(4):
        positives = [j for j in range(4) if captions[j] == captions[i]]
        row = logits[i]
        column = [logits[j][i] for j in range(4)]
        for values in (row, column):
            log_norm = math.log(sum(math.exp(v) for v in values))
            expected += -sum(values[j] - log_norm for j in positives) / len(positives) / 8
    loss = contrastive_loss(audio, text, scale, captions, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_scene_aware_positives_match_a_loop() -> None:
    """A same-label pair is a positive only if its caption names no scene or both clips share the scene."""
    generator = torch.Generator().manual_seed(5)
    audio = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator), dim=1)
    text = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator), dim=1)
    captions = torch.tensor([0, 1, 2, 3, 0])
    labels = torch.tensor([0, 0, 0, 1, 0])
    scenes = torch.tensor([0, 1, 0, 0, 2])
    plain = torch.tensor([True, False, False, False, True])  # captions 0 ("organ") name no scene
    scale, weight = torch.tensor(10.0), 0.5
    logits = (scale * audio @ text.T).tolist()

    def related(a: int, t: int) -> bool:  # caption t describes audio a
        return bool(labels[a] == labels[t] and (plain[t] or scenes[a] == scenes[t]))

    def targets(i: int, pairs: list[tuple[int, int]]) -> list[float]:
        same = [float(captions[a] == captions[t]) for a, t in pairs]
        rel = [float(related(a, t)) for a, t in pairs]
        return [(1 - weight) * s / sum(same) + weight * r / sum(rel) for s, r in zip(same, rel)]

    expected = 0.0
    for i in range(5):
        row = logits[i]  # audio i against every caption
        column = [logits[j][i] for j in range(5)]  # caption i against every audio
        for values, target in ((row, targets(i, [(i, t) for t in range(5)])),
                               (column, targets(i, [(a, i) for a in range(5)]))):
            log_norm = math.log(sum(math.exp(v) for v in values))
            expected += -sum(w * (v - log_norm) for w, v in zip(target, values)) / 10
    loss = contrastive_loss(audio, text, scale, captions, labels, weight, scenes, plain)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Scene-blind, the organ in scene 1 (clip 1) would also be a positive of clip 0's scene-0 caption.
    blind = contrastive_loss(audio, text, scale, captions, labels, weight)
    assert blind.item() != pytest.approx(expected, rel=1e-3)


def test_metrics_on_a_hand_made_ranking() -> None:
    labels = ["a", "b"]
    label_vectors = np.eye(2, dtype=np.float32)
    # Clips 0, 1 are "a", clip 2 is "b"; clip 1 looks like "b".
    audio = np.array([[1.0, 0.0], [0.2, 0.9], [0.1, 0.8]], dtype=np.float32)
    assert zero_shot_accuracy(audio, ["a", "a", "b"], label_vectors, labels) == pytest.approx(200 / 3)
    metrics = retrieval_metrics(audio, ["a", "a", "b"], label_vectors, labels, ks=(1, 2))
    # Query "a" ranks clips 0, 1, 2 (hits at 1 and 2: AP 1); query "b" ranks 1, 2, 0 (hit at 2: AP 1/2).
    assert metrics == {"R@1": 50.0, "R@2": 100.0, "mAP": 75.0}


def test_scene_metrics_on_hand_made_embeddings() -> None:
    from indexer.demo import describe_label, scene_phrases

    axes = [describe_label("piano"), describe_label("violin"), scene_phrases("cathedral"), scene_phrases("dry")]

    def embed_text(texts):  # type: ignore[no-untyped-def]
        # A text points along every axis (piano, violin, cathedral, dry) whose phrases it contains.
        vectors = np.array([[any(p in t for p in axis) for axis in axes] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    audio = np.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 1, 0]], dtype=np.float32) / np.sqrt(2)
    labels = ["piano", "piano", "violin", "violin"]
    scenes = ["cathedral", "dry", "cathedral", "dry"]  # the last clip sounds like a cathedral
    metrics = scene_metrics(audio, labels, scenes, embed_text)
    # Scene: clips 0-2 right, clip 3 wrong. Label+scene queries: piano/cathedral, piano/dry and
    # violin/cathedral rank their clip first; violin/dry scores clips 1, 2, 3 equally at 0.5 and the
    # stable order puts its clip third (AP 1/3).
    assert metrics == pytest.approx({"scene accuracy": 75.0, "label+scene R@1": 75.0, "label+scene mAP": 100 * (3 + 1 / 3) / 4})


def test_training_refuses_the_held_out_set(tmp_path: Path) -> None:
    config = TrainConfig(out_path=tmp_path / "w.safetensors", train_sample_sets=("fluidr3", "freepats"))
    with pytest.raises(ValueError, match="held out"):
        train_starter(config, log=lambda line: None)


def _tiny_config(tmp_path: Path, name: str, **changes: object) -> TrainConfig:
    classes = ("piano", "flute", "drum kit", "violin")
    config = TrainConfig(
        out_path=tmp_path / f"{name}.safetensors",
        metrics_path=tmp_path / f"{name}.json",
        cache_dir=tmp_path / "cache",
        train_sample_sets=("timgm6mb",),
        train_classes=classes,
        clips_per_set=8,
        validation_clips_per_class=1,
        validation_classes=classes,
        model=TINY_CONFIG,
        # Augmentation off and one batch per epoch: the same 8 clips each step, so the loss must fall.
        augment=AugmentConfig(
            crop_frames=101, stretch_prob=0, pitch_prob=0, gain_db=0, eq_prob=0, lowpass_prob=0,
            highpass_prob=0, noise_prob=0, mix_prob=0, time_masks=0, freq_masks=0,
        ),
        plain_caption_prob=1.0,
        use_recordings=False,
        batch_size=8,
        epochs=6,
        warmup_steps=1,
        learning_rate=3e-3,
    )
    return replace(config, **changes)


def test_tiny_training_run_lowers_the_loss(tmp_path: Path) -> None:
    result = train_starter(_tiny_config(tmp_path, "tiny"), log=lambda line: None)
    assert len(result.losses) == 6
    assert result.losses[-1] < result.losses[0]
    assert result.metrics_path is not None and result.metrics_path.is_file()
    encoder = StarterEncoder(result.weights_path, model_id="tiny")
    assert encoder.info.window_seconds == 1.0 and encoder.info.dim == TINY_CONFIG.embed_dim
    assert encoder.embed_text(["piano"]).shape == (1, TINY_CONFIG.embed_dim)
    assert result.storage_min_cosine > 0.999


def test_the_same_seed_trains_the_same_model(tmp_path: Path) -> None:
    # Seeded data order, captions, augmentation and initialisation on deterministic kernels: a second
    # run repeats the first exactly (the full recipe's metrics are re-checked in the model card).
    augment = AugmentConfig(crop_frames=101)  # every random change on, so all of them are seeded
    first = train_starter(_tiny_config(tmp_path, "first", augment=augment, epochs=2), log=lambda line: None)
    again = train_starter(_tiny_config(tmp_path, "again", augment=augment, epochs=2), log=lambda line: None)
    other = train_starter(_tiny_config(tmp_path, "other", augment=augment, epochs=2, seed=1), log=lambda line: None)
    assert first.losses == again.losses and first.validation == again.validation
    from safetensors.numpy import load_file

    weights, repeated = load_file(first.weights_path), load_file(again.weights_path)
    assert weights.keys() == repeated.keys()
    assert all(np.array_equal(weights[name], repeated[name]) for name in weights)
    assert other.losses != first.losses


def test_validating_less_often_trains_the_same_weights(tmp_path: Path) -> None:
    every = train_starter(_tiny_config(tmp_path, "every", epochs=3), log=lambda line: None)
    sparse = train_starter(_tiny_config(tmp_path, "sparse", epochs=3, eval_every=2), log=lambda line: None)
    assert ["validation" in h for h in sparse.history] == [False, True, True]  # epoch 2, and the last
    assert sparse.losses == every.losses and sparse.validation == every.validation
    from safetensors.numpy import load_file

    weights, other = load_file(every.weights_path), load_file(sparse.weights_path)
    assert all(np.array_equal(weights[name], other[name]) for name in weights)


def test_the_training_script_defaults_are_the_recipe() -> None:
    """bench/starter_train.py with only --out trains exactly TrainConfig's defaults (the shipped recipe)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("starter_train", Path(__file__).parents[1] / "bench" / "starter_train.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    parsed = script.parse_config(["--out", "w.safetensors"])
    assert parsed == TrainConfig(out_path=Path("w.safetensors"))
