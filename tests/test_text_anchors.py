"""Text anchors of the starter model: the blend against a hand computation, what a checkpoint keeps,
what the trainer chooses, and what the shipped weights do with words no caption uses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from indexer.starter import TINY_CONFIG, WEIGHTS_PATH, StarterEncoder
from indexer.starter.checkpoint import load_starter, save_starter
from indexer.starter.config import StarterConfig
from indexer.starter.model import StarterModel
from indexer.training.train import SentenceTable, choose_text_anchors

TEXT_MODEL = {"id": "sentence-transformers/all-MiniLM-L6-v2", "sha256": "0" * 64}


def unit_rows(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, TINY_CONFIG.text_input_dim, generator=generator), dim=1)


def tiny_model(**anchoring: float) -> StarterModel:
    torch.manual_seed(0)
    return StarterModel(replace(TINY_CONFIG, **anchoring)).eval()


def test_the_blend_matches_a_hand_computation() -> None:
    model = tiny_model(anchor_neighbours=2, anchor_temperature=0.1, anchor_weight=0.3)
    anchors, queries = unit_rows(5, seed=1), unit_rows(3, seed=2)
    model.set_text_anchors(anchors)
    with torch.inference_mode():
        blended = model.embed_queries(queries).numpy()
        own = model.embed_sentences(queries).numpy()
        anchor_projected = model.embed_sentences(anchors).numpy()
    a, q = anchors.numpy(), queries.numpy()
    for row in range(3):
        cosines = a @ q[row]
        nearest = np.argsort(-cosines)[:2]
        weights = np.exp(cosines[nearest] / 0.1)
        weights /= weights.sum()
        mix = (weights[:, None] * anchor_projected[nearest]).sum(axis=0)
        expected = 0.3 * own[row] + 0.7 * mix / np.linalg.norm(mix)
        np.testing.assert_allclose(blended[row], expected / np.linalg.norm(expected), atol=1e-5)


def test_a_query_that_is_an_anchor_moves_towards_its_neighbours_only() -> None:
    # With one neighbour, a query equal to an anchor blends with itself: its projection is unchanged.
    model = tiny_model(anchor_neighbours=1)
    anchors = unit_rows(4, seed=3)
    model.set_text_anchors(anchors)
    with torch.inference_mode():
        torch.testing.assert_close(model.embed_queries(anchors), model.embed_sentences(anchors), atol=1e-6, rtol=0)


def test_without_anchors_queries_are_the_plain_projection() -> None:
    model = tiny_model()
    assert model.anchors is None and model.config.text_anchors == 0
    queries = unit_rows(3, seed=4)
    with torch.inference_mode():
        torch.testing.assert_close(model.embed_queries(queries), model.embed_sentences(queries), atol=0, rtol=0)


def test_a_checkpoint_keeps_its_anchors_and_their_settings(tmp_path: Path) -> None:
    model = tiny_model(anchor_neighbours=3, anchor_weight=0.25)
    model.set_text_anchors(unit_rows(6, seed=5))
    path = save_starter(model, tmp_path / "anchored.safetensors", TEXT_MODEL, dtype=torch.float32)
    loaded, _, _ = load_starter(path)
    assert loaded.config.text_anchors == 6 and loaded.config.anchor_neighbours == 3
    assert loaded.config.anchor_weight == 0.25
    torch.testing.assert_close(loaded.anchors.sentences, model.anchors.sentences, atol=0, rtol=0)
    queries = unit_rows(2, seed=6)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.embed_queries(queries), model.embed_queries(queries), atol=1e-6, rtol=0)
    encoder = StarterEncoder(path)
    assert encoder.info.preprocessing["text_anchors"] == {"count": 6, "weight": 0.25, "temperature": 0.05, "neighbours": 3}


def test_a_checkpoint_from_before_anchors_loads_without_them(tmp_path: Path) -> None:
    path = save_starter(tiny_model(), tmp_path / "plain.safetensors", TEXT_MODEL)
    # Configs written before the anchors' fields existed lack them.
    config_json = StarterConfig.to_json(TINY_CONFIG)
    assert StarterConfig.from_json(config_json.replace('"text_anchors": 0, ', "")).text_anchors == 0
    loaded, _, _ = load_starter(path)
    assert loaded.anchors is None
    assert "text_anchors" not in StarterEncoder(path).info.preprocessing


def test_the_trainer_draws_the_same_anchors_for_the_same_seed() -> None:
    vectors = unit_rows(10, seed=7)
    table = SentenceTable([f"text {i}" for i in range(10)], vectors)
    first, again, other = (choose_text_anchors(table, 4, seed) for seed in (0, 0, 1))
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.equal(first, other)
    rows = {tuple(v.tolist()) for v in vectors}
    assert len(first) == 4 and all(tuple(v.tolist()) in rows for v in first)
    assert len(choose_text_anchors(table, 50, 0)) == 10  # never more anchors than texts


@pytest.fixture(scope="module")
def shipped() -> StarterEncoder:
    return StarterEncoder(WEIGHTS_PATH)


def test_the_shipped_weights_carry_anchors(shipped: StarterEncoder) -> None:
    assert shipped.model.config.text_anchors == 4096
    assert shipped.info.preprocessing["text_anchors"]["count"] == 4096


@pytest.mark.parametrize(
    ("query", "instrument"),
    [
        ("a fiddle", "violin"),
        ("a kettledrum", "timpani"),
        ("a downpour", "rain"),
        ("a sax", "saxophone"),
        ("a snapshot", "camera shutter"),
        ("a carillon", "tubular bells"),
    ],
)
def test_words_no_caption_uses_land_nearest_their_sound(shipped: StarterEncoder, query: str, instrument: str) -> None:
    # Key words of indexer/starter/paraphrase_queries.json: no training text shares their stems
    # (tests/test_paraphrases.py). Ranked against every demo class's bare name in the joint space.
    from indexer.demo import SOUND_CLASSES

    classes = sorted(SOUND_CLASSES)
    vectors = shipped.embed_text(classes)
    scores = vectors @ shipped.embed_text([query])[0]
    assert classes[int(np.argmax(scores))] == instrument
