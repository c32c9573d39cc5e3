"""Warm text-query latency of the starter model's text side (MiniLM + projection), one query at a time.

    python bench/starter_text_latency.py [--queries 200] [--threads 1]

Loads StarterEncoder, embeds one warm-up text, then embeds `--queries` short queries one by one and prints
the p50 and p95 wall time in milliseconds, and the same for MiniLM alone (the frozen tower's share).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

QUERIES = ["a dog barking", "rain on a tin roof", "someone talking on the telephone", "a fiddle", "church bells"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from indexer.starter import StarterEncoder

    encoder = StarterEncoder()
    encoder.embed_text(["warm-up"])
    minilm = encoder.sentence_encoder()
    for name, embed in (("starter text (MiniLM + projection)", encoder.embed_text), ("MiniLM alone", minilm.embed)):
        times = []
        for i in range(args.queries):
            started = time.perf_counter()
            embed([QUERIES[i % len(QUERIES)]])
            times.append(1000 * (time.perf_counter() - started))
        print(f"{name}: p50 {np.median(times):.1f} ms, p95 {np.percentile(times, 95):.1f} ms ({args.queries} queries, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
