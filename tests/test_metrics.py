"""Metrics against brute-force loops on seeded random embeddings, with ties and several captions per audio."""

from __future__ import annotations

import numpy as np
import pytest

from search import metrics


def _ranking(row: np.ndarray, relevant: set[int]) -> list[int]:
    """Items best first; among equal scores the irrelevant ones first (ties count against the model)."""
    return sorted(range(len(row)), key=lambda i: (-row[i], i in relevant, i))


def brute_text_to_audio(sim: np.ndarray, caption_audio: list[int]) -> dict[str, float]:
    ranks = [_ranking(row, {caption_audio[q]}).index(caption_audio[q]) for q, row in enumerate(sim)]
    out = {f"R@{k}": sum(r < k for r in ranks) / len(ranks) for k in (1, 5, 10)}
    out["mAP@10"] = sum(1 / (r + 1) for r in ranks if r < 10) / len(ranks)
    out["median"] = float(np.floor(np.median(ranks)) + 1)
    return out


def brute_audio_to_text(sim: np.ndarray, caption_audio: list[int]) -> dict[str, float]:
    best, aps = [], []
    for a, row in enumerate(sim):
        own = {c for c, owner in enumerate(caption_audio) if owner == a}
        order = _ranking(row, own)
        positions = sorted(order.index(c) for c in own)
        best.append(positions[0])
        hits, ap = 0, 0.0
        for position in positions:
            if position < 10:
                hits += 1
                ap += hits / (position + 1)
        aps.append(ap / len(own))
    out = {f"R@{k}": sum(b < k for b in best) / len(best) for k in (1, 5, 10)}
    out["mAP@10"] = sum(aps) / len(aps)
    out["median"] = float(np.floor(np.median(best)) + 1)
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("quantize", [None, 1])  # rounding to 1 decimal makes many ties
def test_retrieval_matches_brute_force(seed: int, quantize: int | None) -> None:
    rng = np.random.default_rng(seed)
    n_audio = 40
    captions_per_audio = rng.integers(1, 6, size=n_audio)  # 1 to 5 captions each
    caption_audio = [a for a in range(n_audio) for _ in range(captions_per_audio[a])]
    audio = rng.standard_normal((n_audio, 16))
    text = audio[caption_audio] + 1.5 * rng.standard_normal((len(caption_audio), 16))
    sim = text @ audio.T / 16
    if quantize is not None:
        sim = np.round(sim, quantize)

    t2a = metrics.text_to_audio(sim, caption_audio)
    expected = brute_text_to_audio(sim, caption_audio)
    assert t2a.recall == pytest.approx({k: expected[f"R@{k}"] for k in (1, 5, 10)})
    assert t2a.map_at_10 == pytest.approx(expected["mAP@10"])
    assert t2a.median_rank == expected["median"]

    a2t = metrics.audio_to_text(sim.T, caption_audio)
    expected = brute_audio_to_text(sim.T, caption_audio)
    assert a2t.recall == pytest.approx({k: expected[f"R@{k}"] for k in (1, 5, 10)})
    assert a2t.map_at_10 == pytest.approx(expected["mAP@10"])
    assert a2t.median_rank == expected["median"]


def test_exact_values_on_a_hand_made_case() -> None:
    # 3 audio; captions 0,1 -> audio 0, caption 2 -> audio 1, caption 3 -> audio 2.
    caption_audio = [0, 0, 1, 2]
    sim = np.array([
        [0.9, 0.1, 0.0],   # rank 1
        [0.2, 0.5, 0.1],   # rank 2
        [0.3, 0.3, 0.3],   # all tied: ranked last, rank 3
        [0.0, 0.1, 0.8],   # rank 1
    ])
    t2a = metrics.text_to_audio(sim, caption_audio)
    assert t2a.recall == {1: 0.5, 5: 1.0, 10: 1.0}
    assert t2a.map_at_10 == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
    assert t2a.median_rank == 1.0  # ranks (0-based) 0,1,2,0 -> median 0.5 -> floor 0 -> 1

    a2t = metrics.audio_to_text(sim.T, caption_audio)
    # audio 0 ranks captions [0 (0.9), 2 (0.3), 1 (0.2), 3 (0.0)]: own at positions 0 and 2 -> AP (1/1 + 2/3)/2
    # audio 1: [1(0.5), 2(0.3), 3(0.1), 0(0.1)]: own caption 2 at position 1 -> 1/2
    # audio 2: [3 (0.8), 2 (0.3), 1 (0.1), 0 (0.0)]: position 0 -> 1
    assert a2t.recall == {1: pytest.approx(2 / 3), 5: 1.0, 10: 1.0}
    assert a2t.map_at_10 == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2 + 1) / 3)


def test_constant_scores_rank_every_relevant_item_last() -> None:
    sim = np.zeros((20, 20))
    t2a = metrics.text_to_audio(sim, list(range(20)))
    assert t2a.recall[10] == 0.0 and t2a.median_rank == 20.0


def test_classification_metrics() -> None:
    labels = ["dog", "cat", "bird"]
    result = metrics.classification([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 2], labels)
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.per_class == pytest.approx({"dog": 2 / 3, "cat": 1 / 2, "bird": 1.0})
    assert result.mean_per_class == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert result.confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert metrics.harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert metrics.harmonic_mean(0.0, 0.0) == 0.0
