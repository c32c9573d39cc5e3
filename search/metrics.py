"""Retrieval and classification metrics over similarity matrices, as the audio-text papers compute them.

Conventions (those of LAION-CLAP's `evaluate_clotho_audiocaps`, after Mei et al.'s audio-text retrieval):
- text -> audio: each caption is a query with exactly one relevant audio. R@k is the fraction of queries
  whose audio ranks in the top k; mAP@10 averages 1/rank over queries (0 beyond rank 10); the median rank
  is 1-based.
- audio -> text: an audio query is correct at k when ANY of its captions ranks in the top k. mAP@10 sorts
  the ranks of its captions, keeps those within the top 10, and averages precision at each of them over
  the audio's number of captions.
- Ties count against the model: an item ranks below every other item with an equal score, so a model
  that gives every item the same score ranks every relevant item last, never first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def pessimistic_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """0-based rank of item `relevant[q]` in row `scores[q]`: how many other items score at least as high."""
    scores = np.asarray(scores, dtype=np.float64)
    target = scores[np.arange(len(scores)), relevant][:, None]
    return (scores >= target).sum(axis=1) - 1


@dataclass(frozen=True)
class RetrievalMetrics:
    """R@1/5/10, mAP@10 and ranks for one direction of retrieval."""

    recall: dict[int, float]
    map_at_10: float
    median_rank: float
    mean_rank: float
    queries: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}_R@{k}": v for k, v in self.recall.items()}
        out.update({f"{prefix}_mAP@10": self.map_at_10, f"{prefix}_median_rank": self.median_rank,
                    f"{prefix}_mean_rank": self.mean_rank})
        return out


def text_to_audio(similarity: np.ndarray, caption_audio: Sequence[int]) -> RetrievalMetrics:
    """Metrics for captions (rows of `similarity`, shape (n_captions, n_audio)) retrieving their audio.

    `caption_audio[i]` is the index of the audio caption i describes.
    """
    ranks = pessimistic_ranks(similarity, np.asarray(caption_audio))
    return RetrievalMetrics(
        recall={k: float(np.mean(ranks < k)) for k in RECALL_AT},
        map_at_10=float(np.mean(np.where(ranks < 10, 1.0 / (ranks + 1), 0.0))),
        median_rank=float(np.floor(np.median(ranks)) + 1),
        mean_rank=float(np.mean(ranks) + 1),
        queries=len(ranks),
    )


def audio_to_text(similarity: np.ndarray, caption_audio: Sequence[int]) -> RetrievalMetrics:
    """Metrics for audio (rows of `similarity`, shape (n_audio, n_captions)) retrieving their captions."""
    similarity = np.asarray(similarity, dtype=np.float64)
    caption_audio = np.asarray(caption_audio)
    best_ranks, average_precisions = [], []
    for a, row in enumerate(similarity):
        own = np.flatnonzero(caption_audio == a)
        if len(own) == 0:
            raise ValueError(f"audio {a} has no caption")
        # Position of the i-th best own caption: the other captions scoring at least as high, plus i.
        own_scores = np.sort(row[own])[::-1]
        others = np.sort(np.delete(row, own))
        ranks = len(others) - np.searchsorted(others, own_scores, side="left") + np.arange(len(own))
        best_ranks.append(ranks.min())
        within = ranks[ranks < 10]
        average_precisions.append(float(np.sum(np.arange(1, len(within) + 1) / (within + 1)) / len(own)))
    best = np.asarray(best_ranks)
    return RetrievalMetrics(
        recall={k: float(np.mean(best < k)) for k in RECALL_AT},
        map_at_10=float(np.mean(average_precisions)),
        median_rank=float(np.floor(np.median(best)) + 1),
        mean_rank=float(np.mean(best) + 1),
        queries=len(best),
    )


@dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracy, per-class accuracy (recall) and the confusion matrix (rows: true, columns: predicted)."""

    accuracy: float
    per_class: dict[str, float]
    mean_per_class: float
    confusion: np.ndarray
    labels: list[str]


def classification(true: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> ClassificationMetrics:
    """Metrics of predicted class indices against true ones; classes absent from `true` are left out of
    the per-class figures."""
    true, predicted = np.asarray(true), np.asarray(predicted)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (true, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = {labels[i]: float(confusion[i, i] / support[i]) for i in range(n) if support[i] > 0}
    return ClassificationMetrics(
        accuracy=float(np.mean(true == predicted)) if len(true) else 0.0,
        per_class=per_class,
        mean_per_class=float(np.mean(list(per_class.values()))) if per_class else 0.0,
        confusion=confusion,
        labels=list(labels),
    )


def harmonic_mean(seen: float, unseen: float) -> float:
    """GZSL's H: 2SU/(S+U), 0 when both are 0."""
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)
