"""Segmented vector stores: an index generation as immutable sealed files, a mutable tail and deletions.

Lucene's layout, for FAISS (see also indexer/store.py, which holds the single-file VectorStore each part
is). New vectors go to the in-memory tail; a checkpoint seals the tail into a new file (written once,
never changed: `{store}.{generation}.faiss`, or `{store}.{generation}.{part}.faiss` for merge outputs)
and records removals of sealed vectors as deletions, so it writes what is new, never the whole index.
The catalog transaction that commits generation N+1 also lists its files and deletions
(CatalogWriter.commit): that is the one commit point, and files it does not list are removed after it.

Search fans out over the sealed files and the tail and keeps the k best of their answers. The files of
one store share one trained quantizer (its template: an empty trained index, taken from any sealed file),
so an IVF query probes the same lists in every file and the merged answer is exactly the one index
holding all the vectors would give; training anew (`converted`) writes a whole new set of files.

Merges by size tiers, at each checkpoint: when MERGE_FACTOR files share a level, the smallest of them
(up to MAX_MERGE_BYTES together, which bounds a merge's memory) are streamed into one file of the next
level, their deleted vectors left behind. A file with more than DELETED_SHARE_REWRITE of its vectors
deleted is rewritten alone. Sealed files are opened memory-mapped: opening costs milliseconds whatever
their size, and a process's memory grows with the lists its queries touch.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from db.records import VectorFile
from indexer.errors import IndexCorruptError
from indexer.ivf_files import list_entries, write_merged_ivf
from indexer.store import (
    DEFAULT_FACTORY,
    RERANK_CANDIDATES,
    STORE_NAMES,
    FaissGpu,
    IdSelector,
    IndexTypeError,
    SearchResult,
    VectorStore,
    _build_on_gpu,
    _empty_result,
    _ivf,
    needs_rerank,
)

# Files of one level that trigger a merge into the next (Lucene's mergeFactor, 10 there).
MERGE_FACTOR = 8
# A merge writes at most this many bytes (the sum of its inputs' sizes): its output is built in memory.
MAX_MERGE_BYTES = 1 << 30
# The tail is sealed mid-build once it holds this many bytes of vectors, so a build's memory stays bounded.
TAIL_MAX_BYTES = 256 << 20
# A file with more than this share of its vectors deleted is rewritten without them at the next checkpoint.
DELETED_SHARE_REWRITE = 0.3
# Up to this many deletions in a file, a search asks it for k + that many and drops them (the plain,
# BLAS or GPU path); beyond, the deleted ids are excluded inside FAISS with an id selector.
OVERFETCH_MAX = 64
# Level of files read from an index written before sealed files were listed: merged only by compaction.
LEGACY_LEVEL = 99
# Level of files too large to merge within MAX_MERGE_BYTES (and of a conversion's files): left as they are.
OUT_OF_TIERS = 98
FILE_NAME = re.compile(r"^(?P<store>[a-z]+)\.(?P<gen>\d+)(?:\.(?P<part>\d+))?\.faiss$")
# A PQ store's re-ranking copy beside each sealed file: its ids sorted, and their float16 vectors in that order.
COMPANION_NAME = re.compile(r"^(?P<stem>[a-z]+\.\d+(?:\.\d+)?)\.(?:ids|f16)\.npy$")
# Vectors streamed per step when a file is merged or converted.
CHUNK = 100_000


class SealedFile:
    """One sealed file of vectors, memory-mapped, with the ids deleted from it since it was written."""

    def __init__(self, meta: VectorFile, store: VectorStore, deleted: np.ndarray | None = None, size: int = 0,
                 exact: ExactCopy | None = None):
        self.meta = meta
        self._store = store
        self.size = size  # bytes on disk: what merging it costs
        self.exact = exact  # a PQ store's float16 re-ranking copy (memory-mapped), None for other types
        # Sorted and unique: merges find a list's deleted entries by binary search (indexer/ivf_files.py).
        self.deleted = np.zeros(0, dtype=np.int64) if deleted is None else np.unique(np.asarray(deleted, dtype=np.int64))
        self._ids: np.ndarray | None = None
        self._excluded: IdSelector | None = None
        self._among: tuple[np.ndarray, np.ndarray] | None = None  # (a filter's ids, those live here)

    @property
    def store(self) -> VectorStore:
        return self._store

    @store.setter
    def store(self, store: VectorStore) -> None:
        # `ids` may be a view of the old store's id map (VectorStore.sorted_ids), freed with it.
        self._store = store
        self._ids = None

    @property
    def ids(self) -> np.ndarray:
        """Every id written into the file, sorted (deleted ones included; for a flat file, a view of its id
        map, valid while this file keeps its store)."""
        if self._ids is None:
            # The re-ranking copy lists them (8 bytes a vector, mapped); else IDMap keeps insertion order.
            self._ids = self.exact.ids if self.exact is not None else self.store.sorted_ids()
        return self._ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (held here): from the float16 copy where there is one, which is
        exact to 1e-3, not from product-quantised codes."""
        if self.exact is not None:
            return self.exact.vectors(ids)
        return _reconstruct(self.store, ids)

    @property
    def live(self) -> int:
        return self.store.ntotal - len(self.deleted)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Which of `ids` are live vectors of this file (a boolean mask)."""
        position = np.searchsorted(self.ids, ids)
        inside = position < len(self.ids)
        inside[inside] = self.ids[position[inside]] == ids[inside]
        if len(self.deleted):
            inside &= ~np.isin(ids, self.deleted)
        return inside

    def delete(self, ids: np.ndarray) -> np.ndarray:
        """Mark the live ones of `ids` deleted; returns them."""
        hit = ids[self.holds(ids)]
        if len(hit):
            self.deleted = np.union1d(self.deleted, hit)
            self._excluded = None
            self._among = None
        return hit

    def live_ids(self) -> np.ndarray:
        return np.setdiff1d(self.ids, self.deleted, assume_unique=True) if len(self.deleted) else self.ids

    def search(self, queries: np.ndarray, k: int, among: np.ndarray | None) -> SearchResult:
        """The k best live vectors of this file (among `among`, when given)."""
        if among is not None:
            return self.store.search(queries, k, among=self._among_here(among))
        if not len(self.deleted):
            return self.store.search(queries, k)
        if len(self.deleted) <= OVERFETCH_MAX:
            found = self.store.search(queries, k + len(self.deleted))
            return _dropped(found, self.deleted, k)
        if self._excluded is None:
            self._excluded = _NotIn(self.deleted)
        return self.store.search_excluding(queries, k, self._excluded)

    def search_preassigned(self, queries: np.ndarray, k: int, lists: np.ndarray, scores: np.ndarray) -> SearchResult:
        """The k best live vectors in the given IVF lists of each query (their coarse assignment, shared by
        the files of a store): what `search` answers, without computing the assignment again."""
        if len(self.deleted) and self._excluded is None:
            self._excluded = _NotIn(self.deleted)
        selector = self._excluded.selector if len(self.deleted) else None  # type: ignore[union-attr]
        return preassigned_search(self.store, queries, k, lists, scores, selector)

    def _among_here(self, among: np.ndarray) -> np.ndarray:
        """The filter's ids that are live vectors of this file, kept while the filter's array is the same
        (an Engine passes one array for repeated queries with one filter)."""
        if self._among is None or self._among[0] is not among:
            here = among[self.holds(among)] if len(among) else among
            self._among = (among, here)
        return self._among[1]


def preassigned_search(store: VectorStore, queries: np.ndarray, k: int, lists: np.ndarray, scores: np.ndarray,
                       selector: Any = None) -> SearchResult:
    """The k best vectors of an IVF `store` in the given lists of each query (`selector`: the ids admitted)."""
    import faiss

    ivf = faiss.downcast_index(store.index)
    kk = max(1, min(k, store.ntotal))
    # nprobe must be the assignment's width: without parameters FAISS reads only the index's own nprobe columns.
    params = faiss.SearchParametersIVF(sel=selector, nprobe=lists.shape[1]) if selector is not None else \
        faiss.SearchParametersIVF(nprobe=lists.shape[1])
    found_scores = np.empty((len(queries), kk), dtype=np.float32)
    found_ids = np.empty((len(queries), kk), dtype=np.int64)
    # The C++ method: faiss's Python wrapper of search_preassigned takes no search parameters.
    ivf.search_preassigned_c(len(queries), faiss.swig_ptr(queries), kk, faiss.swig_ptr(lists),
                             faiss.swig_ptr(scores), faiss.swig_ptr(found_scores), faiss.swig_ptr(found_ids),
                             False, params)
    return SearchResult(found_scores, found_ids)


class _NotIn:
    """A FAISS selector admitting every id but the given ones (the inner selector kept alive)."""

    def __init__(self, ids: np.ndarray):
        import faiss

        self.inner = IdSelector(ids)
        self.selector = faiss.IDSelectorNot(self.inner.selector)


class _IvfShards:
    """IVF parts sharing one quantizer searched as one index by FAISS's IndexShardsIVF: the coarse
    assignment once, each part's `search_preassigned` and the merge of their top k in C++. Doing the same
    from Python costs ~80 us a single query (an IVF4096 query at 1M takes ~160 us in all).

    IndexShardsIVF passes no search parameters to its parts (no selector) and probes each part's own
    nprobe, so it serves parts without deletions searched at the nprobe they all have. It points at the
    parts' C++ indexes without owning them: `held` keeps their Python objects (and what the key names)."""

    def __init__(self, key: tuple, held: Any, quantizer_owner: Any, parts: list[Any], nprobe: int):
        import faiss

        self.key = key
        self.held = (held, parts)
        self.nprobe = nprobe
        self.index = faiss.IndexShardsIVF(quantizer_owner.quantizer, int(quantizer_owner.nlist), False, False)
        for part in parts:
            self.index.add_shard(part)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        scores, ids = self.index.search(queries, k)
        if ids.min() < 0:
            scores[ids < 0] = -np.inf
        return SearchResult(scores, ids)


class ExactCopy:
    """A sealed file's float16 copy of its vectors for re-ranking: `{stem}.ids.npy` (sorted int64 ids) and
    `{stem}.f16.npy` (their vectors in that order), both memory-mapped. A query reads the rows of its ~100
    candidates, so the copy stays on disk however large the index."""

    def __init__(self, ids: np.ndarray, rows: np.ndarray):
        self.ids = ids
        self.rows = rows

    @staticmethod
    def paths(index_file: Path) -> tuple[Path, Path]:
        stem = index_file.name[: -len(".faiss")]
        return index_file.with_name(f"{stem}.ids.npy"), index_file.with_name(f"{stem}.f16.npy")

    @classmethod
    def open(cls, index_file: Path, dim: int, expected: int | None = None) -> ExactCopy:
        """Map the copy beside `index_file`; IndexCorruptError naming the file when it is missing, cut short
        or of another shape."""
        ids_path, rows_path = cls.paths(index_file)
        repair = "; `indexer verify --repair` embeds its files again"
        loaded = []
        for path in (ids_path, rows_path):
            try:
                loaded.append(np.load(path, mmap_mode="r"))
            except FileNotFoundError as e:
                raise IndexCorruptError(f"{index_file}: its re-ranking copy {path.name} is missing{repair}") from e
            except (ValueError, OSError) as e:
                raise IndexCorruptError(f"{index_file}: its re-ranking copy {path.name} is cut short or damaged "
                                        f"({str(e)[:100]}){repair}") from e
        ids, rows = loaded
        if ids.ndim != 1 or rows.shape != (len(ids), dim) or rows.dtype != np.float16 or ids.dtype != np.int64:
            raise IndexCorruptError(f"{index_file}: its re-ranking copy {rows_path.name} holds {rows.shape} "
                                    f"{rows.dtype} for {len(ids)} ids, not ({len(ids)}, {dim}) float16{repair}")
        if expected is not None and len(ids) != expected:
            raise IndexCorruptError(f"{index_file}: its re-ranking copy {ids_path.name} lists {len(ids)} ids for "
                                    f"{expected} vectors{repair}")
        return cls(ids, rows)

    @staticmethod
    def write(index_file: Path, ids: np.ndarray, vectors: Iterable[tuple[np.ndarray, np.ndarray]], n: int,
              dim: int) -> None:
        """Write the copy of `n` vectors given as (sorted ids, rows) blocks in id order, atomically
        (temporary names, fsync, rename), before the catalog lists `index_file`."""
        ids_path, rows_path = ExactCopy.paths(index_file)
        tmp_rows = rows_path.with_name(f".{rows_path.name}.{os.getpid()}.tmp")
        out = np.lib.format.open_memmap(tmp_rows, mode="w+", dtype=np.float16, shape=(n, dim))
        at = 0
        for _, block in vectors:
            out[at : at + len(block)] = block
            at += len(block)
        out.flush()
        del out
        _fsync(tmp_rows)
        tmp_ids = ids_path.with_name(f".{ids_path.name}.{os.getpid()}.tmp")
        with open(tmp_ids, "wb") as f:
            np.save(f, np.ascontiguousarray(ids, dtype=np.int64))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_rows, rows_path)
        os.replace(tmp_ids, ids_path)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of `ids` (all held here)."""
        position = np.searchsorted(self.ids, ids)
        order = np.argsort(position, kind="stable")  # read the mapped rows in file order
        out = np.empty((len(ids), self.rows.shape[1]), dtype=np.float32)
        out[order] = self.rows[position[order]]
        return out


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class TailCopy:
    """The tail's float16 vectors by id, kept beside a PQ tail until it is sealed."""

    def __init__(self, dim: int):
        self.dim = dim
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.blocks.append((np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float16)))
        self._sorted = None

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            ids = np.concatenate([b[0] for b in self.blocks]) if self.blocks else np.zeros(0, dtype=np.int64)
            rows = np.concatenate([b[1] for b in self.blocks]) if self.blocks else np.zeros((0, self.dim), np.float16)
            order = np.argsort(ids, kind="stable")
            ids, rows = ids[order], rows[order]
            # An id removed and added again: its last addition is the live one (the stable sort keeps it last).
            last = np.r_[ids[1:] != ids[:-1], True] if len(ids) else np.zeros(0, dtype=bool)
            self._sorted = (ids[last], rows[last])
            self.blocks = [self._sorted]
        return self._sorted

    def sorted(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, rows) of the `live` ids, sorted by id."""
        ids, rows = self._all()
        keep = np.isin(ids, live)
        return ids[keep], rows[keep]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of `ids` (live ids of the tail)."""
        held, rows = self._all()
        return rows[np.searchsorted(held, ids)].astype(np.float32)


def _dropped(found: SearchResult, deleted: np.ndarray, k: int) -> SearchResult:
    """`found` without the deleted ids, cut to k columns (padded with empty slots)."""
    scores = np.full((len(found.ids), k), -np.inf, dtype=np.float32)
    ids = np.full((len(found.ids), k), -1, dtype=np.int64)
    for row, (row_ids, row_scores) in enumerate(zip(found.ids, found.scores)):
        keep = (row_ids >= 0) & ~np.isin(row_ids, deleted)
        n = min(k, int(keep.sum()))
        ids[row, :n], scores[row, :n] = row_ids[keep][:n], row_scores[keep][:n]
    return SearchResult(scores, ids)


def merge_results(results: list[SearchResult], k: int) -> SearchResult:
    """The k best of several stores' answers to the same queries, best first (ties by store order)."""
    if not results:
        raise ValueError("no results to merge")
    if len(results) == 1:
        return _fitted(results[0], k)
    scores = np.concatenate([r.scores for r in results], axis=1)
    ids = np.concatenate([r.ids for r in results], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return _fitted(SearchResult(np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)), k)


def _fitted(result: SearchResult, k: int) -> SearchResult:
    have = result.ids.shape[1]
    if have == k:
        return result
    if have > k:
        return SearchResult(result.scores[:, :k], result.ids[:, :k])
    padded = _empty_result(len(result.ids), k)
    padded.scores[:, :have], padded.ids[:, :have] = result.scores, result.ids
    return padded


class SegmentedStore:
    """One store (window or file vectors) of an index generation: sealed files, a tail and deletions.

    It answers as one VectorStore holding the live vectors would (search, filtered search, ids,
    reconstruct, add, remove). `flush` seals the tail, merges by tiers and returns what the next
    generation lists; `committed` marks that listing done.
    """

    def __init__(self, name: str, dim: int, factory: str, root: Path, files: list[SealedFile],
                 template: VectorStore, generation: int):
        self.name = name
        self.factory = factory
        self.root = Path(root)
        self.files = files
        self.template = template  # empty and trained: every new file starts as a copy of it
        self.generation = generation  # the generation the next files are written for
        self._dim = dim
        self.search_params: dict[str, int] = dict(template.search_params)
        self.gpu: FaissGpu | None = None
        self.rerank = needs_rerank(factory)  # PQ codes: answers re-scored from a float16 copy on disk
        self.tail = self._empty()
        self.tail_copy = TailCopy(dim)
        self._new_deletions: dict[str, np.ndarray] = {}  # by file name: deleted since the last commit
        self._shards: _IvfShards | None = None  # the parts' fan-out in FAISS (plain CPU IVF), see _ivf_shards
        self._template_ivf: tuple[Any, Any] | None = None  # (template index, its IVF downcast or None)

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, name: str, root: Path, listed: list[VectorFile], deletions: dict[str, np.ndarray], dim: int,
             factory: str, generation: int) -> SegmentedStore:
        """The store made of the sealed files `listed` (memory-mapped) minus `deletions`."""
        files = []
        for meta in listed:
            path = Path(root) / meta.name
            if not path.is_file():
                raise IndexCorruptError(f"{path}: missing, although the catalog names generation {generation}")
            store = VectorStore.load(path, factory, mmap=True)
            if store.dim != dim:
                raise IndexCorruptError(f"{path}: dimension {store.dim}, the catalog says {dim}")
            if meta.vectors < 0:  # a file of an index written before files were listed
                meta = VectorFile(meta.name, meta.store, store.ntotal, meta.level)
            exact = ExactCopy.open(path, dim, store.ntotal) if needs_rerank(factory) else None
            files.append(SealedFile(meta, store, deletions.get(meta.name), _disk_bytes(path, exact), exact))
        template = _template_of(files[0].store, root / files[0].meta.name) if files else VectorStore.create(dim, factory)
        return cls(name, dim, factory, root, files, template, generation + 1)

    def _empty(self) -> VectorStore:
        return _copy_of_template(self.template, self.factory).to_gpu(self.gpu)

    # -- what a VectorStore answers ---------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ntotal(self) -> int:
        return sum(f.live for f in self.files) + self.tail.ntotal

    @property
    def kind(self) -> str:
        return self.template.kind

    @property
    def index(self) -> Any:
        """The template's FAISS index: what the type's parameters (nlist, the HNSW degree) are read from."""
        return self.template.index

    @property
    def is_trained(self) -> bool:
        return self.template.is_trained

    @property
    def gpu_note(self) -> str | None:
        return next((p.gpu_note for p in self._parts() if p.gpu_note), None)

    @property
    def filter_gpu_note(self) -> str | None:
        return next((p.filter_gpu_note for p in self._parts() if p.filter_gpu_note), None)

    def _parts(self) -> list[VectorStore]:
        return [f.store for f in self.files] + [self.tail]

    def to_gpu(self, gpu: FaissGpu | None) -> SegmentedStore:
        self.gpu = gpu
        for part in self._parts():
            part.to_gpu(gpu)
        return self

    def set_search_params(self, params: dict[str, int]) -> None:
        self.search_params = dict(params)
        self._shards = None
        for part in [*self._parts(), self.template]:
            part.set_search_params(params)

    def train(self, vectors: np.ndarray) -> None:
        if self.files or self.tail.ntotal:
            raise IndexTypeError(f"{self.name}: a store holding vectors is trained anew by `converted`")
        self.template.train(vectors)
        self.tail = self._empty()
        self.tail_copy = TailCopy(self.dim)

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        if self.rerank:
            ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
            self.tail_copy.add(ids, vectors)
        self.tail.add(ids, vectors)
        if self.tail.ntotal * self.dim * 4 >= TAIL_MAX_BYTES:
            self._seal_tail()

    def remove(self, ids: Iterable[int]) -> int:
        """Remove vectors by id (from the tail at once, from sealed files as deletions); returns how many."""
        ids = np.unique(np.asarray(list(ids), dtype=np.int64))
        if not len(ids):
            return 0
        removed = self.tail.remove(ids) if self.tail.ntotal else 0
        for f in self.files:
            hit = f.delete(ids)
            if len(hit):
                self._new_deletions[f.meta.name] = np.union1d(self._new_deletions.get(f.meta.name, hit), hit)
                removed += len(hit)
        return removed

    def search(self, queries: np.ndarray, k: int, among: np.ndarray | None = None) -> SearchResult:
        """The k best live vectors for each query over every sealed file and the tail (`among`: only those
        ids), as one index holding them all would answer."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        k = max(1, int(k))
        fetch = max(k, RERANK_CANDIDATES) if self.rerank else k
        ivf = self._plain_cpu_ivf()
        result = self._search_once(queries, k, fetch, among, None, ivf)
        if among is not None or ivf is None:
            return result
        # The IVF lists probed may hold fewer than k live vectors (a small or freshly trained index, a
        # large k): those queries alone probe 4x as many lists, up to all, rather than answer short. Per
        # query, so an answer does not depend on the batch it came in (and tuning measures what a single
        # query gets).
        wanted = min(k, self.ntotal)
        nprobe = self._nprobe(ivf)
        short = np.flatnonzero((result.ids >= 0).sum(axis=1) < wanted)
        while len(short) and nprobe < int(ivf.nlist):
            nprobe = min(int(ivf.nlist), nprobe * 4)
            wider = self._search_once(queries[short], k, fetch, None, nprobe, ivf)
            result.ids[short], result.scores[short] = wider.ids, wider.scores
            short = short[(wider.ids >= 0).sum(axis=1) < wanted]
        return result

    def _nprobe(self, ivf: Any) -> int:
        return min(int(self.search_params.get("nprobe", ivf.nprobe)), int(ivf.nlist))

    def _search_once(self, queries: np.ndarray, k: int, fetch: int, among: np.ndarray | None,
                     nprobe: int | None, ivf: Any) -> SearchResult:
        if among is None and ivf is not None and not self.rerank:
            shards = self._ivf_shards(ivf, nprobe or self._nprobe(ivf))
            if shards is not None:
                return shards.search(queries, k)
        assigned = self._coarse_assignment(queries, nprobe) if among is None else None
        holders: list[Any] = [f for f in self.files if f.live]
        if assigned is not None:
            results = [f.search_preassigned(queries, fetch, *assigned) for f in holders]
        else:
            results = [f.search(queries, fetch, among) for f in holders]
        if self.tail.ntotal:
            if assigned is not None:
                results.append(preassigned_search(self.tail, queries, fetch, *assigned))
            else:
                results.append(self.tail.search(queries, fetch,
                                                among=None if among is None else _held(self.tail, among)))
            holders.append(self.tail_copy)
        if not results:
            return _empty_result(len(queries), k)
        if self.rerank:
            return _reranked(queries, results, holders, k, fetch)
        return merge_results(results, k)

    def _ivf_shards(self, ivf: Any, nprobe: int) -> _IvfShards | None:
        """The live parts of a plain CPU IVF store (`ivf`: its template) as one FAISS IndexShardsIVF when
        they have no deletions and are searched at their own nprobe (see `_IvfShards`); None otherwise.
        Kept while the parts are the same objects: a file's deletions and its mapping are replaced, not
        changed in place, a changed tail changes its ntotal, and new search parameters drop it."""
        import faiss

        key = (id(ivf), nprobe, *[(id(f.store), id(f.deleted)) for f in self.files], id(self.tail),
               self.tail.ntotal)
        cached = self._shards
        if cached is not None and cached.key == key:
            return cached
        self._shards = None
        live = [f for f in self.files if f.live]
        parts = [f.store.index for f in live] + ([self.tail.index] if self.tail.ntotal else [])
        if not parts or any(len(f.deleted) for f in live):
            return None
        if any(int(faiss.downcast_index(part).nprobe) != nprobe for part in parts):
            return None
        # What the key's ids name stays referenced, so no id is reused while the fan-out is cached.
        held = (ivf, self.tail, [(f.store, f.deleted) for f in self.files])
        self._shards = _IvfShards(key, held, ivf, parts, nprobe)
        return self._shards

    def _plain_cpu_ivf(self) -> Any:
        """The template's IVF index when this store's searches run on CPU (shared coarse assignments)."""
        import faiss

        template = self.template.index
        if self._template_ivf is None or self._template_ivf[0] is not template:
            index = faiss.downcast_index(template)
            self._template_ivf = (template, index if isinstance(index, faiss.IndexIVF) else None)
        return self._template_ivf[1] if self.gpu is None else None

    def _coarse_assignment(self, queries: np.ndarray,
                           nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(lists, centroid scores) of the nprobe nearest IVF lists of each query, computed once for every
        file and the tail (they share the quantizer; each would otherwise compute it again), for a plain IVF
        index searched on CPU; None otherwise."""
        ivf = self._plain_cpu_ivf()
        if ivf is None:
            return None
        if nprobe is None:
            nprobe = min(int(self.search_params.get("nprobe", ivf.nprobe)), int(ivf.nlist))
        scores, lists = ivf.quantizer.search(queries, nprobe)
        return np.ascontiguousarray(lists, dtype=np.int64), np.ascontiguousarray(scores, dtype=np.float32)

    def ids(self) -> np.ndarray:
        parts = [f.live_ids() for f in self.files] + [self.tail.ids()]
        return np.sort(np.concatenate(parts)).astype(np.int64)

    def reconstruct(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of `ids`, (n, dim); RuntimeError for an id that is not live here."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        found = np.zeros(len(ids), dtype=bool)
        for f in self.files:
            mask = ~found
            mask[mask] = f.holds(ids[mask])
            if mask.any():
                out[mask] = f.vectors(ids[mask])
                found |= mask
        if not found.all() and self.tail.ntotal:
            rest = ~found
            held = np.isin(ids[rest], self.tail.ids())
            mask = rest.copy()
            mask[rest] = held
            if mask.any():
                out[mask] = self.tail_copy.vectors(ids[mask]) if self.rerank else _reconstruct(self.tail, ids[mask])
                found |= mask
        if not found.all():
            raise RuntimeError(f"{self.name}: no vector with id {int(ids[~found][0])}")
        return out

    def iter_vectors(self, chunk: int = CHUNK) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of every live vector, `chunk` at a time (bounded memory)."""
        for f in self.files:
            live = f.live_ids()
            for start in range(0, len(live), chunk):
                block = live[start : start + chunk]
                yield block, f.vectors(block)
            self._unmapped(f)
        tail_ids = np.sort(self.tail.ids())
        for start in range(0, len(tail_ids), chunk):
            block = tail_ids[start : start + chunk]
            yield block, self.tail_copy.vectors(block) if self.rerank else _reconstruct(self.tail, block)

    # -- training anew ----------------------------------------------------------------------------
    def converted(self, factory: str, train_size: int = 200_000, seed: int = 0) -> SegmentedStore:
        """The live vectors in a new set of files of `factory`, trained on a seeded sample of them and filled
        chunk by chunk (memory: the sample and one file's worth). The new files are written at once and
        become current when a generation listing them commits."""
        template = VectorStore.create(self.dim, factory)
        if not template.is_trained:
            needed = training_minimum(template)
            if self.ntotal < needed:
                raise IndexTypeError(f"index type {factory} needs at least {needed} vectors to train; the index "
                                     f"has {self.ntotal}: use IDMap2,Flat (or --index-type auto) until it grows")
            ids = self.ids()
            rng = np.random.default_rng(seed)
            sample_ids = ids if len(ids) <= train_size else np.sort(rng.choice(ids, train_size, replace=False))
            sample = self.reconstruct(sample_ids)
            trained = None
            if self.gpu is not None:
                with self.gpu.lock:
                    trained = _build_on_gpu(self.gpu, self.dim, factory, np.zeros(0, dtype=np.int64),
                                            np.zeros((0, self.dim), dtype=np.float32), sample)
            if trained is not None:
                template = VectorStore(trained, factory)
            else:
                template.train(sample)
            del sample
        fresh = SegmentedStore(self.name, self.dim, factory, self.root, [], template, self.generation)
        fresh.to_gpu(self.gpu)
        for ids, vectors in self.iter_vectors():
            fresh.add(ids, vectors)
        fresh._seal_tail()
        if len(fresh.files) > 1 and fresh._streams_ivf_merges():
            # One file: a query then scans each probed list once, not once a file. These files were never
            # listed by a generation, so they go at once (the merge streams; its memory is one list's).
            written = list(fresh.files)
            fresh.merge(written, OUT_OF_TIERS)
            for f in written:
                f.store = None  # type: ignore[assignment]  # unmapped before the file goes
                (self.root / f.meta.name).unlink(missing_ok=True)
        if len(fresh.files) > 1:  # files of TAIL_MAX_BYTES each: left out of the tiers, as merges' largest are
            for f in fresh.files:
                f.meta = VectorFile(f.meta.name, f.meta.store, f.meta.vectors, OUT_OF_TIERS)
        fresh.set_search_params(self.search_params if factory == self.factory else {})
        return fresh

    # -- checkpoints ------------------------------------------------------------------------------
    def flush(self) -> tuple[list[VectorFile], dict[str, np.ndarray]]:
        """Seal the tail, merge what the tiers call for, and return what the next generation lists: its
        files and the ids deleted from them since the last commit."""
        self._seal_tail()
        self._merge_tiers()
        listed = [f.meta for f in self.files]
        names = {m.name for m in listed}
        return listed, {n: ids for n, ids in self._new_deletions.items() if n in names}

    def committed(self) -> None:
        """The generation listing this store's files is committed: later files belong to the next one."""
        self._new_deletions = {}
        self.generation += 1

    def _seal_tail(self, level: int = 0) -> None:
        if not self.tail.ntotal and not self._needs_template_file():
            return
        vectors = self.tail.ntotal
        path = self._new_path()
        if self.rerank:
            ids, rows = self.tail_copy.sorted(self.tail.ids())
            ExactCopy.write(path, ids, [(ids, rows)], len(ids), self.dim)
        self.tail.without_id_map().save(path)
        self.files.append(self._reopened(VectorFile(path.name, self.name, vectors, level), path))
        self.tail = self._empty()
        self.tail_copy = TailCopy(self.dim)

    def _unmapped(self, f: SealedFile) -> None:
        """Map `f` afresh once it has been read through: the pages a whole-file read touched leave this
        process's RSS with the old mapping (a merge or conversion then holds one file's pages, not all)."""
        fresh = VectorStore.load(self.root / f.meta.name, self.factory, mmap=True)
        fresh.set_search_params(f.store.search_params)
        f.store = fresh.to_gpu(self.gpu)
        if f.exact is not None:
            f.exact = ExactCopy.open(self.root / f.meta.name, self.dim)

    def _needs_template_file(self) -> bool:
        """A trained store keeps at least one file (possibly empty): its quantizer must survive a reopen."""
        return not self.files and not _untrained_ok(self.factory, self.dim)

    def _reopened(self, meta: VectorFile, path: Path) -> SealedFile:
        store = VectorStore.load(path, self.factory, mmap=True)
        store.set_search_params(self.search_params)
        exact = ExactCopy.open(path, self.dim, store.ntotal) if self.rerank else None
        return SealedFile(meta, store.to_gpu(self.gpu), size=_disk_bytes(path, exact), exact=exact)

    def _new_path(self) -> Path:
        """A file name of the generation being written that no file (listed or left over) has."""
        taken = {f.meta.name for f in self.files}
        base = f"{self.name}.{self.generation}"
        if f"{base}.faiss" not in taken and not (self.root / f"{base}.faiss").exists():
            return self.root / f"{base}.faiss"
        part = 1
        while f"{base}.{part}.faiss" in taken or (self.root / f"{base}.{part}.faiss").exists():
            part += 1
        return self.root / f"{base}.{part}.faiss"

    def _merge_tiers(self) -> None:
        """Rewrite files with many deletions alone, then merge full levels (see the module docstring)."""
        for f in list(self.files):
            if f.meta.vectors and len(f.deleted) > DELETED_SHARE_REWRITE * f.store.ntotal:
                self.merge([f], f.meta.level)
        while True:
            levels: dict[int, list[SealedFile]] = {}
            for f in self.files:
                if f.meta.level < OUT_OF_TIERS:
                    levels.setdefault(f.meta.level, []).append(f)
            group = None
            for level in sorted(levels):
                if len(levels[level]) >= MERGE_FACTOR:
                    candidates = sorted(levels[level], key=_file_bytes)
                    chosen, size = [], 0
                    for f in candidates:
                        if size + _file_bytes(f) > MAX_MERGE_BYTES and len(chosen) >= 2:
                            break
                        chosen.append(f)
                        size += _file_bytes(f)
                    if len(chosen) >= 2 and size <= MAX_MERGE_BYTES:
                        group = (chosen, level + 1)
                    else:  # too large to merge in bounded memory: they stay as they are, out of the tiers
                        for f in levels[level]:
                            f.meta = VectorFile(f.meta.name, f.meta.store, f.meta.vectors, OUT_OF_TIERS)
                        group = ([], level)
                    break
            if group is None:
                return
            if group[0]:
                self.merge(*group)

    def merge(self, files: list[SealedFile], level: int) -> None:
        """Stream the live vectors of `files` into one new file of `level`, which takes their place.

        IVF files share their lists, so their codes are copied list by list (as faiss's merge_ondisk does),
        not decoded and assigned again: a merge costs the bytes it moves, not nlist x dim a vector."""
        if self._streams_ivf_merges():
            self._streamed_merge(files, level)
            return
        copy = TailCopy(self.dim)
        target = self._codes_merged(files)
        from_codes = target is not None
        if target is None:
            target = self._flat_merged(files) if _is_flat_id_map(self.factory) else None
        if target is None:
            target = self._empty()
            for f in files:
                for block, vectors in self._live_blocks(f):
                    target.add(block, vectors)
                    if self.rerank:
                        copy.add(block, vectors)
                self._unmapped(f)  # its pages leave this process's RSS before the next file is read
        elif self.rerank:
            for f in files:
                for block, vectors in self._live_blocks(f):
                    copy.add(block, vectors)
                if from_codes:
                    self._unmapped(f)
        keep = [f for f in self.files if f not in files]
        if not target.ntotal and (keep or _untrained_ok(self.factory, self.dim)):
            self.files = keep
            return
        path = self._new_path()
        if self.rerank:
            ids, rows = copy.sorted(target.ids())
            ExactCopy.write(path, ids, [(ids, rows)], len(ids), self.dim)
        target.without_id_map().save(path)
        merged = self._reopened(VectorFile(path.name, self.name, target.ntotal, level), path)
        position = min(self.files.index(f) for f in files)
        keep.insert(position, merged)
        self.files = keep

    def _streams_ivf_merges(self) -> bool:
        """IVF files without a re-ranking copy merge by streaming their lists into the output file."""
        return self._ivf_merge_ok() and not self.rerank

    def _streamed_merge(self, files: list[SealedFile], level: int) -> None:
        """`merge` for IVF files: their codes and ids written list by list straight into the new file
        (indexer/ivf_files.py), so the merge's memory is one list's, whatever the files' size."""
        import faiss

        template = _copy_of_template(self.template, self.factory)
        _ivf(template.index).set_direct_map_type(faiss.DirectMap.NoMap)  # sealed files are written without it
        path = self._new_path()
        total = write_merged_ivf(path, template.index,
                                 [(_ivf(f.store.index).invlists, f.deleted) for f in files])
        keep = [f for f in self.files if f not in files]
        if not total and (keep or _untrained_ok(self.factory, self.dim)):
            path.unlink()
            self.files = keep
            return
        merged = self._reopened(VectorFile(path.name, self.name, total, level), path)
        keep.insert(min(self.files.index(f) for f in files), merged)
        self.files = keep

    def _live_blocks(self, f: SealedFile) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of `f`'s live vectors, CHUNK at a time (from its float16 copy where it has one)."""
        live = f.live_ids()
        for start in range(0, len(live), CHUNK):
            block = live[start : start + CHUNK]
            yield block, f.vectors(block)

    def _flat_merged(self, files: list[SealedFile]) -> VectorStore | None:
        """An exact (IDMap2,Flat) store of the live vectors of `files`, its codes allocated once at their
        final size and filled in place: adding chunk by chunk grows FAISS's code vector by doubling, which
        held up to twice (three times while copying) a 1 GiB merge's bytes."""
        import faiss

        # Rows in id order: the file's sorted id map is then its own id -> position lookup once reopened
        # (store._lean_id_map), with no hash map and no sorted copy in memory.
        everything = np.sort(np.concatenate([f.live_ids() for f in files]))
        n = len(everything)
        target = VectorStore.create(self.dim, self.factory)
        inner = faiss.downcast_index(target.index.index)
        if not isinstance(inner, faiss.IndexFlat) or n == 0:
            return None
        inner.codes.resize(n * self.dim * 4)
        rows = faiss.rev_swig_ptr(inner.codes.data(), n * self.dim * 4).view(np.float32).reshape(n, self.dim)
        target.index.id_map.resize(n)
        ids = faiss.rev_swig_ptr(target.index.id_map.data(), n)
        for f in files:
            for block, vectors in self._live_blocks(f):
                at = np.searchsorted(everything, block)
                rows[at] = vectors
                ids[at] = block
            self._unmapped(f)
        del everything
        inner.ntotal = n
        target.index.ntotal = n
        target.index.construct_rev_map()
        return target

    def _ivf_merge_ok(self) -> bool:
        return self.gpu is None and _ivf(self.template.index) is not None

    def _codes_merged(self, files: list[SealedFile]) -> VectorStore | None:
        """An IVF store holding the live entries of `files`, their codes and ids copied list by list into
        memory (a re-ranked store's merge, whose float16 copies are merged beside it; others stream: see
        `_streamed_merge`); None for other types (and on a GPU, whose copies the merge rebuilds from vectors)."""
        import faiss

        if not self._ivf_merge_ok():
            return None
        target = _copy_of_template(self.template, self.factory)
        ivf = _ivf(target.index)
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # sealed files are written without it anyway
        sources = [(_ivf(f.store.index).invlists, f.deleted) for f in files]
        total = 0
        for number in range(int(ivf.nlist)):
            codes, ids = list_entries(number, int(ivf.code_size), sources)
            if len(ids):
                ivf.invlists.add_entries(number, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
                total += len(ids)
        ivf.ntotal = total
        target.index.ntotal = total
        return target


def _is_flat_id_map(factory: str) -> bool:
    return factory == DEFAULT_FACTORY


def training_minimum(template: VectorStore) -> int:
    """The fewest vectors FAISS trains an index of `template`'s type on: one per IVF list, 256 per product
    quantiser's codebook (8-bit codes); 1 for other types."""
    import faiss

    needed = 1
    ivf = _ivf(template.index)
    if ivf is not None:
        needed = int(ivf.nlist)
        inner = faiss.downcast_index(ivf)
        if hasattr(inner, "pq"):
            needed = max(needed, 1 << int(inner.pq.nbits))
    return needed


def _file_bytes(f: SealedFile) -> int:
    return f.size or int(f.store.ntotal) * f.store.dim * 4


def _disk_bytes(path: Path, exact: ExactCopy | None) -> int:
    """A sealed file's bytes on disk with its re-ranking copy: what merging it reads and holds."""
    size = path.stat().st_size
    if exact is not None:
        size += exact.rows.nbytes + exact.ids.nbytes
    return size


def _reranked(queries: np.ndarray, results: list[SearchResult], holders: list[Any], k: int,
              fetch: int) -> SearchResult:
    """The k best of the `fetch` best candidates over all parts (by their quantised scores, as one index
    holding every vector would rank them), re-scored exactly from the parts' float16 copies."""
    scores = np.concatenate([r.scores for r in results], axis=1)
    ids = np.concatenate([r.ids for r in results], axis=1)
    origin = np.concatenate([np.full(r.ids.shape, i, dtype=np.int32) for i, r in enumerate(results)], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :fetch]
    ids = np.take_along_axis(ids, order, axis=1)
    origin = np.take_along_axis(origin, order, axis=1)
    exact = np.full(ids.shape, -np.inf, dtype=np.float32)
    for i, holder in enumerate(holders):
        rows, cols = np.nonzero((origin == i) & (ids >= 0))
        if len(rows):
            vectors = holder.vectors(ids[rows, cols])
            exact[rows, cols] = np.einsum("ij,ij->i", vectors, queries[rows])
    best = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    return _fitted(SearchResult(np.take_along_axis(exact, best, axis=1),
                                np.where(np.take_along_axis(exact, best, axis=1) > -np.inf,
                                         np.take_along_axis(ids, best, axis=1), -1)), k)


def _held(store: VectorStore, among: np.ndarray) -> np.ndarray:
    ids = store.ids()
    return among[np.isin(among, ids)] if len(among) else among


def _reconstruct(store: VectorStore, ids: np.ndarray) -> np.ndarray:
    """Vectors of ids known to be in `store`, in blocks."""
    return store.read_back(np.asarray(ids, dtype=np.int64))


def _template_of(store: VectorStore, path: Path) -> VectorStore:
    """An empty index with the trained parts (quantizer, codebooks) of the sealed file at `path`."""
    import faiss

    if store.is_trained and _ivf(store.index) is None and _untrained_ok(store.factory, store.dim):
        return VectorStore.create(store.dim, store.factory)
    try:
        if _ivf(store.index) is not None:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)  # the lists stay on disk, then are replaced
            ivf = _ivf(index)
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)
            lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
            lists.this.disown()  # the index owns it now
            ivf.replace_invlists(lists, True)
            ivf.ntotal = 0
            index.ntotal = 0
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        else:
            index = faiss.read_index(str(path))
            index.reset()
    except RuntimeError as e:
        raise IndexCorruptError(f"{path}: unreadable FAISS index ({str(e).splitlines()[0][:160]})") from e
    return VectorStore(index, store.factory)


@functools.lru_cache(maxsize=64)
def _untrained_ok(factory: str, dim: int) -> bool:
    """Whether a fresh index of `factory` needs no training (flat and HNSW-over-flat types)."""
    return bool(VectorStore.create(dim, factory).is_trained)


def _copy_of_template(template: VectorStore, factory: str) -> VectorStore:
    """An empty store sharing nothing with `template` but equal to it (trained parts included)."""
    import faiss

    if template.is_trained and _untrained_ok(factory, template.dim):
        return VectorStore.create(template.dim, factory)
    copy = VectorStore(faiss.clone_index(template.index), factory)
    copy.set_search_params(template.search_params)
    ivf = _ivf(copy.index)
    if ivf is not None:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return copy


def legacy_files(generation: int) -> list[VectorFile]:
    """The files of an index written before sealed files were listed: one per store, of its generation."""
    return [VectorFile(f"{name}.{generation}.faiss", name, -1, LEGACY_LEVEL) for name in STORE_NAMES]


def remove_unlisted(root: Path, listed: Iterable[str]) -> list[str]:
    """Delete FAISS files of `root` that the committed generation does not list, and stale temporary files;
    returns the names removed."""
    keep = set(listed)
    removed = []
    for path in Path(root).iterdir():
        stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
        companion = COMPANION_NAME.match(path.name)
        orphan = companion is not None and f"{companion['stem']}.faiss" not in keep
        if (FILE_NAME.match(path.name) and path.name not in keep) or stale_tmp or orphan:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


__all__ = ["DEFAULT_FACTORY", "ExactCopy", "SealedFile", "SegmentedStore", "legacy_files", "merge_results",
           "remove_unlisted"]


class IndexDirectory:
    """The files of one index directory: catalog, manifest, and FAISS generations."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def store_path(self, name: str, generation: int) -> Path:
        return self.root / f"{name}.{generation}.faiss"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def load_stores(self, generation: int, dim: int, factory: str, files: list[VectorFile] | None = None,
                    deletions: dict[str, np.ndarray] | None = None) -> dict[str, SegmentedStore]:
        """The stores of `generation`: the sealed `files` it lists (memory-mapped) minus `deletions`
        (None: the one file per store of an index written before files were listed; none for generation 0).

        `factory` is the segment store's; file vectors (one per file) always use exact search.
        """
        if files is None:
            files = legacy_files(generation) if generation else []
        stores = {}
        for name in STORE_NAMES:
            store_factory = factory if name == "segments" else DEFAULT_FACTORY
            stores[name] = SegmentedStore.open(name, self.root, [f for f in files if f.store == name],
                                               deletions or {}, dim, store_factory, generation)
        return stores

    def remove_unlisted(self, listed: Iterable[str]) -> list[str]:
        """Delete the FAISS files that the current generation does not list, and stale temporary files."""
        return remove_unlisted(self.root, listed)
