"""The Ray build's driver memory against the corpus size: the same build at 1M and 4M windows, the driver's
peak RSS each time, and their ratio (issue 26: it must differ by < 10%).

Each size is a real `build_index_on_ray` on a local Ray instance that the build starts, as `indexer build
--ray` does, with the machine's CPUs (2 here; one encoder actor, decoding tasks), run by a child process, the driver, whose own peak RSS (VmHWM: anonymous and file-backed pages,
not the Ray workers') is measured. The corpus is synthetic: WAV files of --windows-per-file 50 ms windows
of 1 kHz noise, embedded by a stub encoder (bench/rss_stub_encoder.py) into random unit vectors of --dim
dimensions. So every path of the build runs for real (scan and hashes on the driver, decoding and
embedding on the workers, shards written by the actors, the merge into the index through
`indexer import`), with no model's compute. The index type is fixed (--index-type, default exact
IDMap2,Flat): training and tuning an IVF index is the import's cost, measured by bench/scale.py.

Run (nice: the machine is shared):
    nice -n 10 python bench/ray_driver_rss.py --sizes 1000000 4000000 --dim 512 --work /work/ray-rss
`--code DIR` runs the driver with another checkout's `indexer` (e.g. the code before this change).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # after $PYTHONPATH: `--code DIR` puts that checkout's indexer first

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONWARNINGS": "ignore"}


def rss_kib(field: str = "VmRSS") -> int:
    return memory_kib().get(field, 0)


def memory_kib() -> dict[str, int]:
    """This process's memory fields from /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile, RssShmem), KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            fields[name] = int(value.split()[0])
    return fields


def make_corpus(root: Path, windows: int, per_file: int) -> int:
    """WAV files of `per_file` stub windows each (the last one shorter), `windows` in all; returns the files."""
    import soundfile as sf

    from bench.rss_stub_encoder import SAMPLE_RATE, WINDOW_SECONDS

    samples_per_window = round(SAMPLE_RATE * WINDOW_SECONDS)
    rng = np.random.default_rng(0)
    files = 0
    for start in range(0, windows, per_file):
        n = min(per_file, windows - start)
        path = root / f"d{files // 1000:03d}" / f"f{files:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, rng.integers(-3000, 3000, n * samples_per_window, dtype=np.int16), SAMPLE_RATE, subtype="PCM_16")
        files += 1
    return files


def driver(args: argparse.Namespace) -> None:
    """The build itself, in this (child) process: prints one JSON line with the driver's figures."""
    from indexer import BuildOptions
    from indexer.distributed import RayOptions, build_index_on_ray, ray_build

    merge_from = [float("inf")]
    if hasattr(ray_build, "import_vectors"):  # the merge through `indexer import` (absent from older code)
        real_import = ray_build.import_vectors

        def marked_import(*args, **kwargs):  # type: ignore[no-untyped-def]
            merge_from[0] = time.monotonic()
            return real_import(*args, **kwargs)

        ray_build.import_vectors = marked_import
    # The segment store's tier merges (indexer/segments.py) build their output in memory: record each one's
    # input bytes and the driver's peak RSS once it is done, to tell their share of the peak.
    from indexer import segments

    merges: list[tuple[int, int]] = []
    if hasattr(segments, "SegmentedStore"):
        real_merge = segments.SegmentedStore.merge

        def recorded_merge(self, files, level):  # type: ignore[no-untyped-def]
            inputs = sum(segments._file_bytes(f) for f in files)
            result = real_merge(self, files, level)
            merges.append((inputs, rss_kib("VmHWM")))
            return result

        segments.SegmentedStore.merge = recorded_merge

    samples: list[tuple[float, dict[str, int]]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), memory_kib()))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # The build starts a local Ray instance itself (all of this machine's CPUs: 2) and stops it once the
    # Ray job is over, as `indexer build --ray` does.
    started = time.monotonic()
    report = build_index_on_ray(args.corpus, args.index,
                                BuildOptions(model=str(args.model), batch_size=4096, device="cpu",
                                             index_type=args.index_type),
                                RayOptions(block_files=args.block_files, actors=1))
    ended = time.monotonic()
    done.set()
    sampler.join()
    import_seconds = getattr(report, "import_seconds", 0.0)
    print(json.dumps({
        "peak_rss_kib": rss_kib("VmHWM"), "files": report.added, "windows": report.segments_added,
        "failed": len(report.failed), "seconds": ended - started, "embed_seconds": report.embed_seconds,
        "import_seconds": import_seconds,
        # Sampled every 0.25 s, so below VmHWM: where the memory was (anonymous, file pages, shared memory).
        **{f"{phase}_{field}_kib": max((m.get(field, 0) for t, m in samples if (t >= merge_from[0]) == (phase == "merge")),
                                       default=0)
           for phase in ("plan", "merge") for field in ("VmRSS", "RssAnon", "RssFile", "RssShmem")},
        "shards_imported": len(getattr(report, "shards_imported", [])),
        "merges": merges,
    }))


def _gib(figures: dict, field: str) -> str:
    return f"{figures[f'plan_{field}_kib'] / 2**20:.2f} / {figures[f'merge_{field}_kib'] / 2**20:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--windows-per-file", type=int, default=600)
    parser.add_argument("--block-files", type=int, default=16)
    parser.add_argument("--index-type", default="IDMap2,Flat")
    parser.add_argument("--work", type=Path, default=Path("/tmp/resound-ray-rss"))
    parser.add_argument("--code", type=Path, default=REPO, help="The checkout whose indexer the driver runs.")
    parser.add_argument("--keep", action="store_true", help="Keep each size's corpus and index.")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        driver(args)
        return

    results = {}
    for n in args.sizes:
        work = args.work / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        model = work / "model.rssstub"
        model.write_text(json.dumps({"dim": args.dim}))
        t = time.perf_counter()
        files = make_corpus(work / "corpus", n, args.windows_per_file)
        print(f"{n:,} windows: corpus of {files:,} files written in {time.perf_counter() - t:.0f} s", flush=True)
        env = {**os.environ, **RAY_ENV, "RESOUND_PLUGINS": "bench.rss_stub_encoder",
               "PYTHONPATH": os.pathsep.join([str(args.code.resolve()), str(REPO)])}
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--driver", "--corpus", str(work / "corpus"),
             "--index", str(work / "index"), "--model", str(model), "--index-type", args.index_type,
             "--block-files", str(args.block_files)],
            capture_output=True, text=True, env=env, cwd=args.code.resolve(), check=False)
        if done.returncode:
            raise SystemExit(f"the driver failed at {n:,} windows:\n{done.stderr[-4000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        if figures["windows"] != n or figures["failed"]:
            raise SystemExit(f"the build added {figures['windows']:,} windows of {n:,} ({figures['failed']} failed)")
        index_bytes = sum(p.stat().st_size for p in (work / "index").rglob("*") if p.is_file())
        results[n] = figures
        print(f"{n:,} windows x {args.dim} ({n * args.dim * 4 / 2**30:.2f} GiB of float32), {files:,} files: "
              f"driver peak RSS {figures['peak_rss_kib'] / 2**20:.2f} GiB; sampled peaks, GiB, while planning and "
              f"embedding / while merging: RSS {_gib(figures, 'VmRSS')}, anonymous {_gib(figures, 'RssAnon')}, "
              f"file pages {_gib(figures, 'RssFile')}, shared memory {_gib(figures, 'RssShmem')}; "
              f"build {figures['seconds']:.0f} s (Ray job {figures['embed_seconds']:.0f} s, merge "
              f"{figures['import_seconds']:.0f} s, {figures['shards_imported']} shards); index {index_bytes / 2**30:.2f} GiB",
              flush=True)
        if figures["merges"]:
            print("  tier merges (input MiB -> driver peak RSS GiB after it): " + ", ".join(
                f"{inputs / 2**20:.0f} -> {peak / 2**20:.2f}" for inputs, peak in figures["merges"]), flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sizes = sorted(results)
    for small, large in itertools.pairwise(sizes):
        ratio = results[large]["peak_rss_kib"] / results[small]["peak_rss_kib"]
        print(f"driver peak RSS {large:,} / {small:,} windows: {ratio:.3f} (target < 1.10 for 4M / 1M)")


if __name__ == "__main__":
    main()
