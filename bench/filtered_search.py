"""Filtered against unfiltered search: latency and recall@10 of a filter applied inside the FAISS search.

Builds each index once over `--n` clustered unit vectors (1M by default; the shape real embeddings have):
exact (IDMap2,Flat) and IVF (`--ivf`, IVF1024,Flat by default: the fast factory to build on a small
machine; `--index-type auto` would pick IVF4096 at 1M) over all of them, HNSW (IDMap2,HNSW16,Flat) over
`--hnsw-n` (a 1M-vector graph takes too long to build on 2 cores). nprobe/efSearch are tuned to recall@10
0.95 as `indexer build` does. Filters select 1%, 10% and 50% of the ids at random, and 10% "aligned" with
the clusters (the vectors nearest one direction, as a folder of one kind of sound is). For each: the plan
the cost model picks (exact scoring of the matching vectors, or the id selector inside the search), median
and p95 ms per single query, recall@10 against brute force over the filtered set, and the ratio of the
median to the unfiltered median of the same index (x), and the first query's ms (a new filter's selector,
IVF list counts or read-back vectors are built then and reused by later queries). `--catalog` also times the SQL that turns a filter into
segment ids, on a SQLite catalog of `--n` segments (10,000 files).

Run: python bench/filtered_search.py [--n 1000000] [--dim 128] [--catalog]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.search_1m import clustered
from indexer.store import VectorStore, filtered_plan
from indexer.tuning import exact_neighbours, recall_at, tune_search_params


def timed(store: VectorStore, queries: np.ndarray, among: np.ndarray | None) -> tuple[np.ndarray, float, float, float]:
    """(found ids, ms of the first query, median ms, p95 ms) of single-query searches. The first query with a
    filter builds its selector and list counts or reads its vectors back; later ones reuse them, as the
    Engine's queries with one filter do."""
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        result = store.search(q[None], 10, among=among)
        times.append(1000 * (time.perf_counter() - t))
        found.append(result.ids[0])
    return np.stack(found), times[0], float(np.median(times)), float(np.percentile(times, 95))


def filters(ids: np.ndarray, vectors: np.ndarray, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = [(f"random {p:g}%", np.sort(rng.choice(ids, int(len(ids) * p / 100), replace=False))) for p in (1, 10, 50)]
    aligned = np.argsort(-(vectors @ vectors[0]))[: len(ids) // 10]
    out.append(("aligned 10%", np.sort(ids[aligned])))
    return out


def bench_store(name: str, store: VectorStore, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> None:
    truth_all = ids[exact_neighbours(vectors, queries, 10)]
    found, first, p50, p95 = timed(store, queries, None)
    base = p50
    print(f"{name:<22}{'none':<13}{len(ids):>9}  {'-':<9}{first:>8.2f}{p50:>8.2f}{p95:>8.2f}"
          f"{recall_at(found, truth_all):>7.3f}{1.0:>7.2f}")
    for label, among in filters(ids, vectors, seed=1):
        mask = np.isin(ids, among)
        truth = ids[mask][exact_neighbours(vectors[mask], queries, 10)]
        found, first, p50, p95 = timed(store, queries, among)
        assert np.isin(found[found >= 0], among).all()
        full = (found >= 0).all()
        print(f"{name:<22}{label:<13}{len(among):>9}  {filtered_plan(store, len(among)):<9}{first:>8.2f}{p50:>8.2f}"
              f"{p95:>8.2f}{recall_at(found, truth):>7.3f}{p50 / base:>7.2f}" + ("" if full else "  (short lists!)"))


def bench_catalog(n: int, files: int = 10_000) -> None:
    """Seconds the catalog takes to turn filters into segment ids, on `n` segments of `files` files."""
    from sqlalchemy import insert

    from db import Catalog, CorpusRow, FileRow, SegmentRow, sqlite_url
    from db.filters import SearchFilter
    from db.schema import FileTagRow, utcnow

    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(sqlite_url(Path(tmp) / "c.sqlite"))
        per_file = n // files
        now = utcnow()
        with catalog.engine.begin() as c:
            c.execute(insert(CorpusRow), [{"id": 1, "root": "/lib", "added_at": now}])
            c.execute(insert(FileRow), [
                {"id": f + 1, "corpus_id": 1, "path": f"{['drums', 'field', 'voice', 'synth'][f % 4]}/{f:05d}."
                 + ("wav" if f % 3 else "flac"), "content_hash": "h", "size": 1, "mtime": 1.6e9 + f * 1000.0,
                 "duration": float(per_file * 2), "source_rate": 48000, "channels": 1, "indexed_at": now}
                for f in range(files)])
            c.execute(insert(FileTagRow), [{"file_id": f + 1, "key": "genre", "value": "Jazz", "folded": "jazz"}
                                           for f in range(0, files, 100)])
            c.execute(insert(SegmentRow), [{"file_id": s // per_file + 1, "start": 0.0, "end": 2.0, "modalities": "audio"}
                                           for s in range(files * per_file)])
        cases = [("under /lib/drums (25%)", SearchFilter(under="/lib/drums")),
                 ("ext flac (33%)", SearchFilter(extensions=("flac",))),
                 ("glob field/0*1.wav", SearchFilter(glob="field/0*1.wav")),
                 ("tag genre=jazz (1%)", SearchFilter(tags=(("genre", "jazz"),))),
                 ("modified range (10%)", SearchFilter(modified_after=1.6e9, modified_before=1.6e9 + files * 100.0))]
        print(f"\ncatalog: {files * per_file:,} segments of {files:,} files (SQLite)")
        print(f"{'filter':<28}{'segments':>10}{'seconds':>9}")
        for label, where in cases:
            t = time.perf_counter()
            ids = catalog.matching_segment_ids(where)
            print(f"{label:<28}{len(ids):>10}{time.perf_counter() - t:>9.3f}")
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--ivf", default="IVF1024,Flat")
    parser.add_argument("--hnsw-n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--catalog", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="FAISS OpenMP threads (1: a single query gains nothing from more, and on a busy "
                             "machine their spinning dominates the latency)")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)

    started = time.perf_counter()
    everything = clustered(args.n + args.queries, args.dim, 1000, seed=0)
    vectors, queries = everything[: args.n], everything[args.n :]
    ids = np.arange(args.n, dtype=np.int64) * 3 + 1  # catalog ids are not 0..n-1
    print(f"{args.n:,} vectors of {args.dim} dimensions, {args.queries} held-out single queries, k=10")
    print(f"{'index':<22}{'filter':<13}{'matching':>9}  {'plan':<9}{'1st ms':>8}{'p50 ms':>8}{'p95 ms':>8}{'R@10':>7}"
          f"{'x':>7}")
    flat = VectorStore.create(args.dim)
    flat.add(ids, vectors)
    bench_store("IDMap2,Flat", flat, vectors, ids, queries)
    ivf = flat.converted(args.ivf, train_size=50_000)
    ivf.set_search_params(tune_search_params(ivf, 0.95).params)
    del flat
    bench_store(f"{args.ivf} np={ivf.search_params['nprobe']}", ivf, vectors, ids, queries)
    del ivf
    h = args.hnsw_n
    hnsw = VectorStore.create(args.dim, "IDMap2,HNSW16,Flat")
    hnsw.add(ids[:h], vectors[:h])
    hnsw.set_search_params(tune_search_params(hnsw, 0.95).params)
    bench_store(f"HNSW16 {h // 1000}k ef={hnsw.search_params['efSearch']}", hnsw, vectors[:h], ids[:h], queries)
    if args.catalog:
        bench_catalog(args.n)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
