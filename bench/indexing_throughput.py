"""Indexing throughput, same model and files in one run: `indexer build` with its defaults against the naive
per-file loop (decode one file, embed it in fp32, add it) and against the model-only ceiling (the encoder on
pre-decoded windows in full batches, at the build's precision), with the steps between them.

Two naive loops: the one a user writes with soundfile and soxr (the issue's baseline), and the same loop on
resound's own decoding, which already carries the hot-path fixes the build has (cheap downmix, one pass).

Run: python bench/indexing_throughput.py [--model starter] [--files 200] [--reps 3]
     python bench/indexing_throughput.py --clap [--files 100]   # LAION-CLAP HTSAT-tiny, random weights
     python bench/indexing_throughput.py --batch-sizes [4,8,16,32]  # model only: batch x precision x threads
     python bench/indexing_throughput.py --profile                 # where a default build's time goes

Every variant runs once per repetition, the variants interleaved, and the table gives medians, so that a
machine busy with other work slows all of them alike; the ratios are what to read. Build throughput is
windows over the wall time of `build_index` (scan, hash, decode, embed, catalog, FAISS, commit); the model
is loaded before the timers start (`import torch` and the weights are a one-off cost, not throughput).
The run ends with the agreement of the default build with an fp32 build: minimum cosine over all windows
and the overlap of the top 10 of 20 text queries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer import BuildOptions, build_index
from indexer.corpus import scan_corpus
from indexer.embed import WindowPlan, embed_inputs, segment_inputs
from indexer.encoders import load_encoder
from indexer.encoders.precision import bf16_agreement, cpu_has_native_bf16, resolve_precision
from indexer.encoders.registry import default_batch_size
from indexer.index import Index
from indexer.store import VectorStore
from indexer.windows import cut_windows

QUERIES = [
    "a piano melody", "a violin", "a dog barking", "rain on a roof", "a man speaking", "a woman singing",
    "a drum beat", "a car engine", "birds chirping", "a telephone ringing", "an electric guitar", "wind noise",
    "a church bell", "a flute", "applause", "a high pitched tone", "a low hum", "white noise", "a siren",
    "footsteps",
]


def make_corpus(root: Path, files: int, seconds: float, seed: int = 0) -> None:
    """Files of 1 to 2x `seconds` of noise-excited tones at 44.1 kHz stereo FLAC (so decoding resamples)."""
    rng = np.random.default_rng(seed)
    for i in range(files):
        n = int(44100 * seconds * rng.uniform(1.0, 2.0))
        t = np.arange(n) / 44100
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(n)
        soundfile.write(root / f"f{i:05d}.flac", np.stack([tone, tone[::-1]], axis=1).astype(np.float32), 44100)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Variant = Callable[[], tuple[int, float]]  # -> (windows, seconds)
CPU_SECONDS: dict[str, list[float]] = {}  # process CPU seconds per window of each variant, per repetition


def per_file_loop(encoder, files: list[Path], windows_of: Callable[[Path], list[np.ndarray]]) -> Variant:  # type: ignore[no-untyped-def]
    """A naive loop: for each file, its windows (`windows_of`), embedded at once in fp32 and added."""
    def run() -> tuple[int, float]:
        store = VectorStore.create(encoder.info.dim)
        t = time.perf_counter()
        next_id = 0
        for f in files:
            vectors = encoder.embed_audio(windows_of(f))
            store.add(range(next_id, next_id + len(vectors)), vectors)
            next_id += len(vectors)
        return next_id, time.perf_counter() - t
    return run


def user_loop(encoder, files: list[Path]) -> Variant:  # type: ignore[no-untyped-def]
    """The per-file loop a user writes with soundfile and soxr, the issue's naive loop: read the file,
    average its channels (`mean(axis=1)`), resample with soxr HQ, cut the encoder's windows, embed them in
    fp32, add them. The same windows and vectors as a build, up to float rounding of the downmix."""
    plan = WindowPlan.of(encoder)

    def windows_of(f: Path) -> list[np.ndarray]:
        data, rate = soundfile.read(f, dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        if rate != plan.sample_rate:
            mono = soxr.resample(mono, rate, plan.sample_rate, quality="HQ")
        return [w.samples for w in cut_windows(mono, plan.window_samples, plan.hop_samples)]
    return per_file_loop(encoder, files, windows_of)


def naive_loop(encoder, files: list[Path]) -> Variant:  # type: ignore[no-untyped-def]
    """The same loop on resound's own decoding (embed.segment_inputs: a cheaper downmix, one pass over the
    samples): a stricter baseline than the user's loop, which shares the build's decoding costs."""
    return per_file_loop(encoder, files, lambda f: segment_inputs(encoder, f).samples)


def threaded(run: Variant, threads: int) -> Variant:
    def wrapped() -> tuple[int, float]:
        with torch_threads(threads):
            return run()
    return wrapped


def model_only(encoder, windows: list[np.ndarray], batch: int, precision: str, threads: int | None) -> Variant:  # type: ignore[no-untyped-def]
    def run() -> tuple[int, float]:
        with torch_threads(threads):
            embed_inputs(encoder, windows[:batch], [None] * batch, precision)  # warm-up
            t = time.perf_counter()
            for i in range(0, len(windows), batch):
                part = windows[i : i + batch]
                embed_inputs(encoder, part, [None] * len(part), precision)
            return len(windows), time.perf_counter() - t
    return run


def build(corpus: Path, index: Path, options: BuildOptions, threads: int | None = None) -> Variant:
    def run() -> tuple[int, float]:
        shutil.rmtree(index, ignore_errors=True)
        with torch_threads(threads):
            t = time.perf_counter()
            report = build_index(corpus, index, options)
            seconds = time.perf_counter() - t
        return report.segments_added, seconds
    return run


def measure(variants: dict[str, Variant], reps: int) -> dict[str, float]:
    """Median windows/s of each variant over `reps` interleaved repetitions."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(reps):
        for name, run in variants.items():
            cpu = time.process_time()
            windows, seconds = run()
            CPU_SECONDS.setdefault(name, []).append((time.process_time() - cpu) / windows)
            rates[name].append(windows / seconds)
            print(f"  rep {rep + 1}/{reps} {name:<58}{windows / seconds:8.1f} windows/s", file=sys.stderr, flush=True)
    return {name: statistics.median(r) for name, r in rates.items()}


def segment_vectors(index_path: Path) -> tuple[np.ndarray, np.ndarray]:
    index = Index(index_path)
    try:
        ids = np.sort(index.load_stores()["segments"].ids())
        return ids, index.load_stores()["segments"].reconstruct(ids)
    finally:
        index.close()


def agreement(encoder, default_index: Path, fp32_index: Path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(min cosine between the two builds' window vectors, mean top-10 overlap of the text queries)."""
    ids_a, a = segment_vectors(default_index)
    ids_b, b = segment_vectors(fp32_index)
    assert np.array_equal(ids_a, ids_b), "the two builds cut different windows"
    cosine = float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))
    queries = encoder.embed_text(QUERIES)
    top_a = np.argsort(-(queries @ a.T), axis=1)[:, :10]
    top_b = np.argsort(-(queries @ b.T), axis=1)[:, :10]
    overlap = float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b)]))
    return cosine, overlap


def throughput_table(model: str, files: int, seconds: float, reps: int) -> None:
    encoder = load_encoder(model)
    precision = resolve_precision(encoder, "auto")
    batch = default_batch_size(encoder)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        make_corpus(corpus, files, seconds)
        paths = [f.absolute for f in scan_corpus(corpus)]
        windows = [w for f in paths for w in segment_inputs(encoder, f).samples]
        default_index, fp32_index = Path(tmp) / "default", Path(tmp) / "fp32"
        thread_note = (f"decode thread, model {max(1, cpus - 1)} thread(s), {cpus} while the decoder idles" if cpus == 2
                       else "decoding processes")
        variants: dict[str, Variant] = {
            "naive per-file loop as a user writes it (soundfile, mean, soxr), fp32": user_loop(encoder, paths),
            "naive per-file loop, fp32": naive_loop(encoder, paths),
            "naive per-file loop, fp32, model 1 thread": threaded(naive_loop(encoder, paths), 1),
            "build as shipped before: fp32, batch 16, inline": build(
                corpus, fp32_index, BuildOptions(model=model, precision="fp32", batch_size=16, decode_workers=0)),
            f"build {precision}, batch {batch}, inline": build(
                corpus, Path(tmp) / "b", BuildOptions(model=model, batch_size=batch, decode_workers=0)),
            f"build {precision}, batch {batch}, decode thread, model {cpus} threads": build(
                corpus, Path(tmp) / "c", BuildOptions(model=model, decode_thread=True, decode_workers=0,
                                                      model_threads=cpus)),
            f"`indexer build` defaults ({precision}, batch {batch}, {thread_note})": build(
                corpus, default_index, BuildOptions(model=model)),
            f"model only, {precision}, batch {batch}, {cpus} threads": model_only(encoder, windows, batch, precision, cpus),
            f"model only, {precision}, batch {batch}, 1 thread": model_only(encoder, windows, batch, precision, 1),
        }
        if hasattr(encoder, "prepare_audio"):  # a front end the decoding thread can run (embed.FrontEnd)
            variants["build defaults but the front end on the model's thread only"] = build(
                corpus, Path(tmp) / "d", BuildOptions(model=model, front_end_on_decode=False))
        if precision != "fp32":
            variants[f"model only, fp32, batch {batch}, 1 thread (not the ceiling: another precision)"] = model_only(
                encoder, windows, batch, "fp32", 1)
        medians = measure(variants, reps)
        cosine, overlap = agreement(encoder, default_index, fp32_index)
    naive = medians["naive per-file loop, fp32"]
    user = medians["naive per-file loop as a user writes it (soundfile, mean, soxr), fp32"]
    default = next(rate for name, rate in medians.items() if name.startswith("`indexer build` defaults"))
    # The ceiling: the model alone at the build's precision and batch, on its better thread count.
    ceiling = max(rate for name, rate in medians.items() if name.startswith(f"model only, {precision},"))
    print(f"\nmodel {model}: {files} files, {len(windows)} windows of {encoder.info.window_seconds} s, {cpus} CPUs, "
          f"native bf16 {cpu_has_native_bf16()}, precision auto -> {precision}, batch {batch}, "
          f"load average {os.getloadavg()[0]:.1f}, {reps} reps (medians)")
    if cpu_has_native_bf16():
        print(f"bf16 agreement on the model's test windows (precision auto's check): min cosine {bf16_agreement(encoder):.6f}")
    print("| pipeline | windows/s | vs the user's naive loop | vs the naive loop on resound's decoding |\n|---|---|---|---|")
    for name, rate in medians.items():
        print(f"| {name} | {rate:.1f} | {rate / user:.2f} | {rate / naive:.2f} |")
    print(f"build defaults / the user's naive loop = {default / user:.2f}x (target >= 2.0); / the naive loop on "
          f"resound's decoding = {default / naive:.2f}x, / the latter with the model on 1 thread = "
          f"{default / medians['naive per-file loop, fp32, model 1 thread']:.2f}x; build defaults / model-only "
          f"ceiling (best thread count) = {100 * default / ceiling:.0f}% (target >= 80%)")
    print(f"default build vs fp32 build: min cosine {cosine:.6f} (target >= 0.999), top-10 overlap of "
          f"{len(QUERIES)} text queries {100 * overlap:.1f}% (target >= 95%)")
    print_bound(medians, precision, batch, cpus)


def print_bound(medians: dict[str, float], precision: str, batch: int, cpus: int) -> None:
    """The most a build can reach on `cpus` cores from its measured costs, against the model-only ceiling.

    m: model CPU per window (the model alone on 1 thread, at the build's precision, front end included);
    d: everything else a default build spends per window (its process CPU per window minus m: decoding,
    resampling, hashing, catalog, FAISS, Python). On `cpus` cores a build can reach at most
    1000 * cpus / (m + d) windows/s, and the model alone at most 1000 * cpus / m, so the build's share of
    the ceiling is at most m / (m + d) whatever the overlap.
    """
    one = f"model only, {precision}, batch {batch}, 1 thread"
    default = next(name for name in medians if name.startswith("`indexer build` defaults"))
    m = 1000.0 * statistics.median(CPU_SECONDS[one])  # CPU, not wall: the same on a quiet machine, steadier on a busy one
    used = 1000.0 * statistics.median(CPU_SECONDS[default])
    d = max(0.0, used - m)
    two = medians.get(f"model only, {precision}, batch {batch}, {cpus} threads", float("nan"))
    print(f"costs: model m = {m:.2f} core-ms/window, the rest d = {d:.2f} core-ms/window (default build: "
          f"{used:.2f} core-ms/window of process CPU, {used * medians[default] / 1000:.2f} cores busy)")
    print(f"bound on {cpus} cores: build <= {1000 * cpus / (m + d):.1f} windows/s (measured {medians[default]:.1f}); "
          f"model-only <= {1000 * cpus / m:.1f} (measured {two:.1f} on {cpus} threads); build / ceiling <= "
          f"m / (m + d) = {100 * m / (m + d):.0f}% against a perfectly scaling model, "
          f"{100 * (1000 * cpus / (m + d)) / max(two, medians[one]):.0f}% against the measured ceiling")


def batch_sizes(model: str, reps: int, batches: tuple[int, ...] = (4, 8, 16, 32),
                threads: tuple[int, ...] | None = None) -> None:
    """Model-only windows/s across batch sizes, precisions and thread counts (the registry's batch sizes)."""
    encoder = load_encoder(model)
    info = encoder.info
    rng = np.random.default_rng(0)
    t = np.arange(info.window_samples) / info.sample_rate
    windows = [(0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(len(t)))
               .astype(np.float32) for _ in range(64 if info.family == "starter" else 16)]
    variants = {f"{precision} batch {b} threads {n}": model_only(encoder, windows, b, precision, n)
                for n in threads or (os.cpu_count() or 1, 1) for precision in ("fp32", "bf16") for b in batches}
    medians = measure(variants, reps)
    print(f"model {model}: model-only windows/s, {len(windows)} windows, medians of {reps} interleaved reps")
    for name, rate in medians.items():
        print(f"| {name} | {rate:.1f} |")


def profile_build(model: str, files: int, seconds: float, top: int = 18) -> None:
    """Where a default build's time goes, by function (own time), the model loaded beforehand."""
    import cProfile
    import pstats

    load_encoder(model)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        make_corpus(corpus, files, seconds)
        profiler = cProfile.Profile()
        # The decoding thread's work is invisible to cProfile: profile the same build with decoding inline.
        profiler.runcall(build_index, corpus, Path(tmp) / "index", BuildOptions(model=model, decode_workers=0,
                                                                                 model_threads=1))
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    print(f"default build (decoding inline, model on 1 thread), {files} files: {total:.1f} s; own time by function")
    print("| function | own s | share |\n|---|---|---|")
    for (filename, line, name), (_, _, own, _, _) in rows:
        print(f"| {Path(filename).name}:{line} {name} | {own:.2f} | {100 * own / total:.1f}% |")


def clap_checkpoint(directory: Path) -> str:
    """A LAION-CLAP HTSAT-tiny checkpoint with random weights (the real architecture) and a tiny tokenizer."""
    from tests import helpers

    os.environ["RESOUND_ROBERTA_TOKENIZER"] = str(helpers.write_roberta_tokenizer(directory / "roberta"))
    return str(helpers.write_random_clap_checkpoint(directory / "random-htsat-tiny.pt", seed=0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    parser.add_argument("--clap", action="store_true", help="LAION-CLAP HTSAT-tiny with random weights")
    parser.add_argument("--files", type=int, default=None, help="default 200, 100 with --clap")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-sizes", nargs="?", const="4,8,16,32", default=None, metavar="LIST",
                        help="model-only sweep over these batch sizes (default 4,8,16,32) instead of the table")
    parser.add_argument("--threads", default=None, help="torch thread counts of the sweep (default: CPUs,1)")
    parser.add_argument("--profile", action="store_true", help="profile one default build instead of the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = clap_checkpoint(Path(tmp)) if args.clap else args.model
        if args.profile:
            profile_build(model, args.files or 50, args.seconds)
        elif args.batch_sizes is not None:
            batch_sizes(model, args.reps, tuple(int(b) for b in args.batch_sizes.split(",")),
                        tuple(int(n) for n in args.threads.split(",")) if args.threads else None)
        else:
            throughput_table(model, args.files or (100 if args.clap else 200), args.seconds, args.reps)


if __name__ == "__main__":
    main()
