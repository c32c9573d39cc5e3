"""Train one lever of the frozen-aiSFX generation: the head without the audio-neighbourhood term with one
thing changed, on the cached tower embeddings (the first run computes them; every lever reuses them).
Lever `a2a` is the shipped starter-aisfx's recipe (`indexer train`, `indexer.training.train.recipe("aisfx")`).

    nice -n 15 python bench/aisfx_lever_train.py LEVER --out-dir DIR [--train-sets fluidr3,timgm6mb] [--threads 1]

then `python bench/aisfx_levers.py --model DIR/LEVER.safetensors` measures it. Levers:
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.starter.config import AISFX_CONFIG, AISFX_STARTER_CONFIG
from indexer.training.train import TrainConfig, train_starter

LEVERS = {
    "recipe": ({}, "the head without the audio-neighbourhood term (`indexer train --audio-tower aisfx` before 2026-12-06)"),
    "hidden512": ({"model": replace(AISFX_CONFIG, audio_hidden=512)}, "head hidden width 512 (recipe 1024)"),
    "hidden2048": ({"model": replace(AISFX_CONFIG, audio_hidden=2048)}, "head hidden width 2048"),
    "temp003": ({"model": replace(AISFX_CONFIG, init_logit_scale=math.log(1 / 0.03))}, "initial temperature 0.03 (recipe 0.07, learnable)"),
    "temp015": ({"model": replace(AISFX_CONFIG, init_logit_scale=math.log(1 / 0.15))}, "initial temperature 0.15"),
    "recordings2": ({"recording_repeats": 2}, "each real-recording window twice an epoch (recipe once)"),
    "concat": ({"model": AISFX_STARTER_CONFIG}, "aisfx+starter: the shipped starter's audio vector beside aiSFX's"),
    "concat_recordings2": ({"model": AISFX_STARTER_CONFIG, "recording_repeats": 2}, "aisfx+starter, recordings twice"),
    "a2a": ({"audio_neighbourhood_weight": 1.0}, "audio neighbourhood term (KL to the tower's in-batch neighbours; temperatures 0.1 head, 0.02 tower), weight 1: the shipped starter-aisfx's recipe (training.train.recipe)"),
    "a2a_w03": ({"audio_neighbourhood_weight": 0.3}, "audio neighbourhood term, weight 0.3"),
    "a2a_w3": ({"audio_neighbourhood_weight": 3.0}, "audio neighbourhood term, weight 3"),
    "a2a_w10": ({"audio_neighbourhood_weight": 10.0}, "audio neighbourhood term, weight 10"),
    "a2a_recordings2": ({"audio_neighbourhood_weight": 1.0, "recording_repeats": 2}, "audio neighbourhood term, weight 1; recordings twice an epoch"),
    "a2a_hidden2048": ({"audio_neighbourhood_weight": 1.0, "model": replace(AISFX_CONFIG, audio_hidden=2048)}, "audio neighbourhood term, weight 1; head hidden width 2048"),
    "a2a_sharp": ({"audio_neighbourhood_weight": 1.0, "audio_neighbourhood_teacher_temperature": 0.01}, "audio neighbourhood term, weight 1, tower temperature 0.01"),
}
__doc__ += "\n".join(f"- {name}: {text}" for name, (_, text) in LEVERS.items()) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lever", choices=sorted(LEVERS))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's 17")
    parser.add_argument("--train-sets", default=None, help="comma-separated sample sets (the recipe: all four)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (the recipe: 2)")
    parser.add_argument("--order-seed", type=int, default=None,
                        help="seed of initialisation and batch order only (renders keep seed 0): a lever's spread")
    args = parser.parse_args()
    overrides, _ = LEVERS[args.lever]
    name = args.lever if args.order_seed is None else f"{args.lever}-o{args.order_seed}"
    config = TrainConfig(out_path=args.out_dir / f"{name}.safetensors", metrics_path=args.out_dir / f"{name}.json", model=AISFX_CONFIG)
    extra = {
        "epochs": args.epochs,
        "threads": args.threads,
        "order_seed": args.order_seed,
        "train_sample_sets": tuple(args.train_sets.split(",")) if args.train_sets else None,
    }
    config = replace(config, **overrides, **{k: v for k, v in extra.items() if v is not None})
    train_starter(config, log=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
