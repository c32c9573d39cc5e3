"""Zero-shot benchmark of the starter model on held-out audio: clips rendered with the FreePats sample
set (TiMidity++), which no starter training run may use.

    python bench/starter_zero_shot.py [--weights PATH] [--clips-per-class 10] [--seed 2024]

Renders (or reuses from the cache) `clips-per-class` clips of every instrument class and the drum kit
that FreePats plays with its own samples, embeds them through StarterEncoder exactly as resound does
(16 kHz soxr resampling, 4 s windows), and prints, for three prompt styles (the bare label, "This is a
sound of {label}.", and the mean of descriptive ReCLAP-style prompts placed in every scene):

- zero-shot accuracy: share of clips whose nearest label prompt (cosine) is their own label;
- text-to-audio R@1/5/10: one query per label ranks all clips; share of queries with a clip of that
  label in the top K (class clips are the relevant set); and mAP over the label queries;
- scenes: zero-shot scene accuracy over the eight scenes, and label+scene R@1 and mAP, with one query
  per (label, scene) pair ("deep, resonant pipe organ tones filling a vast stone cathedral") and only
  clips of that label in that scene relevant (indexer/training/evaluate.py).

`--candidates all` scores each clip against every label the model was trained on (40) instead of the
benchmark's own classes. The bench's seed differs from the training run's validation seed, so the notes
played here were not used to select the shipped epoch either.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from indexer.starter.encoder import WEIGHTS_PATH, StarterEncoder
from indexer.starter.prompts import PROMPT_STYLES
from indexer.training.data import CorpusSpec, ensure_corpus, read_clip
from indexer.training.evaluate import evaluate_labelled_clips, scene_metrics
from indexer.training.train import DEFAULT_CACHE, held_out_classes

HELD_OUT_SET = "freepats"


def run_benchmark(weights: Path, clips_per_class: int, seed: int, cache_dir: Path, candidates: str) -> dict:
    """Metrics per prompt style (see module docstring) and details of the held-out corpus."""
    from indexer.demo import read_demo_corpus

    classes = held_out_classes(HELD_OUT_SET)
    directory = ensure_corpus(cache_dir, CorpusSpec(HELD_OUT_SET, clips_per_class * len(classes), seed, classes))
    clips = read_demo_corpus(directory)
    encoder = StarterEncoder(weights)
    started = time.perf_counter()
    windows = [read_clip(directory / clip.path, encoder.info.sample_rate) for clip in clips]
    audio = np.concatenate(
        [encoder.embed_audio(windows[s : s + 64]) for s in range(0, len(windows), 64)]
    )
    embed_seconds = time.perf_counter() - started
    if candidates == "all":
        from indexer.demo import SOUND_CLASSES

        labels = list(SOUND_CLASSES)
    else:
        labels = list(classes)
    metrics = evaluate_labelled_clips(audio, [c.label for c in clips], labels, encoder.embed_text)
    scenes = scene_metrics(audio, [c.label for c in clips], [c.scene for c in clips], encoder.embed_text)
    return {
        "weights": str(weights),
        "sha256": encoder.info.checkpoint_sha256,
        "corpus": str(directory),
        "sample_set": HELD_OUT_SET,
        "seed": seed,
        "clips": len(clips),
        "classes": list(classes),
        "candidates": len(labels),
        "embed_seconds": round(embed_seconds, 1),
        "metrics": metrics,
        "scenes": scenes,
    }


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per prompt style."""
    columns = ["accuracy", "R@1", "R@5", "R@10", "mAP"]
    lines = ["| prompts | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for style in PROMPT_STYLES:
        lines.append(f"| {style} | " + " | ".join(f"{metrics[style][c]:.1f}" for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--clips-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--candidates", choices=["bench", "all"], default="bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    result = run_benchmark(args.weights, args.clips_per_class, args.seed, args.cache_dir, args.candidates)
    print(
        f"{result['clips']} held-out {HELD_OUT_SET} clips, {len(result['classes'])} classes, "
        f"{result['candidates']} candidate labels (seed {result['seed']})"
    )
    print(format_table(result["metrics"]))
    print(", ".join(f"{name} {value:.1f}" for name, value in result["scenes"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
