"""Choosing search parameters (nprobe, efSearch) that reach a target recall@10 against exact search."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.store import VectorStore

_CANDIDATES = {"ivf": ("nprobe", (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)),
               "hnsw": ("efSearch", (16, 32, 64, 128, 256, 512, 1024))}


@dataclass(frozen=True)
class Tuning:
    params: dict[str, int]
    recall_at_10: float
    queries: int


def exact_neighbours(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k largest inner products of each query (the reference an ANN index is held to)."""
    import faiss

    flat = faiss.IndexFlatIP(database.shape[1])
    flat.add(np.ascontiguousarray(database, dtype=np.float32))
    return flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true neighbours that were found (k-recall@k)."""
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
    return float(np.sum(hits) / truth.size)


def tune_search_params(store: VectorStore, target_recall: float = 0.95, n_queries: int | None = None, k: int = 10,
                       seed: int = 0) -> Tuning:
    """The cheapest nprobe/efSearch whose recall@k on `n_queries` stored vectors reaches `target_recall`.

    Queries are a seeded sample of the stored vectors, each left out of its own answer (leave-one-out):
    real queries are new windows of the same kind of audio, and counting a query's own vector as a hit
    would overstate recall (measured: self-queries 0.998 where held-out queries gave 0.45; leave-one-out
    stays within 2 points of held-out). If no setting reaches the target, the most thorough is kept.
    """
    if store.kind == "flat" or store.ntotal == 0:
        return Tuning({}, 1.0, 0)
    if n_queries is None:
        n_queries = tuning_queries(store.ntotal)
    name, candidates = _CANDIDATES[store.kind]
    ids = store.ids()
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(ids), size=min(n_queries, len(ids)), replace=False))
    queries = store.reconstruct(ids[sample])
    k = min(k, len(ids) - 1)
    if k < 1:
        return Tuning({}, 1.0, 0)
    truth = _without_self(_streamed_exact(store, queries, k + 1), ids[sample], k)
    best = Tuning({}, 0.0, len(sample))
    for value in candidates:
        if store.kind == "ivf" and value > _nlist(store):
            break
        store.set_search_params({name: value})
        recall = recall_at(_without_self(store.search(queries, k + 1).ids, ids[sample], k), truth)
        best = Tuning({name: value}, recall, len(sample))
        if recall >= target_recall:
            break
    store.set_search_params(best.params)
    return best


# The exact reference of tuning scans every stored vector once per query: 1,000 queries while that costs at
# most EXACT_BUDGET vector reads, fewer beyond (never under 200: recall@10 over 2,000 neighbours is within
# about a point). At 10M vectors 1,000 queries would be 1e13 flops, 6-12 minutes on 2 cores.
EXACT_BUDGET = 200_000_000
MIN_TUNING_QUERIES = 200


def short_of_target(factory: str, search_params: dict) -> str | None:
    """A plain-words note when the tuning stored in an index's provenance (`search_params`) stayed below its
    target recall (the type cannot reach it even at its widest search); None when it reached it or was not
    tuned."""
    recall, target = search_params.get("recall_at_10"), search_params.get("target_recall")
    if recall is None or target is None or float(recall) >= float(target):
        return None
    widest = ", ".join(f"{k} {v}" for k, v in search_params.items() if k in ("nprobe", "efSearch"))
    return (f"{factory} reaches recall@10 {float(recall):.3f} against exact search, below the target "
            f"{float(target):.2f}{f' even at {widest}' if widest else ''}: a less compressed type (a larger "
            "--max-memory, or --index-type) gets closer")


def tuning_queries(n_vectors: int) -> int:
    """How many queries tuning measures recall on for a store of `n_vectors`."""
    return int(min(1000, max(MIN_TUNING_QUERIES, EXACT_BUDGET // max(n_vectors, 1))))


def _streamed_exact(store: VectorStore, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k largest inner products of each query over every stored vector, read a block at a time
    (a segmented store's `iter_vectors`): memory is one block, not the index (faiss's knn_ground_truth)."""
    import faiss

    blocks = store.iter_vectors() if hasattr(store, "iter_vectors") else [(store.ids(), store.reconstruct(store.ids()))]
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for block_ids, vectors in blocks:
        scores, rows = faiss.knn(queries, np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(block_ids)),
                                 metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, np.where(rows >= 0, block_ids[np.maximum(rows, 0)], -1))
    heap.finalize()
    return heap.I


def _without_self(found: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row's first k ids other than the query's own."""
    return np.stack([row[row != me][:k] if (row != me).sum() >= k else np.pad(row[row != me], (0, k - (row != me).sum()),
                     constant_values=-1) for row, me in zip(found, own)])


def _nlist(store: VectorStore) -> int:
    import faiss

    return int(faiss.extract_index_ivf(store.index).nlist)
