"""Search on 1M 512-d vectors: the index type `--index-type auto` picks, against exact flat search.

Prints build (training + adding) time, memory, tuned search parameters, recall@10 on held-out queries
against exact search, and single-query and batched latency of both. The vectors are unit vectors around
`--clusters` centres (1,000) (the shape real embeddings have; uniform random vectors have no neighbourhood structure
and are the worst case of every ANN method). Run: python bench/search_1m.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from indexer.encoders.base import l2_normalize
from indexer.store import VectorStore, choose_factory
from indexer.tuning import exact_neighbours, recall_at, tune_search_params


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


def latency(store: VectorStore, queries: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(median ms per single query, ms per query in one batch of all)."""
    singles = []
    for q in queries[:200]:
        t = time.perf_counter()
        store.search(q[None], k)
        singles.append(time.perf_counter() - t)
    t = time.perf_counter()
    store.search(queries, k)
    batched = (time.perf_counter() - t) / len(queries)
    return 1000 * float(np.median(singles)), 1000 * batched


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
    args = parser.parse_args()

    everything = clustered(args.n + args.queries, args.dim, args.clusters, seed=0)
    vectors, queries = everything[: args.n], everything[args.n :]
    ids = np.arange(args.n, dtype=np.int64)
    print(f"{args.n:,} x {args.dim} vectors, {args.queries} held-out queries; peak RSS {rss_gib():.1f} GiB")

    t = time.perf_counter()
    flat = VectorStore.create(args.dim)
    flat.add(ids, vectors)
    print(f"exact (IDMap2,Flat): built in {time.perf_counter() - t:.1f} s")
    truth = ids[exact_neighbours(vectors, queries, 10)]

    factory = choose_factory(args.n)
    t = time.perf_counter()
    ann = flat.converted(factory)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    tuning = tune_search_params(ann, args.target_recall)
    tune_s = time.perf_counter() - t
    recall = recall_at(ann.search(queries, 10).ids, truth)
    print(f"{factory}: trained and filled in {build_s:.1f} s, tuned in {tune_s:.1f} s -> {tuning.params} "
          f"(leave-one-out recall@10 {tuning.recall_at_10:.3f}); peak RSS {rss_gib():.1f} GiB")

    flat_single, flat_batch = latency(flat, queries)
    ann_single, ann_batch = latency(ann, queries)
    print()
    print(f"{'index':<16}{'recall@10':>10}{'single ms':>11}{'batch ms/q':>12}")
    print(f"{'exact flat':<16}{1.0:>10.3f}{flat_single:>11.2f}{flat_batch:>12.3f}")
    print(f"{factory:<16}{recall:>10.3f}{ann_single:>11.2f}{ann_batch:>12.3f}")
    print(f"speed-up: single {flat_single / ann_single:.1f}x, batched {flat_batch / ann_batch:.1f}x")


if __name__ == "__main__":
    main()
