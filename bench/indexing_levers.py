"""Each indexing lever of issue 17 measured against the default build, in one run: the default `indexer build`
with one lever undone (or one experimental lever added) at a time, the variants interleaved, medians.

Run: python bench/indexing_levers.py [--model starter | --clap] [--files 100] [--reps 5]

A lever that is part of the default is undone by patching this process only (never the library):
- "hubness correction computed every build": the per-model cache of indexer/hubness.py pointed at a fresh
  directory each build, so the build embeds the reference texts as it did before the cache;
- "plan hashes every file": the plan hashes each new file before decoding, as it did before;
- "GC not frozen": build_index's gc.freeze()/unfreeze() made no-ops;
- "front end on the model's thread only" / "always on the decoding thread" / "from 2 files ahead": the
  front end's placement (prefetch.STEP_WHEN_AHEAD: on the decoding thread when its queue is full) changed;
- "decoding inline" / "decode thread, model 2 threads": the thread layout.
- "model on 1 thread always": the model's batches never widened to every core while the decoder idles
  (build._ModelThreads).
Experimental, not in the default:
- "BatchNorm folded into the convolutions" (starter only): torch.nn.utils.fusion.fuse_conv_bn_eval at load.
The table gives each variant's windows/s, its ratio to the default, and the process CPU per window.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import indexer.build as build_module
from bench.indexing_throughput import clap_checkpoint, make_corpus, segment_vectors
from indexer import (
    BuildOptions,
    build_index,
    hubness,
    prefetch,
)
from indexer.corpus import content_hash
from indexer.encoders import (
    load_encoder,
    resolver,
)

Patch = Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield


@contextlib.contextmanager
def patched(target: object, name: str, value: object) -> Iterator[None]:
    before = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, before)


def hubness_every_build(tmp: Path) -> Patch:
    counter = iter(range(10**9))
    real = hubness._cache_file

    def fresh(info):  # type: ignore[no-untyped-def]
        return tmp / f"hub{next(counter)}" / real(info).name

    return lambda: patched(hubness, "_cache_file", fresh)


def plan_hashes_every_file() -> Patch:
    real = build_module._plan

    def plan(index, writer, corpus_id, files, report, limits=build_module.NO_LIMITS):  # type: ignore[no-untyped-def]
        jobs = real(index, writer, corpus_id, files, report, limits)
        for job in jobs:
            job.digest = content_hash(job.file.absolute)
        return jobs

    return lambda: patched(build_module, "_plan", plan)


class _NoFreeze:
    def __getattr__(self, name: str) -> object:
        return getattr(gc, name)

    freeze = unfreeze = staticmethod(lambda: None)


def gc_not_frozen() -> Patch:
    return lambda: patched(build_module, "gc", _NoFreeze())


def step_when_ahead(n: int) -> Patch:
    return lambda: patched(prefetch, "STEP_WHEN_AHEAD", n)


def bn_folded(model: str) -> Patch:
    """The starter with each conv + BatchNorm pair folded (fuse_conv_bn_eval), swapped into the loaded models."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    encoder = load_encoder(model)
    if not hasattr(getattr(encoder, "model", None), "audio") or not hasattr(encoder.model.audio, "blocks"):
        return nothing
    folded = copy.copy(encoder)
    folded.model = copy.deepcopy(encoder.model)
    for block in folded.model.audio.blocks:
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), torch.nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), torch.nn.Identity()
    folded.model.audio.to(memory_format=torch.channels_last)
    keys = [k for k, v in resolver._LOADED.items() if v is encoder]

    @contextlib.contextmanager
    def swap() -> Iterator[None]:
        for k in keys:
            resolver._LOADED[k] = folded
        try:
            yield
        finally:
            for k in keys:
                resolver._LOADED[k] = encoder

    return swap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    parser.add_argument("--clap", action="store_true")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = clap_checkpoint(tmp) if args.clap else args.model
        load_encoder(model)
        corpus = tmp / "corpus"
        corpus.mkdir()
        make_corpus(corpus, args.files, args.seconds)
        defaults = BuildOptions(model=model)
        variants: dict[str, tuple[BuildOptions, Patch]] = {
            "`indexer build` defaults": (defaults, nothing),
            "undone: hubness correction computed every build": (defaults, hubness_every_build(tmp)),
            "undone: plan hashes every file": (defaults, plan_hashes_every_file()),
            "undone: GC not frozen": (defaults, gc_not_frozen()),
            "undone: front end on the model's thread only": (BuildOptions(model=model, front_end_on_decode=False), nothing),
            "other: front end always on the decoding thread": (defaults, step_when_ahead(0)),
            "other: front end on the decoding thread from 2 files ahead": (defaults, step_when_ahead(2)),
            "undone: decoding inline (no thread), model on torch's threads": (BuildOptions(model=model, decode_workers=0),
                                                                              nothing),
            "undone: decoding inline (no thread), model 1 thread": (
                BuildOptions(model=model, decode_workers=0, model_threads=1), nothing),
            "other: decode thread, model 2 threads": (BuildOptions(model=model, model_threads=2), nothing),
            "undone: model on 1 thread always (none while the decoder idles)": (BuildOptions(model=model, model_threads=1),
                                                                                nothing),
        }
        if not args.clap:
            variants["experiment: BatchNorm folded into the convolutions"] = (defaults, bn_folded(model))
        build_index(corpus, tmp / "warm", defaults)  # imports, caches, the hubness correction of this model
        rates: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        windows = 0
        for rep in range(args.reps):
            for name, (options, patch) in variants.items():
                index = tmp / "index"
                shutil.rmtree(index, ignore_errors=True)
                with patch():
                    c, t = time.process_time(), time.perf_counter()
                    report = build_index(corpus, index, options)
                    seconds, used = time.perf_counter() - t, time.process_time() - c
                windows = report.segments_added
                rates[name].append(windows / seconds)
                cpu[name].append(1000 * used / windows)
                if name.startswith("experiment: BatchNorm") and rep == 0:
                    folded = segment_vectors(index)[1]
                    shutil.rmtree(tmp / "plain", ignore_errors=True)
                    build_index(corpus, tmp / "plain", defaults)
                    plain = segment_vectors(tmp / "plain")[1]
                    print(f"  BN folded vs default: min cosine {float(np.min(np.sum(folded * plain, axis=1))):.6f}",
                          file=sys.stderr)
                print(f"  rep {rep + 1}/{args.reps} {name:<60}{rates[name][-1]:8.1f} windows/s", file=sys.stderr,
                      flush=True)
    default = statistics.median(rates["`indexer build` defaults"])
    print(f"\n{model if not args.clap else 'LAION-CLAP HTSAT-tiny (random weights)'}: {args.files} files, {windows} "
          f"windows, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, medians of {args.reps} interleaved reps")
    print("| variant | windows/s | vs defaults | process CPU ms/window |\n|---|---|---|---|")
    for name in variants:
        rate = statistics.median(rates[name])
        print(f"| {name} | {rate:.1f} | {rate / default:.2f} | {statistics.median(cpu[name]):.2f} |")


if __name__ == "__main__":
    main()
