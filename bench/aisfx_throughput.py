"""Speed of the aiSFX tower (indexer/starter/aisfx.py) on CPU: blocks/s in fp32 and under bf16 autocast, at
several batch sizes, default and channels-last memory format, measured interleaved in one run.

Run: nice -n 15 python bench/aisfx_throughput.py [--threads 2] [--batches 8 16 32] [--reps 5]

A block is 100 log-mel frames (2.32 s of 44.1 kHz audio); the front end is timed apart (per block of
audio). Prints the median blocks/s of each variant, its ratio to fp32 / batch 16 / default layout of the
same run, the seconds of audio per second at no block overlap, and the minimum cosine to fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.starter.aisfx import BLOCK_FRAMES, HOP_SIZE, N_MELS, SAMPLE_RATE, AisfxFrontEnd, load_aisfx_tower

BLOCK_SECONDS = (BLOCK_FRAMES - 1) * HOP_SIZE / SAMPLE_RATE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=64, help="blocks per timed repetition")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tower = load_aisfx_tower()
    tower_cl = load_aisfx_tower().to(memory_format=torch.channels_last)
    # Real-looking input: the front end of noise with a decaying envelope, so ReLU sparsity is realistic.
    samples = torch.randn(args.blocks, BLOCK_FRAMES * HOP_SIZE) * torch.linspace(
        1, 0.01, BLOCK_FRAMES * HOP_SIZE
    )
    front_end = AisfxFrontEnd()
    with torch.inference_mode():
        start = time.perf_counter()
        mel = front_end(samples)[:, :BLOCK_FRAMES]
        front_s = time.perf_counter() - start
        reference = tower(mel)
    assert mel.shape[1:] == (BLOCK_FRAMES, N_MELS)
    variants = []
    for batch in args.batches:
        for dtype in ("fp32", "bf16"):
            for layout in ("default", "channels_last"):
                variants.append((batch, dtype, layout))
    times: dict[tuple[int, str, str], list[float]] = {v: [] for v in variants}
    cosines: dict[tuple[int, str, str], float] = {}

    def run(variant: tuple[int, str, str]) -> float:
        batch, dtype, layout = variant
        model = tower_cl if layout == "channels_last" else tower
        out = []
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            for i in range(0, len(mel), batch):
                out.append(model(mel[i : i + batch]).float())
        elapsed = time.perf_counter() - start
        cosines[variant] = float(torch.nn.functional.cosine_similarity(torch.cat(out), reference).min())
        return elapsed

    for variant in variants:  # warm-up (oneDNN primitive creation)
        run(variant)
    for _ in range(args.reps):
        for variant in variants:
            times[variant].append(run(variant))
    base = statistics.median(times[(16, "fp32", "default")]) if (16, "fp32", "default") in times else None
    print(f"threads {args.threads}, {args.blocks} blocks x {args.reps} reps, load average {os.getloadavg()}")
    print(
        f"front end: {args.blocks / front_s:.0f} blocks/s ({args.blocks * BLOCK_SECONDS / front_s:.0f} s of audio/s)"
    )
    print("batch  dtype  layout          blocks/s   x fp32/16   audio s/s   min cos")
    for variant in variants:
        median = statistics.median(times[variant])
        rate = args.blocks / median
        ratio = f"{base / median:9.2f}" if base else "        -"
        print(
            f"{variant[0]:5d}  {variant[1]:5s}  {variant[2]:14s}  {rate:8.1f}  {ratio}   {rate * BLOCK_SECONDS:9.0f}"
            f"   {cosines[variant]:.5f}"
        )


if __name__ == "__main__":
    main()
