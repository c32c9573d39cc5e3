"""Search on 1M 512-d vectors: the index type `--index-type auto` picks, against exact flat search.

Prints build (training + adding) time, memory, tuned search parameters, recall@10 on held-out queries
against exact search, and single-query and batched latency of both. The vectors are unit vectors around
`--clusters` centres (1,000) (the shape real embeddings have; uniform random vectors have no neighbourhood structure
and are the worst case of every ANN method). Run: python bench/search_1m.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from indexer.encoders.base import l2_normalize
from indexer.segments import IndexDirectory, SegmentedStore
from indexer.store import VectorStore, choose_index, parse_size
from indexer.tuning import recall_at, tune_search_params


def clustered_blocks(n: int, dim: int, clusters: int, seed: int, noise: float = 1.0, block: int = 100_000):
    """`clustered`'s vectors `block` rows at a time (the same rows: one generator, one seed)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        yield l2_normalize(centres[rng.integers(0, clusters, m)]
                           + noise * rng.standard_normal((m, dim)).astype(np.float32))


def clustered(n: int, dim: int, clusters: int, seed: int, noise: float = 1.0, block: int = 100_000) -> np.ndarray:
    """n unit vectors of `dim` around `clusters` random centres (seeded)."""
    out = np.empty((n, dim), dtype=np.float32)
    start = 0
    for rows in clustered_blocks(n, dim, clusters, seed, noise, block):
        out[start : start + len(rows)] = rows
        start += len(rows)
    return out


def held_out(n: int, dim: int, clusters: int, seed: int, query_seed: int = 99, noise: float = 1.0) -> np.ndarray:
    """n new vectors around the same centres as `clustered(..., seed)` (its first draw), from their own seed."""
    centres = np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(query_seed)
    return l2_normalize(centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32))


def latency(store: VectorStore | SegmentedStore, queries: np.ndarray, k: int = 10) -> tuple[float, float, float, float]:
    """(median ms per single query on its first pass, the same queries again, ms per query in one batch of
    all, that batch again). Sealed files are memory-mapped: a query's first touch of a list's pages faults
    them into the process (from the page cache); a long-running process answers from mapped pages, as the
    second passes do (and as an index read whole into memory answered before)."""
    passes = []
    for _ in range(2):
        singles = []
        for q in queries[:200]:
            t = time.perf_counter()
            store.search(q[None], k)
            singles.append(time.perf_counter() - t)
        passes.append(1000 * float(np.median(singles)))
    batches = []
    for _ in range(2):
        t = time.perf_counter()
        store.search(queries, k)
        batches.append(1000 * (time.perf_counter() - t) / len(queries))
    return passes[0], passes[1], batches[0], batches[1]


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    # Fewer centres than IVF lists: each cluster spreads over several lists, so a query's neighbours sit in
    # neighbouring cells, as in real embeddings (with one centre per list, one probed list holds them all).
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--max-memory", default=None, help="auto's memory budget (default: a quarter of RAM)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/resound-search-1m"))
    args = parser.parse_args()

    import faiss

    # As `indexer build` and `indexer import` do: vectors stream into sealed files on disk a block at a time
    # (the exact reference is kept as a running top 10 per query), the IVF index is trained on a seeded
    # sample and filled chunk by chunk from them. Nothing holds all the vectors at once.
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    queries = held_out(args.queries, args.dim, args.clusters, seed=0)
    heap = faiss.ResultHeap(len(queries), 10, keep_max=True)
    flat = IndexDirectory(args.work).load_stores(0, args.dim, "IDMap2,Flat")["segments"]
    t = time.perf_counter()
    start = 0
    for block in clustered_blocks(args.n, args.dim, args.clusters, seed=0):
        ids = np.arange(start, start + len(block), dtype=np.int64)
        flat.add(ids, block)
        scores, rows = faiss.knn(queries, block, 10, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, ids[rows])
        start += len(block)
    flat.flush()
    flat.committed()
    heap.finalize()
    truth = heap.I
    vector_bytes = args.n * args.dim * 4
    print(f"{args.n:,} x {args.dim} vectors ({vector_bytes / 2**30:.2f} GiB), {args.queries} held-out queries; "
          f"exact (IDMap2,Flat, {len(flat.files)} sealed files) written in {time.perf_counter() - t:.1f} s; "
          f"peak RSS {rss_gib():.2f} GiB")

    choice = choose_index(args.n, args.dim, parse_size(args.max_memory) if args.max_memory else None)
    factory = choice.factory
    t = time.perf_counter()
    ann = flat.converted(factory)
    ann_listed, _ = ann.flush()
    ann.committed()
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    tuning = tune_search_params(ann, args.target_recall)
    tune_s = time.perf_counter() - t
    recall = recall_at(ann.search(queries, 10).ids, truth)
    peak = rss_gib()
    print(f"{factory} ({choice.reason}): trained and filled in {build_s:.1f} s, tuned in {tune_s:.1f} s -> "
          f"{tuning.params} (leave-one-out recall@10 {tuning.recall_at_10:.3f}); build peak RSS {peak:.2f} GiB = "
          f"{peak * 2**30 / vector_bytes:.2f}x the vectors' bytes")

    # Latency from the stores as a new query process opens them: mapped afresh (the files' pages are in the
    # page cache, none yet in this mapping), so the first pass pays each list's first touch.
    directory = IndexDirectory(args.work)
    flat = directory.load_stores(flat.generation - 1, args.dim, flat.factory, [f.meta for f in flat.files])["segments"]
    ann = directory.load_stores(ann.generation - 1, args.dim, factory, ann_listed)["segments"]
    ann.set_search_params(tuning.params)
    ann_files = len(ann.files)
    flat_figures = latency(flat, queries)
    ann_figures = latency(ann, queries)
    print()
    print(f"{'index':<16}{'files':>6}{'recall@10':>10}   single ms: first pass, warm   batch ms/q: first pass, warm")
    for name, files, r, (first, warm, batch_first, batch_warm) in (
            ("exact flat", len(flat.files), 1.0, flat_figures), (factory, ann_files, recall, ann_figures)):
        print(f"{name:<16}{files:>6}{r:>10.3f}{first:>16.2f}{warm:>8.2f}{batch_first:>26.3f}{batch_warm:>8.3f}")
    print(f"speed-up (warm): single {flat_figures[1] / ann_figures[1]:.1f}x, batched {flat_figures[3] / ann_figures[3]:.1f}x")
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
