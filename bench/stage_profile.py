"""Per-thread stage accounting of a default `indexer build`: CPU (thread_time) and wall per stage, per thread.

Run: python bench/stage_profile.py [--files 100] [--model starter] [--clap]

Wraps the build's stage functions with thread_time/perf_counter accounting (keyed by thread name), so the
decoding thread's work is visible (cProfile sees one thread only). Prints, per thread, each stage's CPU ms per
window, and for the model thread its wall split into CPU, waiting for the decoder (queue) and the rest
(GIL waits and scheduling: wall - CPU - queue wait).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import indexer.build as build_mod
import indexer.embed as embed_mod
import indexer.media.decode as decode_mod
import indexer.prefetch as prefetch_mod
from bench.indexing_throughput import clap_checkpoint, make_corpus
from indexer import BuildOptions, build_index
from indexer.encoders import load_encoder

CPU: dict[tuple[str, str], float] = defaultdict(float)
WALL: dict[tuple[str, str], float] = defaultdict(float)
CALLS: dict[tuple[str, str], int] = defaultdict(int)
_DEPTH = threading.local()


def account(stage: str, fn):  # type: ignore[no-untyped-def]
    """`fn` with its own CPU and wall time added to `stage` of the calling thread (nested stages excluded)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        stack = getattr(_DEPTH, "stack", None)
        if stack is None:
            stack = _DEPTH.stack = []
        c0, w0 = time.thread_time(), time.perf_counter()
        stack.append([0.0, 0.0])
        try:
            return fn(*args, **kwargs)
        finally:
            inner_c, inner_w = stack.pop()
            c, w = time.thread_time() - c0, time.perf_counter() - w0
            key = (threading.current_thread().name, stage)
            CPU[key] += c - inner_c
            WALL[key] += w - inner_w
            CALLS[key] += 1
            if stack:
                stack[-1][0] += c
                stack[-1][1] += w

    return wrapped


def account_generator_next(stage: str, gen_fn):  # type: ignore[no-untyped-def]
    """A generator function whose every `next` is accounted to `stage` (the consumer's wait for items)."""

    @functools.wraps(gen_fn)
    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        it = gen_fn(*args, **kwargs)
        step = account(stage, lambda: next(it, StopIteration))
        while True:
            item = step()
            if item is StopIteration:
                return
            yield item

    return wrapped


def instrument(encoder) -> None:  # type: ignore[no-untyped-def]
    # Decoding side (the decode thread when threaded).
    embed_mod.read_snapshot = account("read+hash", embed_mod.read_snapshot)
    embed_mod.decoded_size = account("probe header", embed_mod.decoded_size)
    for name in list(decode_mod.BACKENDS):
        decode_mod.BACKENDS[name] = account(f"read/decode ({name})", decode_mod.BACKENDS[name])
    decode_mod.downmix = account("downmix", decode_mod.downmix)
    decode_mod.all_finite = account("isfinite", decode_mod.all_finite)
    decode_mod.resample = account("resample (soxr)", decode_mod.resample)
    embed_mod.cut_windows = account("cut windows", embed_mod.cut_windows)
    prefetch_mod._load = account("decode: other python", prefetch_mod._load)
    # Model side.
    import indexer.starter.encoder as starter_enc
    starter_enc.pad_windows = account("pad windows", starter_enc.pad_windows)
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "front_end"):
        model.front_end.forward = account("front end (log-mel)", model.front_end.forward)
        model.audio.forward = account("CNN", model.audio.forward)
    elif model is not None and hasattr(model, "audio_branch"):
        model.audio_branch.forward = account("HTSAT (front end + transformer)", model.audio_branch.forward)
    embed_mod.embed_inputs = account("embed: other", embed_mod.embed_inputs)
    build_mod.embed_inputs = embed_mod.embed_inputs
    build_mod._StoreBatch.write = account("catalog+faiss write", build_mod._StoreBatch.write)
    build_mod.read_tags = account("read tags", build_mod.read_tags)
    prefetch_mod.read_tags = account("read tags", prefetch_mod.read_tags)
    build_mod._ensure_hubness_correction = account("hubness correction", build_mod._ensure_hubness_correction)
    build_mod._plan = account("plan (scan hashes)", build_mod._plan)
    build_mod.prefetch_inputs = account_generator_next("wait for decoded file", build_mod.prefetch_inputs)
    build_index_wrapped = account("build: other", build_index)
    return build_index_wrapped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    parser.add_argument("--clap", action="store_true")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--inline", action="store_true", help="decode inline (no decode thread)")
    parser.add_argument("--front-end-on-model", action="store_true", help="the front end on the model's thread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = clap_checkpoint(Path(tmp)) if args.clap else args.model
        encoder = load_encoder(model)
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        make_corpus(corpus, args.files, args.seconds)
        # Warm-up build (imports, caches), not counted.
        build_index(corpus, Path(tmp) / "warm", BuildOptions(model=model))
        CPU.clear(), WALL.clear(), CALLS.clear()
        run = instrument(encoder)
        options = BuildOptions(model=model, decode_workers=0 if args.inline else None,
                               front_end_on_decode=False if args.front_end_on_model else None)
        c0, w0 = time.process_time(), time.perf_counter()
        report = run(corpus, Path(tmp) / "index", options)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = report.segments_added
    print(f"{args.files} files, {n} windows, wall {wall:.2f} s = {n / wall:.1f} w/s, process CPU {cpu:.2f} s "
          f"({cpu / wall:.2f} cores), {1000 * cpu / n:.2f} core-ms/window")
    threads = sorted({t for t, _ in CPU})
    for t in threads:
        rows = sorted(((s, CPU[(t, s)], WALL[(t, s)], CALLS[(t, s)]) for tt, s in CPU if tt == t), key=lambda r: -r[2])
        tot_c, tot_w = sum(r[1] for r in rows), sum(r[2] for r in rows)
        print(f"\nthread {t}: CPU {tot_c:.2f} s, wall {tot_w:.2f} s")
        print("| stage | CPU ms/window | wall ms/window | calls |\n|---|---|---|---|")
        for s, c, w, k in rows:
            print(f"| {s} | {1000 * c / n:.3f} | {1000 * w / n:.3f} | {k} |")


if __name__ == "__main__":
    main()
