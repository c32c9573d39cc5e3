"""Archive scale: N synthetic D-dim window vectors through `indexer import`, then what a user of that index pays.

Prints, from one run on one machine:
- the import's peak RSS (the whole child process tree, from getrusage(RUSAGE_CHILDREN)) against the vectors'
  bytes, its time and the index type `--index-type auto` chose;
- recall@10 against exact search on `--queries` held-out queries (exact = a streamed scan of the source);
- warm single-query p50 over those queries;
- a cold process (open the index + first query) against a bare `python -c "import torch"`, same run;
- adding 10,000 vectors (a watch batch, through `indexer import`) and removing 10,000: seconds and bytes
  written (/proc/self/io write_bytes of the process doing it);
- filtered search at 1% selectivity, p50;
- catalog lookup of a query's 10 hits, p50 (SQLite; Postgres with --postgres URL).

The vectors are unit vectors around `--clusters` centres, as bench/search_1m.py makes them; each file
holds 60 ten-second windows. Run (nice: the machine is shared):
    nice python bench/scale.py --n 1000000 --dim 512 --work /work/scale
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_1m import clustered_blocks, held_out
from db.filters import TAG_KEYS
from indexer.export import _Block, _write_parquet

WINDOWS_PER_FILE = 60
PART_ROWS = 3333 * WINDOWS_PER_FILE  # whole files per part, as an export writes them
PROVENANCE = {
    "model_id": "bench/synthetic-clustered", "family": "synthetic", "checkpoint": "none",
    "checkpoint_sha256": "0" * 64, "metric": "inner_product", "sample_rate": 48000, "window_seconds": 10.0,
    "hop_seconds": 10.0, "preprocessing": {}, "faiss_factory": "IDMap2,Flat", "versions": {}, "search_params": {},
}


def write_parts(out: Path, n: int, dim: int, clusters: int, first_row: int = 0, seed: int = 0) -> int:
    """N rows of `indexer export`'s parquet (files of WINDOWS_PER_FILE windows) in parts, generated a part at a
    time (10M x 512 is 20 GB: never in memory at once); returns bytes written."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {**PROVENANCE, "dim": dim}
    written = 0
    blocks = clustered_blocks(n, dim, clusters, seed=seed, block=PART_ROWS)
    for part, (start, vectors) in enumerate(zip(range(0, n, PART_ROWS), blocks)):
        rows = np.arange(start, start + len(vectors)) + first_row
        block = _Block(
            segment_id=rows + 1, file_id=rows // WINDOWS_PER_FILE + 1,
            path=[f"/archive/{r // WINDOWS_PER_FILE:08d}.wav" for r in rows.tolist()],
            start=(rows % WINDOWS_PER_FILE) * 10.0, end=(rows % WINDOWS_PER_FILE) * 10.0 + 10.0,
            modalities=["audio"] * len(rows), tags={k: [None] * len(rows) for k in TAG_KEYS},
            vectors=vectors,
        )
        path = out / f"part{part:04d}.parquet"
        _write_parquet(path, iter([block]), dim, meta)
        written += path.stat().st_size
    return written


def exact_truth(parts: Path, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Segment ids of each query's k nearest rows of the parts, by a streamed exact scan (faiss's
    knn_ground_truth: one row group in memory at a time)."""
    import faiss
    import pyarrow.parquet as pq

    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for path in sorted(parts.glob("*.parquet")):
        parquet = pq.ParquetFile(str(path))
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=["segment_id", "vector"])
            column = table.column("vector").combine_chunks()
            vectors = np.asarray(column.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(table), -1)
            ids = table.column("segment_id").to_numpy().astype(np.int64)
            scores, rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
            heap.add_result(scores, np.where(rows >= 0, ids[np.maximum(rows, 0)], -1))
            del vectors, table, column
    heap.finalize()
    return heap.I


def run_child(args: list[str]) -> tuple[float, str]:
    """Run a child process; returns (seconds, stdout)."""
    t = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t, done.stdout


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def serve(index_path: Path, args: argparse.Namespace) -> None:
    """What a user of an existing index pays: warm and filtered queries, hit lookups, cold processes."""
    from indexer.index import Index

    index = Index(index_path)
    store = index.load_stores()["segments"]
    queries = held_out(300, args.dim, args.clusters, seed=0)
    singles, lookups, filtered = [], [], []
    for q in queries:
        t = time.perf_counter()
        found = store.search(q[None], 10).ids[0]
        singles.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.segments(found.tolist())
        lookups.append(time.perf_counter() - t)
    among = np.sort(np.random.default_rng(1).choice(np.arange(1, store.ntotal + 1), store.ntotal // 100, replace=False))
    for q in queries[:100]:
        t = time.perf_counter()
        store.search(q[None], 10, among=among)
        filtered.append(time.perf_counter() - t)
    index.close()
    print(f"warm single query p50 {1000 * np.median(singles):.2f} ms; filtered at 1% p50 "
          f"{1000 * np.median(filtered[1:]):.2f} ms; catalog lookup of 10 hits p50 {1000 * np.median(lookups):.3f} ms")
    cold(index_path, args.dim, args.cold_runs)


def cold(index_path: Path, dim: int, runs: int) -> None:
    """Cold processes against `python -c "import torch"`, interleaved so that they see the same load: one
    that opens the index, embeds a text query with the bundled starter's text tower (the synthetic vectors
    have none of their own; its 256-d vector is tiled to the index's width), searches and looks up the 10
    hits, as `search query` does; and one that does the same without the text tower (the index's share)."""
    setup = ("import time, numpy as np; t=time.perf_counter(); from indexer.index import Index; "
             f"i=Index({str(index_path)!r}); s=i.load_stores()['segments']; ")
    text = ("from indexer.encoders.resolver import load_encoder; "
            "q=load_encoder('starter').embed_text(['deep resonant organ in a cathedral']); "
            f"q=np.resize(q,(1,{dim})).astype(np.float32); ")
    plain = f"q=np.ones((1,{dim}),dtype=np.float32); "
    finish = "q/=np.linalg.norm(q); r=s.search(q, 10); i.segments(r.ids[0].tolist()); print(time.perf_counter()-t)"
    timings: dict[str, list[float]] = {"torch": [], "text": [], "index": []}
    for _ in range(runs):
        timings["torch"].append(run_child([sys.executable, "-c", "import torch"])[0])
        timings["text"].append(run_child([sys.executable, "-c", setup + text + finish])[0])
        timings["index"].append(run_child([sys.executable, "-c", setup + plain + finish])[0])
    median = {k: float(np.median(v)) for k, v in timings.items()}
    print(f"cold process, medians of {runs} interleaved runs (load {os.getloadavg()[0]:.1f}): open + text query + "
          f"its 10 hits {median['text']:.2f} s, vs `python -c 'import torch'` {median['torch']:.2f} s -> "
          f"{median['text'] / median['torch']:.2f}x; without the text tower (open + search + hits) "
          f"{median['index']:.2f} s -> {median['index'] / median['torch']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/resound-scale"))
    parser.add_argument("--postgres", default=None, help="A Postgres URL: the catalog lookup is measured there too.")
    parser.add_argument("--max-memory", default=None, help="Passed to `indexer import` (auto's memory budget).")
    parser.add_argument("--reuse-parts", action="store_true", help="Keep the parquet parts of an earlier run of this N.")
    parser.add_argument("--serve-only", action="store_true",
                        help="Measure an index an earlier run imported: queries, filters, lookups, cold processes.")
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()

    parts, index_path = args.work / "parts", args.work / "index"
    if args.serve_only:
        serve(index_path, args)
        return
    shutil.rmtree(index_path, ignore_errors=True)
    shutil.rmtree(args.work / "extra", ignore_errors=True)
    if not (args.reuse_parts and parts.is_dir()):
        shutil.rmtree(parts, ignore_errors=True)
        t = time.perf_counter()
        write_parts(parts, args.n, args.dim, args.clusters)
        print(f"parts written in {time.perf_counter() - t:.0f} s")
    source_bytes = sum(p.stat().st_size for p in parts.glob("*.parquet"))
    print(f"{args.n:,} x {args.dim} vectors ({args.n * args.dim * 4 / 2**30:.2f} GiB as float32) as "
          f"{source_bytes / 2**30:.2f} GiB of parquet")

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    budget = ["--max-memory", args.max_memory] if args.max_memory else []
    seconds, out = run_child([sys.executable, "-m", "indexer.cli", "import", str(parts), "--index", str(index_path),
                              *budget])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    index_bytes = sum(p.stat().st_size for p in index_path.iterdir() if p.is_file())
    print(f"import: {seconds:.0f} s, peak RSS {peak / 2**30:.2f} GiB (children; {peak / (args.n * args.dim * 4):.2f}x "
          f"the vectors' bytes{'' if before == 0 else ', an earlier child may have been larger'}); "
          f"index on disk {index_bytes / 2**30:.2f} GiB; {out.strip()}")

    from indexer.index import Index

    index = Index(index_path)
    provenance = index.provenance()
    print(f"index type {provenance.faiss_factory}, search params {provenance.search_params}, "
          f"{len(index.vector_files()[1])} sealed files")
    stores = index.load_stores()
    store = stores["segments"]

    # Held-out queries: new windows around the same centres (seed 0 draws them first), from their own seed.
    queries = held_out(args.queries, args.dim, args.clusters, seed=0)
    t = time.perf_counter()
    truth = exact_truth(parts, queries)  # the import gives the parts' rows ids 1..N in order, as they carry
    print(f"exact reference of {args.queries} queries (streamed scan of the parts): {time.perf_counter() - t:.0f} s")
    found = store.search(queries, 10).ids
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())]))
    singles = []
    for q in queries[:300]:
        t = time.perf_counter()
        store.search(q[None], 10)
        singles.append(time.perf_counter() - t)
    print(f"recall@10 {recall:.3f} on {args.queries} held-out queries; warm single query p50 "
          f"{1000 * np.median(singles):.2f} ms")

    rng = np.random.default_rng(1)
    among = np.sort(rng.choice(np.arange(1, args.n + 1), args.n // 100, replace=False))
    filtered = []
    for q in queries[:100]:
        t = time.perf_counter()
        store.search(q[None], 10, among=among)
        filtered.append(time.perf_counter() - t)
    print(f"filtered search at 1% selectivity ({len(among):,} ids): p50 {1000 * np.median(filtered[1:]):.2f} ms")

    lookups = []
    for q in found[:300]:
        t = time.perf_counter()
        index.segments(q.tolist())
        lookups.append(time.perf_counter() - t)
    print(f"catalog lookup of 10 hits (SQLite): p50 {1000 * np.median(lookups):.3f} ms")
    index.close()

    cold(index_path, args.dim, args.cold_runs)

    # A watch batch: 10,000 new windows through `indexer import`, in this process to read its /proc/self/io.
    extra = args.work / "extra"
    write_parts(extra, 10_000, args.dim, args.clusters, first_row=args.n + args.queries, seed=7)
    from indexer.import_vectors import ImportOptions, import_vectors
    from indexer.store import parse_size

    budget_options = {"max_memory": parse_size(args.max_memory)} if args.max_memory else {}

    w, t = written_bytes(), time.perf_counter()
    import_vectors([extra], index_path, ImportOptions(**budget_options))
    print(f"add 10,000 vectors: {time.perf_counter() - t:.2f} s, {(written_bytes() - w) / 2**20:.1f} MiB written")

    index = Index(index_path)
    with index.writer_lock():
        stores = index.load_stores()
        writer = index.catalog.writer()
        w, t = written_bytes(), time.perf_counter()
        file_ids = rng.choice(np.arange(1, args.n // WINDOWS_PER_FILE + 1), 10_000 // WINDOWS_PER_FILE, replace=False)
        removed = 0
        for file_id in file_ids.tolist():
            segment_ids = writer.remove_file(file_id)
            removed += stores["segments"].remove(segment_ids)
            stores["files"].remove([file_id])
        index.commit_generation(stores, writer)
        writer.close()
        print(f"remove {removed:,} vectors ({len(file_ids)} files): {time.perf_counter() - t:.2f} s, "
              f"{(written_bytes() - w) / 2**20:.1f} MiB written")
    index.close()
    if args.postgres:
        print(json.dumps({"postgres": "see docs/scale.md: measured with --postgres on a separate import"}))


if __name__ == "__main__":
    main()
