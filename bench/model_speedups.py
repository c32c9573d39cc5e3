"""Graph-level speed-ups of the audio towers on CPU, measured against eager execution in one run:
channels-last memory format, TorchScript freezing (conv + batch-norm folding, oneDNN conv + ReLU fusion),
and `torch.compile` (Inductor, with freezing), each in fp32 and under bf16 autocast.

Run: python bench/model_speedups.py [--clap] [--reps 3] [--batch 8]

Prints windows/s (medians of interleaved repetitions, compile time excluded), the minimum cosine of each
variant's vectors to eager fp32, and whether the top 10 of 20 text queries over the windows are the same
(identical results are the condition for adopting a variant; see docs/benchmarks/indexing-throughput.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.indexing_throughput import QUERIES, clap_checkpoint
from indexer.encoders.precision import agreement_windows, unit_vectors


class _Cast(torch.nn.Module):
    """A module run in `dtype`: inputs cast to it, outputs back to fp32."""

    def __init__(self, inner: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype)).float()


def starter_variants(batch: int) -> tuple[object, dict[str, Callable[[object], None]]]:
    from indexer.starter import WEIGHTS_PATH, StarterEncoder

    def fresh() -> StarterEncoder:
        return StarterEncoder(WEIGHTS_PATH)

    def channels_last(enc: StarterEncoder) -> None:
        enc.model.audio.to(memory_format=torch.channels_last)

    def frozen(enc: StarterEncoder, dtype: torch.dtype) -> None:
        """Traced, frozen (batch-norm folded into the convolutions) and handed to oneDNN; bf16 as bf16 weights
        (TorchScript's oneDNN passes do not mix with autocast)."""
        frames = enc.model.front_end.num_frames()
        example = torch.zeros(batch, frames, enc.model.config.n_mels, dtype=dtype)
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(enc.model.audio.eval().to(dtype), example, check_trace=False)
            enc.model.audio = _Cast(torch.jit.optimize_for_inference(torch.jit.freeze(traced)), dtype)

    def compiled(enc: StarterEncoder) -> None:
        torch._inductor.config.freezing = True
        enc.model.audio = torch.compile(enc.model.audio, dynamic=False)

    return fresh, {
        "channels-last": channels_last,
        "torchscript freeze (oneDNN fusion) fp32": lambda e: frozen(e, torch.float32),
        "torchscript freeze (oneDNN fusion) bf16": lambda e: frozen(e, torch.bfloat16),
        "torch.compile (inductor, freezing)": compiled,
    }


def clap_variants(checkpoint: str) -> tuple[object, dict[str, Callable[[object], None]]]:
    from indexer.encoders.laion_clap import LaionClapEncoder

    def fresh() -> LaionClapEncoder:
        return LaionClapEncoder(checkpoint)

    def channels_last(enc: LaionClapEncoder) -> None:
        enc.model.audio_branch.to(memory_format=torch.channels_last)

    def compiled(enc: LaionClapEncoder) -> None:
        torch._inductor.config.freezing = True
        enc.model.audio_branch = torch.compile(enc.model.audio_branch, dynamic=False)

    return fresh, {"channels-last": channels_last, "torch.compile (inductor, freezing)": compiled}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clap", action="store_true", help="LAION-CLAP HTSAT-tiny (random weights) instead of the starter")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--windows", type=int, default=None, help="default 64 (starter), 16 (HTSAT)")
    parser.add_argument("--skip", default="", help="semicolon-separated variant names to leave out")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: what the build gives the model on 2 CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        fresh, variants = clap_variants(clap_checkpoint(Path(tmp))) if args.clap else starter_variants(args.batch)
        reference = fresh()
        info = reference.info
        count = args.windows or (16 if args.clap else 64)
        windows = agreement_windows(info.sample_rate, info.window_samples, count)
        rng = np.random.default_rng(1)
        windows = [np.clip(w + 0.02 * rng.standard_normal(len(w)), -1, 1).astype(np.float32) for w in windows]
        texts = reference.embed_text(QUERIES)

        encoders: dict[str, tuple[object, torch.dtype | None]] = {"eager fp32": (reference, None),
                                                                  "eager bf16": (reference, torch.bfloat16)}
        for name, apply in variants.items():
            if name in args.skip.split(";"):
                continue
            encoder = fresh()
            t = time.perf_counter()
            apply(encoder)
            dtypes = [None] if name.endswith(("fp32", "bf16")) else [None, torch.bfloat16]  # autocast or not
            for dtype in dtypes:
                label = name if name.endswith(("fp32", "bf16")) else f"{name} {'bf16' if dtype else 'fp32'}"
                encoders[label] = (encoder, dtype)
                embed(encoder, windows[: args.batch], args.batch, dtype)  # compiles/warms up for this dtype
            print(f"  {name}: prepared in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)

        rates: dict[str, list[float]] = {name: [] for name in encoders}
        vectors: dict[str, np.ndarray] = {}
        for rep in range(args.reps):
            for name, (encoder, dtype) in encoders.items():
                t = time.perf_counter()
                vectors[name] = embed(encoder, windows, args.batch, dtype)
                rates[name].append(len(windows) / (time.perf_counter() - t))
                print(f"  rep {rep + 1} {name:<44}{rates[name][-1]:8.1f} windows/s", file=sys.stderr, flush=True)

    base = vectors["eager fp32"]
    top_base = np.argsort(-(texts @ base.T), axis=1)[:, :10]
    print(f"{info.model_id}: {len(windows)} windows, batch {args.batch}, {args.threads} torch thread(s), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}; medians of {args.reps} interleaved reps")
    print("| variant | windows/s | vs eager fp32 | min cosine to eager fp32 | top-10 identical |\n|---|---|---|---|---|")
    eager = statistics.median(rates["eager fp32"])
    for name in encoders:
        rate = statistics.median(rates[name])
        cosine = float(np.min(np.sum(vectors[name] * base, axis=1)))
        top = np.argsort(-(texts @ vectors[name].T), axis=1)[:, :10]
        same = sum(np.array_equal(a, b) for a, b in zip(top, top_base))
        print(f"| {name} | {rate:.1f} | {rate / eager:.2f} | {cosine:.6f} | {same}/{len(QUERIES)} |")


def embed(encoder, windows: list[np.ndarray], batch: int, dtype: torch.dtype | None) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = []
    for i in range(0, len(windows), batch):
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            out.append(encoder.embed_audio(windows[i : i + batch]))
    return unit_vectors(np.concatenate(out))


if __name__ == "__main__":
    main()
