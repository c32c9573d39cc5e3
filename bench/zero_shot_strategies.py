"""Zero-shot classification and retrieval of a model on held-out audio, for every prompt strategy of
`search classify`, side by side, with the project's own prompt and metric code.

The held-out corpus is rendered by the demo generator with the FreePats sample set (TiMidity), which the
starter model never trains on: every instrument class and the drum kit that FreePats plays with its own
samples, in every scene. Run: python bench/zero_shot_strategies.py [--model starter] [--per-class 10]

Reported per strategy (label, clap = "This is a sound of {label}.", templates, reclap = 2 prompts drawn
from the shipped bank with seed 0, and reclap with all 8 of a label's prompts):
- accuracy: the clip's nearest label is its own (audio -> text R@1);
- audio -> text R@5 (label among the clip's 5 nearest);
- text -> audio R@1/R@5/R@10 and mAP@10: each label's prompt embedding queries all clips, any clip of
  that label counts (ties count against the model, as in search.metrics).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from indexer.demo import SOUND_CLASSES, classes_available, generate_demo_corpus
from indexer.embed import embed_file
from indexer.encoders import load_encoder
from search import metrics
from search.prompts import LabelSet, PromptBank, label_embeddings, label_prompts

STRATEGIES = (("label", 2), ("clap", 2), ("templates", 2), ("reclap", 2), ("reclap", 8))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    parser.add_argument("--sample-set", default="freepats")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    # Only what the held-out sample set itself plays: instruments and drums (events, speech and noises
    # come from other sources, the same in every set).
    classes = [c for c in classes_available(args.sample_set) if SOUND_CLASSES[c].kind in ("instrument", "drums")]
    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = generate_demo_corpus(Path(tmp) / "heldout", size=args.per_class * len(classes), seed=args.seed,
                                      sample_set=args.sample_set, classes=classes)
        audio = np.stack([embed_file(encoder, Path(tmp) / "heldout" / clip.path).file_vector for clip in corpus])
        labels = [clip.label for clip in corpus]
    present = sorted(set(labels), key=classes.index)
    label_set = LabelSet("starter", tuple(present))
    truth = [present.index(label) for label in labels]
    bank = PromptBank.load("starter")

    print(f"model {args.model}: {len(labels)} {args.sample_set} clips of {len(present)} classes "
          f"(chance {100 / len(present):.1f}%)")
    print(f"{'prompts':<14}{'accuracy':>9}{'a2t R@5':>9}{'t2a R@1':>9}{'t2a R@5':>9}{'t2a R@10':>10}{'t2a mAP@10':>12}")
    for strategy, n in STRATEGIES:
        prompts = label_prompts(label_set, strategy, bank if strategy == "reclap" else None, n_prompts=n, seed=0)
        vectors = label_embeddings(encoder, prompts, cache=False)
        similarity = audio @ vectors.T  # (clips, labels)
        a2t = metrics.text_to_audio(similarity, truth)  # each clip queries the labels; one is right
        t2a = metrics.audio_to_text(similarity.T, truth)  # each label queries the clips; all of its clips count
        name = strategy if strategy != "reclap" else f"reclap x{n}"
        print(f"{name:<14}{100 * a2t.recall[1]:>9.1f}{100 * a2t.recall[5]:>9.1f}{100 * t2a.recall[1]:>9.1f}"
              f"{100 * t2a.recall[5]:>9.1f}{100 * t2a.recall[10]:>10.1f}{100 * t2a.map_at_10:>12.1f}")


if __name__ == "__main__":
    main()
