"""Loss ablation of ClipClap-GZSL on synthetic audio-visual data, with and without calibrated stacking.

Trains each loss combination with the two-stage protocol (epochs and gamma chosen on validation-unseen
classes, retrain on all seen classes) and prints test S, U, HM and ZSL (%), at gamma = 0 and at the tuned
gamma, plus chance level. Seeded: the same arguments print the same table.

    python bench/gzsl_ablation.py [--epochs 8] [--batches 80] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.gzsl import GZSLConfig, evaluate_gzsl, train_gzsl
from search.gzsl.synthetic import SyntheticConfig, make_synthetic_gzsl

VARIANTS = {
    "CE only": {"cross_entropy": True, "reconstruction": False, "regression": False},
    "CE + rec": {"cross_entropy": True, "reconstruction": True, "regression": False},
    "CE + reg": {"cross_entropy": True, "reconstruction": False, "regression": True},
    "CE + rec + reg (full)": {"cross_entropy": True, "reconstruction": True, "regression": True},
    "rec + reg (no CE)": {"cross_entropy": False, "reconstruction": True, "regression": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="Stage-1 epochs (stage 2 trains best + 1).")
    parser.add_argument("--batches", type=int, default=80, help="Batches per epoch.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data and of training.")
    # Small matrices: one thread avoids synchronisation overhead and competition on a shared machine.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = make_synthetic_gzsl(SyntheticConfig(seed=args.seed))
    base = GZSLConfig(epochs=args.epochs, batches_per_epoch=args.batches, seed=args.seed)
    split = data.split
    print(f"synthetic: {len(split.seen)} seen ({len(split.val_unseen)} validation-unseen), {len(split.unseen)} "
          f"unseen classes; {len(data.train)} train, {len(data.test)} test samples; features "
          f"{data.train.features.shape[1]}-d, label embeddings {data.classes.dim}-d")
    print(f"config: {args.epochs} epochs x {args.batches} batches of {base.batch_size}, joint {base.joint_dim}-d, "
          f"scores {base.similarity}, reconstruction target {base.reconstruction_target}, seed {args.seed}\n")
    header = f"{'losses':<24}{'calibration':<13}{'S':>7}{'U':>7}{'HM':>7}{'ZSL':>7}{'gamma':>8}{'epochs':>8}{'time':>7}"
    print(header)
    print("-" * len(header))
    chance = data.chance
    print(f"{'chance':<24}{'-':<13}" + "".join(f"{100 * chance[k]:>7.1f}" for k in ("seen", "unseen", "hm", "zsl")))
    for name, losses in VARIANTS.items():
        start = time.perf_counter()
        model = train_gzsl(data.train.features, data.train.labels, data.classes, split,
                           dataclasses.replace(base, **losses))
        seconds = time.perf_counter() - start
        epochs = model.record.epochs_trained if model.record else 0
        for label, gamma in (("none", 0.0), ("stacking", None)):
            report = evaluate_gzsl(model, data.test.features, data.test.labels, gamma=gamma)
            print(f"{name:<24}{label:<13}{100 * report.seen:>7.1f}{100 * report.unseen:>7.1f}"
                  f"{100 * report.hm:>7.1f}{100 * report.zsl:>7.1f}{report.gamma:>8.3f}{epochs:>8d}{seconds:>6.0f}s")


if __name__ == "__main__":
    main()
