"""What fine-tuning aiSFX's last conv block would cost on cached activations of the block before it.

    nice -n 19 python bench/aisfx_finetune_cost.py [--blocks 128] [--reps 3] [--threads 1]

One training step of the frozen-aiSFX recipe holds 64 windows of two blocks (128 blocks). Fine-tuning
block 4 (3.5M of the tower's 4.7M parameters) on cached block-3 activations (256 x 12 x 12 a block) costs
block 4's forward and backward each step (timed here in float32 and under bf16 autocast, random inputs:
the cost does not depend on the values), and caching costs blocks 1-3 forward once per block (timed in
float32). Prints seconds a step and the cache's size per block in float16.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.starter.aisfx import load_aisfx_tower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tower = load_aisfx_tower()
    block4 = tower.conv_block4.train()
    activations = torch.randn(args.blocks, 256, 12, 12)

    def step(bf16: bool) -> None:
        block4.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pooled = block4(activations, 1).mean(dim=3).amax(dim=2)
        pooled.float().sum().backward()

    for bf16 in (False, True):
        step(bf16)  # warm-up
        started = time.perf_counter()
        for _ in range(args.reps):
            step(bf16)
        print(f"block 4 forward + backward, {args.blocks} blocks, {'bf16' if bf16 else 'float32'}: "
              f"{(time.perf_counter() - started) / args.reps:.2f} s a step")
    tower.eval()
    mel = torch.randn(args.blocks, 100, 96)
    with torch.inference_mode():
        started = time.perf_counter()
        x = tower.conv_block3(tower.conv_block2(tower.conv_block1(mel.unsqueeze(1), 2), 2), 2)
        print(f"blocks 1-3 forward, {args.blocks} blocks, float32: {time.perf_counter() - started:.2f} s; "
              f"activation {tuple(x.shape[1:])}, {x[0].numel() * 2 / 1000:.1f} kB a block in float16")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
