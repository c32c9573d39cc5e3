"""Zero-shot classification and text-to-audio retrieval metrics on labelled clip embeddings.

Definitions (all in percent):
- zero-shot accuracy: share of clips whose most similar label embedding (cosine) is their own label;
- text-to-audio R@K: one query per label (its prompt embedding) ranks every clip; R@K is the share of
  queries with at least one clip of that label among the top K (the "any relevant item" recall of
  AudioCaps/Clotho retrieval, with a class's clips as the relevant set);
- text-to-audio mAP: mean over label queries of the average precision of the full ranking.

Scenes (`scene_metrics`):
- scene accuracy: share of clips whose most similar scene (the mean of its phrases, "echoing through a
  vast stone cathedral") is the clip's own scene;
- label+scene R@1 and mAP: one query per (label, scene) pair that has clips, the mean of the label's
  descriptions placed in that scene ("deep, resonant pipe organ tones filling a vast stone cathedral");
  relevant clips are those of that label in that scene, so a query whose top clip is the right source
  in another room misses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from indexer.starter.prompts import (
    PROMPT_STYLES,
    label_embeddings,
    label_in_scene_prompts,
    mean_prompt_embeddings,
)


def zero_shot_accuracy(audio: np.ndarray, clip_labels: Sequence[str], label_vectors: np.ndarray, labels: Sequence[str]) -> float:
    """Percent of clips (rows of `audio`) whose argmax-cosine label is their own."""
    predicted = np.asarray(labels)[np.argmax(audio @ label_vectors.T, axis=1)]
    return float(100.0 * np.mean(predicted == np.asarray(clip_labels)))


def retrieval_metrics(
    audio: np.ndarray,
    clip_labels: Sequence[str],
    label_vectors: np.ndarray,
    labels: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Text-to-audio R@K for each K and mAP (percent), one query per label that has clips."""
    clip_labels = np.asarray(clip_labels)
    hits = {k: [] for k in ks}
    average_precisions = []
    for label, query in zip(labels, label_vectors):
        relevant = clip_labels == label
        if not relevant.any():
            continue
        # Stable sort on -score: ties keep clip order, so the metric is deterministic.
        order = np.argsort(-(audio @ query), kind="stable")
        ranked_relevant = relevant[order]
        for k in ks:
            hits[k].append(bool(ranked_relevant[:k].any()))
        positions = np.flatnonzero(ranked_relevant) + 1
        average_precisions.append(float(np.mean(np.arange(1, len(positions) + 1) / positions)))
    metrics = {f"R@{k}": float(100.0 * np.mean(hits[k])) for k in ks}
    metrics["mAP"] = float(100.0 * np.mean(average_precisions))
    return metrics


def evaluate_labelled_clips(
    audio: np.ndarray,
    clip_labels: Sequence[str],
    labels: Sequence[str],
    embed_text: Callable[[Sequence[str]], np.ndarray],
    styles: Sequence[str] = PROMPT_STYLES,
) -> dict[str, dict[str, float]]:
    """For each prompt style: zero-shot accuracy, R@1/5/10 and mAP of `audio` against `labels`."""
    results = {}
    for style in styles:
        vectors = label_embeddings(labels, style, embed_text)
        results[style] = {
            "accuracy": zero_shot_accuracy(audio, clip_labels, vectors, labels),
            **retrieval_metrics(audio, clip_labels, vectors, labels),
        }
    return results


def scene_metrics(
    audio: np.ndarray,
    clip_labels: Sequence[str],
    clip_scenes: Sequence[str],
    embed_text: Callable[[Sequence[str]], np.ndarray],
) -> dict[str, float]:
    """Scene accuracy, and label+scene R@1 and mAP (percent); see the module docstring."""
    from indexer.demo import scene_phrases

    scenes = sorted(set(clip_scenes))
    scene_vectors = mean_prompt_embeddings([scene_phrases(scene) for scene in scenes], embed_text)
    pairs = sorted(set(zip(clip_labels, clip_scenes)))
    pair_vectors = mean_prompt_embeddings([label_in_scene_prompts(label, scene) for label, scene in pairs], embed_text)
    pair_names = [f"{label}\t{scene}" for label, scene in pairs]
    clip_pairs = [f"{label}\t{scene}" for label, scene in zip(clip_labels, clip_scenes)]
    retrieval = retrieval_metrics(audio, clip_pairs, pair_vectors, pair_names, ks=(1,))
    return {
        "scene accuracy": zero_shot_accuracy(audio, clip_scenes, scene_vectors, scenes),
        "label+scene R@1": retrieval["R@1"],
        "label+scene mAP": retrieval["mAP"],
    }
