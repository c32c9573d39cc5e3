"""Indexing throughput, same model and files in one run: resound's pipeline against the naive per-file loop
(decode one file, embed it, add it) and against the model-only ceiling (the encoder on pre-decoded windows).

Run: python bench/indexing_throughput.py [--model starter] [--files 200] [--seconds 8]
Prints windows per second for each and the two ratios the issue asks for (pipeline / naive >= 2,
pipeline / ceiling >= 0.8).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from indexer import BuildOptions, build_index
from indexer.corpus import scan_corpus
from indexer.embed import segment_inputs
from indexer.encoders import load_encoder
from indexer.store import VectorStore


def make_corpus(root: Path, files: int, seconds: float, seed: int = 0) -> None:
    """Files of 1 to 2x `seconds` of noise-excited tones at 44.1 kHz stereo (so decoding resamples)."""
    rng = np.random.default_rng(seed)
    for i in range(files):
        n = int(44100 * seconds * rng.uniform(1.0, 2.0))
        t = np.arange(n) / 44100
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(n)
        soundfile.write(root / f"f{i:05d}.flac", np.stack([tone, tone[::-1]], axis=1).astype(np.float32), 44100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch-size", type=int, default=BuildOptions().batch_size)  # the build's default
    args = parser.parse_args()

    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        make_corpus(corpus, args.files, args.seconds)
        files = [f.absolute for f in scan_corpus(corpus)]

        # Model-only ceiling: every window decoded beforehand, embedded in full batches.
        windows = [w for f in files for w in segment_inputs(encoder, f).samples]
        encoder.embed_audio(windows[: args.batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(windows), args.batch_size):
            encoder.embed_audio(windows[i : i + args.batch_size])
        ceiling = len(windows) / (time.perf_counter() - t)

        # Naive loop: one file at a time, decode, embed its windows, add.
        store = VectorStore.create(encoder.info.dim)
        t = time.perf_counter()
        next_id = 0
        for f in files:
            samples = segment_inputs(encoder, f).samples
            vectors = encoder.embed_audio(samples)
            store.add(range(next_id, next_id + len(vectors)), vectors)
            next_id += len(vectors)
        naive = len(windows) / (time.perf_counter() - t)

        # resound: decoding in worker processes, batches packed across files, catalog and atomic commits.
        index = Path(tmp) / "index"
        t = time.perf_counter()
        report = build_index(corpus, index, BuildOptions(model=args.model, batch_size=args.batch_size))
        pipeline = report.segments_added / (time.perf_counter() - t)
        shutil.rmtree(index)

    print(f"model {args.model}: {len(files)} files, {len(windows)} windows of {encoder.info.window_seconds} s")
    print(f"{'path':<34}{'windows/s':>10}")
    print(f"{'model only (pre-decoded, batched)':<34}{ceiling:>10.1f}")
    print(f"{'naive per-file loop':<34}{naive:>10.1f}")
    print(f"{'resound build':<34}{pipeline:>10.1f}")
    print(f"pipeline / naive = {pipeline / naive:.2f}x, pipeline / model-only = {100 * pipeline / ceiling:.0f}%")


if __name__ == "__main__":
    main()
