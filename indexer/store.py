"""FAISS vector stores and the index directory's generations.

Every FAISS detail lives here and in indexer/segments.py. Vectors are L2-normalised and searched by
inner product, i.e. cosine. Each vector's FAISS id is the id of its catalog row (segment or file). An
index generation is a set of sealed, immutable files per store, a mutable tail and deletions
(indexer/segments.py): a checkpoint writes the new file (temporary file, fsync, `os.replace`), then the
catalog commits "generation N+1", its list of files and its deletions in the same transaction as its
rows; files it no longer lists are removed afterwards. A crash at any point leaves the catalog naming a
complete generation.

GPU: a store given a FaissGpu (`to_gpu`) keeps its CPU index as the one it saves, removes from and
reconstructs, and searches a GPU copy of it (flat and IVF types; cloned again after a change). Converting
to an IVF type trains and fills it on the GPU, then copies it back (`index_gpu_to_cpu`); an HNSW type is
built with CAGRA where faiss has cuVS and copied back as an HNSW graph. Whatever the GPU cannot do stays
on CPU, so the results API and the saved files are the same either way.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexCorruptError, ResoundError


class IndexTypeError(ResoundError):
    """A FAISS index type that cannot be built for these vectors."""

DEFAULT_FACTORY = "IDMap2,Flat"
METRIC = "inner_product"
# Below this many vectors exact search is fast enough (a few ms per query) and needs no training.
AUTO_IVF_MIN_VECTORS = 100_000
AUTO_SQ8_MIN_VECTORS = 2_000_000
STORE_NAMES = ("segments", "files")
_GENERATION_FILE = re.compile(r"^(?P<name>[a-z]+)\.(?P<gen>\d+)\.faiss$")


@dataclass(frozen=True)
class SearchResult:
    """Scores and ids of a batch of queries, best first; id -1 marks an empty slot."""

    scores: np.ndarray  # (n_queries, k) float32
    ids: np.ndarray  # (n_queries, k) int64


@dataclass(frozen=True)
class IndexChoice:
    """The index type `--index-type auto` picked, and why (recorded in the index's provenance)."""

    factory: str
    reason: str


# Bytes each stored vector costs a searched index in memory, besides its 8-byte id in an IVF list.
def _code_bytes(factory: str, dim: int) -> int:
    if factory.endswith(",Flat"):
        return 4 * dim
    if factory.endswith(",SQ8"):
        return dim
    m = re.search(r",PQ(\d+)", factory)
    return int(m.group(1)) if m else 4 * dim


def index_memory_bytes(factory: str, n_vectors: int, dim: int) -> int:
    """What an index of `factory` holding `n_vectors` needs in memory to be searched at full speed: its codes,
    ids and centroids (a PQ store's float16 re-ranking copy stays on disk; queries read ~100 rows of it)."""
    if "IVF" not in factory:
        return n_vectors * (4 * dim + 8)
    nlist = int(re.match(r"IVF(\d+)", factory).group(1))  # type: ignore[union-attr]
    return n_vectors * (_code_bytes(factory, dim) + 8) + nlist * dim * 4


def choose_index(n_vectors: int, dim: int, max_memory: int | None = None) -> IndexChoice:
    """The FAISS type `--index-type auto` picks for `n_vectors` windows of `dim` within `max_memory` bytes.

    As autofaiss does: the most exact type whose searched index fits the budget. Exact search up to 100k
    vectors; beyond, IVF with about 4 sqrt(n) lists, its codes flat (tuned nprobe reaches any recall), 8-bit
    scalar-quantised (recall@10 0.98 at 1M), or product-quantised with dim/4 then dim/8 bytes a vector,
    re-ranked from a float16 copy on disk (PQ128 at 1M: recall@10 0.55 alone, 0.99 re-ranked). When nothing
    fits, the smallest is taken and the reason says so.
    """
    budget = max_memory if max_memory is not None else default_max_memory()
    size = _human_bytes(budget)
    if n_vectors < AUTO_IVF_MIN_VECTORS:
        # Too few to train lists and codebooks well (PQ alone needs 256 per sub-quantizer), and at most
        # ~200 MB exact: exact search whatever the budget.
        flat = index_memory_bytes(DEFAULT_FACTORY, n_vectors, dim)
        within = "within" if flat <= budget else "over"
        return IndexChoice(DEFAULT_FACTORY, f"{n_vectors:,} vectors: exact search ({_human_bytes(flat)}, {within} the "
                                            f"{size} budget; below {AUTO_IVF_MIN_VECTORS:,} vectors too few to train "
                                            "IVF lists or product codes)")
    nlist = min(MAX_AUTO_NLIST, 2 ** round(math.log2(4 * math.sqrt(max(n_vectors, 64)))))
    ladder = [f"IVF{nlist},Flat", f"IVF{nlist},SQ8"]
    ladder += [f"IVF{nlist},PQ{m}" for m in (dim // 4, dim // 8) if m >= 1 and dim % m == 0]
    for factory in ladder:
        need = index_memory_bytes(factory, n_vectors, dim)
        if need <= budget:
            skipped = [f for f in ladder[: ladder.index(factory)]]
            why = (f"; {', '.join(skipped)} would need "
                   f"{', '.join(_human_bytes(index_memory_bytes(f, n_vectors, dim)) for f in skipped)}") if skipped else ""
            rerank = ", re-ranked from a float16 copy on disk" if ",PQ" in factory else ""
            return IndexChoice(factory, f"{n_vectors:,} vectors of {dim}: {factory}{rerank} needs "
                                        f"{_human_bytes(need)}, within the {size} budget{why}")
    factory = ladder[-1]
    return IndexChoice(factory, f"{n_vectors:,} vectors of {dim}: even {factory} needs "
                                f"{_human_bytes(index_memory_bytes(factory, n_vectors, dim))}, over the {size} "
                                "budget; it is the smallest type offered (searches page it in from disk)")


def choose_factory(n_vectors: int, dim: int = 512, max_memory: int | None = None) -> str:
    """The FAISS factory string of `choose_index` (see there)."""
    return choose_index(n_vectors, dim, max_memory).factory


# Lists of auto's IVF types: 4 sqrt(n), as FAISS advises, up to this many. Adding a vector scores it against
# every list's centroid (nlist x dim multiply-adds): at 10M vectors, 16,384 lists would cost a 2-core machine
# an hour of assignment (measured 27 GFlops, loaded), 4,096 a quarter of that; queries then scan longer
# lists (2,400 vectors each at 10M), still milliseconds.
MAX_AUTO_NLIST = 4096


# The default memory budget of `--index-type auto`: this share of the machine's RAM.
DEFAULT_MEMORY_SHARE = 0.25


def default_max_memory() -> int:
    """DEFAULT_MEMORY_SHARE of this machine's physical memory, in bytes."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a 16 GiB machine
        total = 16 << 30
    return int(total * DEFAULT_MEMORY_SHARE)


_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes of a size such as 1.5GiB, 800M, 2G, 512KiB or 1000000 (K/M/G/T count in 1024s, as RAM is
    sold); ValueError with a plain reason otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size: write a number with K, M, G or T (e.g. 1.5GiB, 800M)")
    unit = match["unit"].upper().rstrip("B").rstrip("I")
    value = float(match["number"]) * _UNITS[unit]
    if value < 1:
        raise ValueError(f"{text!r}: a memory budget must be at least one byte")
    if not unit and value < _UNITS["K"]:
        # A bare number counts bytes; one this small is a unit forgotten (1.5 for 1.5G), not a budget.
        raise ValueError(f"{text!r} would be {int(value)} bytes: write the unit (e.g. {match['number']}G or "
                         f"{match['number']}M)")
    return int(value)


def _human_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def needs_rerank(factory: str) -> bool:
    """Whether a store of `factory` keeps a float16 copy of its vectors to re-rank its answers: product
    quantisation alone reaches recall@10 0.27-0.55 on 512-d audio vectors, 0.79-0.99 re-ranked."""
    return bool(re.search(r"(?:^|,)PQ\d+", factory))


# A re-ranked search scores this many candidates per query exactly (at least; k when larger).
RERANK_CANDIDATES = 100


# The GPU k-selection handles k (and nprobe) up to 2048; larger ones are answered on CPU.
GPU_MAX_K = 2048
# "HNSW32", "HNSW32,Flat", "IDMap2,HNSW32,Flat": graphs over raw vectors, which CAGRA can build.
_HNSW_FLAT = re.compile(r"^(?:IDMap2?,)?HNSW(?P<m>\d+)(?:,Flat)?$")


class FaissGpu:
    """A GPU that FAISS builds and searches on: its number and its resources (memory pool, streams).

    Resources are not thread-safe (one scratch memory, one stream): every use holds `lock`, so an Engine
    serving several threads queues its GPU searches rather than corrupting them.
    """

    def __init__(self, device: int, resources: Any):
        self.device = device
        self.resources = resources
        self.lock = threading.Lock()

    @property
    def has_cagra(self) -> bool:
        """Whether the installed faiss builds CAGRA graphs (faiss-gpu with cuVS)."""
        import faiss

        return hasattr(faiss, "GpuIndexCagra")


_GPUS: dict[int, FaissGpu] = {}
_GPU_LOCK = threading.Lock()


def faiss_gpu(device: int = 0) -> FaissGpu:
    """The process's FaissGpu for GPU `device`, created once (its resources reserve GPU memory).

    Raises DeviceError when the installed faiss has no GPU support or no such GPU.
    """
    import faiss

    from indexer.errors import DeviceError

    if not hasattr(faiss, "StandardGpuResources"):
        raise DeviceError("the installed faiss has no GPU support (pip install 'resound[gpu]')")
    if device >= faiss.get_num_gpus():
        raise DeviceError(f"faiss sees {faiss.get_num_gpus()} GPU(s), not GPU {device}")
    with _GPU_LOCK:
        if device not in _GPUS:
            _GPUS[device] = FaissGpu(device, faiss.StandardGpuResources())
        return _GPUS[device]


class VectorStore:
    """One FAISS index of unit vectors keyed by int64 ids (see the module docstring for GPUs)."""

    def __init__(self, index: faiss.Index, factory: str):  # noqa: F821
        self.index = index
        self.factory = factory
        self.search_params: dict[str, int] = {}
        self.gpu: FaissGpu | None = None
        self._gpu_index: Any = None  # the GPU copy of `index`, None until searched (and after a change)
        self.gpu_note: str | None = None  # why this store searches on CPU although it has a GPU
        self.filter_gpu_note: str | None = None  # why filtered searches run on CPU although it has a GPU
        # The last filter's selector and IVF per-list match counts, by the identity of its id array (an
        # Engine passes the same array for repeated queries with one filter); the IVF lists' ids.
        self._filter_state: _FilterState | None = None
        self._list_ids: tuple[np.ndarray, np.ndarray] | None = None
        # A lean id map's ids sorted (a view of the map when it is sorted) and their positions (None: in order).
        self._sorted_ids: tuple[np.ndarray, np.ndarray | None] | None = None

    def to_gpu(self, gpu: FaissGpu | None) -> VectorStore:
        """Search, train and convert on `gpu` from now on (None: CPU again); returns the store itself."""
        self.gpu, self._gpu_index, self.gpu_note, self.filter_gpu_note = gpu, None, None, None
        return self

    @classmethod
    def create(cls, dim: int, factory: str = DEFAULT_FACTORY) -> VectorStore:
        import faiss

        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        ivf = _ivf(index)
        if ivf is not None:
            # Arbitrary int64 ids (catalog row ids) must be reconstructable and removable.
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return cls(index, factory)

    @classmethod
    def load(cls, path: Path, factory: str, mmap: bool = False) -> VectorStore:
        """Read a store; `mmap` maps it instead of reading it (indexes larger than RAM would like)."""
        import faiss

        # IVF lists are mapped by IO_FLAG_MMAP, flat codes (flat, HNSW storage) by IO_FLAG_MMAP_IFC; the
        # two flags together fail on IVF files (faiss 1.15), so the type decides.
        flags = (faiss.IO_FLAG_MMAP if "IVF" in factory else faiss.IO_FLAG_MMAP_IFC) if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as e:
            raise IndexCorruptError(f"{path}: unreadable FAISS index ({str(e).splitlines()[0][:160]})") from e
        # A mapped file is a sealed one, never changed: it needs no id -> position hash map (see _lean_id_map).
        return cls(_lean_id_map(index) if mmap else index, factory)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def kind(self) -> str:
        """'flat', 'ivf' or 'hnsw': what search parameters apply."""
        if _ivf(self.index) is not None:
            return "ivf"
        return "hnsw" if "HNSW" in self.factory else "flat"

    def train(self, vectors: np.ndarray) -> None:
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def set_search_params(self, params: dict[str, int]) -> None:
        """nprobe (IVF) or efSearch (HNSW); exact indexes take none."""
        import faiss

        self.search_params = dict(params)
        if params:
            faiss.ParameterSpace().set_index_parameters(self.index, _param_string(params))
        if self._gpu_index is not None:
            self._set_gpu_params(self._gpu_index)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        ids = np.asarray(list(ids), dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids):
            self.index.add_with_ids(vectors, ids)
            self._gpu_index = self._filter_state = self._list_ids = None

    def remove(self, ids: Iterable[int]) -> int:
        """Remove vectors by id; returns how many were removed."""
        import faiss

        ids = np.asarray(list(ids), dtype=np.int64)
        if not len(ids):
            return 0
        self._gpu_index = self._filter_state = self._list_ids = None
        if self.kind == "hnsw":
            return self._rebuild_without(ids)  # HNSW graphs cannot drop nodes
        if self.kind == "ivf":
            return int(self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def reconstructable(self) -> VectorStore:
        """Make vectors readable back by id; returns the store itself.

        Sealed IVF files are written without their id -> entry map (indexer/segments.py): reading it costs an
        open 25 ms per 100k vectors, and a query never needs it. It is built from the lists' ids (read, never
        written: the lists may be memory-mapped) the first time a vector is read back.
        """
        import faiss

        ivf = _ivf(self.index)
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return self

    def without_id_map(self) -> VectorStore:
        """Drop an IVF index's id -> entry map (before it is sealed; see `reconstructable`); returns the store."""
        import faiss

        ivf = _ivf(self.index)
        if ivf is not None:
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        return self

    def _rebuild_without(self, ids: np.ndarray) -> int:
        keep = np.setdiff1d(self.ids(), ids)
        removed = self.ntotal - len(keep)
        self.index = self._filled(self.factory, keep, self.reconstruct(keep)).index
        self.set_search_params(self.search_params)
        return removed

    def search(self, queries: np.ndarray, k: int, among: np.ndarray | None = None) -> SearchResult:
        """The k best ids for each query; with `among` (ids), only those ids are candidates, selected inside
        the FAISS search (see `search_among`), so k come back whenever k of them are in the store."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        if among is not None:
            return self.reconstructable().search_among(queries, k, among)
        k = max(1, min(int(k), max(self.ntotal, 1)))
        gpu_index = self._gpu_copy() if k <= GPU_MAX_K else None
        if gpu_index is not None:
            try:
                with self.gpu.lock:  # type: ignore[union-attr]
                    scores, ids = gpu_index.search(queries, k)
                return SearchResult(scores, ids)
            except RuntimeError as e:  # out of GPU memory, or a limit of this faiss: CPU from now on
                self._gpu_index, self.gpu_note = None, f"searching on CPU after a GPU error ({_first_line(e)})"
        scores, ids = self.index.search(queries, k)
        return SearchResult(scores, ids)

    def search_excluding(self, queries: np.ndarray, k: int, excluded: Any) -> SearchResult:
        """The k best ids for each query among those `excluded` (an object with a FAISS `selector`
        attribute) admits, selected inside the FAISS search with the store's search parameters."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.kind == "ivf":
            params = {"nprobe": self.search_params.get("nprobe", int(_ivf(self.index).nprobe))}
        elif self.kind == "hnsw":
            params = {"efSearch": self.search_params.get("efSearch", 16)}
        else:
            params = {}
        return self._selector_search(queries, k, excluded, params)

    def search_among(self, queries: np.ndarray, k: int, among: np.ndarray, exact: bool | None = None) -> SearchResult:
        """Filtered search: the k best of the ids `among` for each query (fewer only when fewer are stored).

        Whichever is cheaper by the cost model in `filtered_plan`: exact scores over the matching vectors
        (read back with reconstruct_batch), or the index's own search with an id selector inside it, widened
        because the parameters were tuned for unfiltered recall and the selector drops the other ids:
        IVF probes the nearest lists that hold matching vectors until it has scanned as many matching
        vectors as an unfiltered search scans vectors (twice that, and at least IVF_FILTER_MIN_SCAN), so a
        filter that follows the clusters (a folder of one kind of sound) is searched where its vectors are;
        HNSW walks with efSearch raised by 4/selectivity. A selector search that comes back short is
        widened, then answered exactly.
        `exact` forces one way (tests and bench/filtered_search.py).
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        among = np.asarray(among, dtype=np.int64)
        if len(among) > 1 and not (among[1:] > among[:-1]).all():
            among = np.unique(among)  # (a sorted, unique array is kept as is: its identity keys the cache)
        k = max(1, int(k))
        want = min(k, len(among))
        if want == 0 or self.ntotal == 0:
            return _empty_result(len(queries), k)
        plan = filtered_plan(self, len(among)) if exact is None else ("exact" if exact else "selector")
        if plan == "selector":
            state = self._filter_for(among)
            if self.kind == "ivf" and self._plain_ivf():
                factor = IVF_FILTER_FACTOR
                while True:
                    result, everything = self._ivf_probed_search(queries, k, state, factor)
                    if everything or (result.ids[:, :want] >= 0).all():
                        return result
                    factor *= 4
            params = self._filtered_params(len(among) / self.ntotal, k)
            while True:
                result = self._selector_search(queries, k, state.selector, params)
                if (result.ids[:, :want] >= 0).all() or self.kind == "flat":
                    return result
                widened = self._widened(params)
                if widened is None:
                    break  # every list probed, or the walk as wide as it goes: exact over the matches
                params = widened
        try:
            state = self._filter_for(among)
            if state.vectors is None and len(among) * self.dim * 4 <= FILTER_VECTOR_CACHE_BYTES:
                state.vectors = self.read_back(among)  # the next query with this filter reuses them
            return _exact_among(self.read_back, queries, k, among, state.vectors)
        except RuntimeError:
            # An id the catalog has and this generation lacks (a build committed meanwhile): score the
            # matching ids that are stored.
            return _exact_among(self.read_back, queries, k, np.intersect1d(among, self.ids()))

    def _filter_for(self, among: np.ndarray) -> _FilterState:
        if self._filter_state is None or self._filter_state.among is not among:
            self._filter_state = _FilterState(among)
        return self._filter_state

    def _plain_ivf(self) -> bool:
        """An IVF index searched as it is (no transform of the queries before its lists)."""
        import faiss

        return isinstance(faiss.downcast_index(self.index), faiss.IndexIVF)

    def _list_counts(self, state: _FilterState) -> np.ndarray:
        """How many of the filter's ids each IVF list holds."""
        if state.list_counts is None:
            ivf = _ivf(self.index)
            if self._list_ids is None:
                lists = ivf.invlists
                sizes = np.array([lists.list_size(i) for i in range(ivf.nlist)], dtype=np.int64)
                parts = [faiss_ids(lists, i) for i in range(ivf.nlist) if sizes[i]]
                all_ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
                self._list_ids = (all_ids, np.repeat(np.arange(ivf.nlist), sizes))
            all_ids, list_of = self._list_ids
            top = max(int(all_ids.max(initial=0)), int(state.among[-1])) + 1
            member = np.zeros(top, dtype=bool)
            member[state.among[state.among >= 0]] = True
            hit = member[all_ids] if len(all_ids) else np.zeros(0, dtype=bool)
            state.list_counts = np.bincount(list_of[hit], minlength=ivf.nlist)
        return state.list_counts

    def _ivf_probed_search(self, queries: np.ndarray, k: int, state: _FilterState,
                           factor: float) -> tuple[SearchResult, bool]:
        """An IVF search with the selector over the nearest lists that hold matching vectors, as many as it
        takes to scan `factor` x (tuned nprobe / nlist) x ntotal of them; also whether that was every list
        holding one (the search was then exhaustive over the matches)."""
        import faiss

        ivf = _ivf(self.index)
        nlist = int(ivf.nlist)
        counts = self._list_counts(state)
        base = self.search_params.get("nprobe", int(ivf.nprobe))
        target = max(k, factor * base * self.ntotal / nlist, factor / IVF_FILTER_FACTOR * IVF_FILTER_MIN_SCAN)
        scores, order = ivf.quantizer.search(queries, nlist)  # every list, nearest centroid first
        probes, everything = [], True
        for row in order:
            row = row[row >= 0]
            holding = row[counts[row] > 0]
            taken = int(np.searchsorted(np.cumsum(counts[holding]), target)) + 1
            everything = everything and taken >= len(holding)
            probes.append(holding[:taken])
        width = max(1, max(len(p) for p in probes))
        assign = np.full((len(queries), width), -1, dtype=np.int64)  # -1: no list (faiss skips it)
        centroid_scores = np.zeros((len(queries), width), dtype=np.float32)
        for i, p in enumerate(probes):
            assign[i, : len(p)] = p
            position = np.empty(nlist, dtype=np.int64)
            position[order[i][order[i] >= 0]] = np.arange(int((order[i] >= 0).sum()))
            centroid_scores[i, : len(p)] = scores[i][position[p]]
        params = faiss.SearchParametersIVF(sel=state.selector.selector, nprobe=width)
        if self.gpu is not None and self.filter_gpu_note is None:
            self.filter_gpu_note = "filtered IVF searches run on CPU (they probe the lists holding the matches)"
        kk = min(k, max(self.ntotal, 1))
        found_scores = np.empty((len(queries), kk), dtype=np.float32)
        found_ids = np.empty((len(queries), kk), dtype=np.int64)
        # The C++ method: faiss's Python wrapper of search_preassigned takes no search parameters.
        ivf.search_preassigned_c(len(queries), faiss.swig_ptr(queries), kk, faiss.swig_ptr(assign),
                                 faiss.swig_ptr(centroid_scores), faiss.swig_ptr(found_scores),
                                 faiss.swig_ptr(found_ids), False, params)
        return _padded(SearchResult(found_scores, found_ids), k), everything

    def _filtered_params(self, selectivity: float, k: int) -> dict[str, int]:
        """nprobe / efSearch for a selector search over a fraction `selectivity` of the vectors: the tuned
        value divided by it, so that about as many matching vectors are scanned as unfiltered search scans."""
        if self.kind == "ivf":
            nlist = int(_ivf(self.index).nlist)
            base = self.search_params.get("nprobe", int(_ivf(self.index).nprobe))
            return {"nprobe": min(nlist, max(1, math.ceil(base / selectivity)))}
        if self.kind == "hnsw":
            base = self.search_params.get("efSearch", 16)
            return {"efSearch": min(MAX_FILTERED_EF, max(k, math.ceil(FILTERED_EF_FACTOR * base / selectivity)))}
        return {}

    def _widened(self, params: dict[str, int]) -> dict[str, int] | None:
        if "nprobe" in params:
            nlist = int(_ivf(self.index).nlist)
            return None if params["nprobe"] >= nlist else {"nprobe": min(nlist, 4 * params["nprobe"])}
        if "efSearch" in params:
            return None if params["efSearch"] >= MAX_FILTERED_EF else {"efSearch": min(MAX_FILTERED_EF, 4 * params["efSearch"])}
        return None

    def _selector_search(self, queries: np.ndarray, k: int, selector: IdSelector,
                         params: dict[str, int]) -> SearchResult:
        """One search with `selector` inside FAISS: on the GPU copy where faiss takes selectors there,
        else (and from then on, for filtered searches only) on the CPU index."""
        import faiss

        if self.kind == "ivf":
            search_params = faiss.SearchParametersIVF(sel=selector.selector, nprobe=params["nprobe"])
        elif self.kind == "hnsw":
            search_params = faiss.SearchParametersHNSW(sel=selector.selector, efSearch=params["efSearch"])
        else:
            search_params = faiss.SearchParameters(sel=selector.selector)
        kk = min(k, max(self.ntotal, 1))
        gpu_index = self._gpu_copy() if kk <= GPU_MAX_K and self.filter_gpu_note is None else None
        if gpu_index is not None and params.get("nprobe", 0) <= GPU_MAX_K:
            try:
                with self.gpu.lock:  # type: ignore[union-attr]
                    scores, ids = gpu_index.search(queries, kk, params=search_params)
                return _padded(SearchResult(scores, ids), k)
            except (RuntimeError, TypeError) as e:
                self.filter_gpu_note = f"filtered searches run on CPU ({_first_line(e)})"
        scores, ids = self.index.search(queries, kk, params=search_params)
        return _padded(SearchResult(scores, ids), k)

    def _gpu_copy(self) -> Any:
        """The GPU copy of the index to search, cloned on first use; None to search on CPU."""
        if self.gpu is None or self.gpu_note is not None or self.ntotal == 0:
            return None
        if self.search_params.get("nprobe", 0) > GPU_MAX_K:
            return None
        if self._gpu_index is None:
            if self.kind == "hnsw":
                # CAGRA searches differently (itopk, not efSearch): the tuned graph is searched on CPU.
                self.gpu_note = "HNSW indexes are searched on CPU"
                return None
            try:
                with self.gpu.lock:
                    self._gpu_index = _cpu_to_gpu(self.gpu, self.index)
            except RuntimeError as e:  # an index type the GPU cannot hold, or no memory for it: CPU it is
                self.gpu_note = f"{self.factory} is searched on CPU ({_first_line(e)})"
                return None
            self._set_gpu_params(self._gpu_index)
        return self._gpu_index

    def _set_gpu_params(self, gpu_index: Any) -> None:
        import faiss

        if self.search_params:
            with self.gpu.lock:  # type: ignore[union-attr]
                faiss.GpuParameterSpace().set_index_parameters(gpu_index, _param_string(self.search_params))

    def ids(self) -> np.ndarray:
        """All ids in the store (IDMap indexes keep them in `id_map`, IVF ones in their inverted lists)."""
        import faiss

        ivf = _ivf(self.index)
        if ivf is None:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(ivf.nlist) if lists.list_size(i)]
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def reconstruct(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of `ids` (IDMap2 keeps the id -> vector map), (n, dim)."""
        if _is_lean(self.index):
            return self.read_back(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64))
        self.reconstructable()
        rows = [self.index.reconstruct(int(i)) for i in ids]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def read_back(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids`, (n, dim) float32, in blocks (RuntimeError on an id not stored)."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not _is_lean(self.index):
            self.reconstructable()
            return _reconstructed(self.index, ids)
        import faiss

        stored, order = self.sorted_ids(), self._sorted_ids[1]  # type: ignore[index]
        at = np.minimum(np.searchsorted(stored, ids), len(stored) - 1)
        if not np.array_equal(stored[at], ids):
            raise RuntimeError(f"id {int(ids[stored[at] != ids][0])} is not stored here")
        positions = at if order is None else order[at]
        inner = faiss.downcast_index(self.index.index)
        if not isinstance(inner, faiss.IndexFlat):
            return inner.reconstruct_batch(np.ascontiguousarray(positions))
        # The rows themselves (mapped): one copy of what is read, where reconstruct_batch gathers the codes
        # into a buffer first and decodes them into a second.
        rows = faiss.rev_swig_ptr(inner.get_xb(), inner.ntotal * self.dim).reshape(inner.ntotal, self.dim)
        return rows[positions]

    def sorted_ids(self) -> np.ndarray:
        """Every stored id, sorted: for a sealed flat file whose ids were written in order, a view of its id
        map (no copy)."""
        import faiss

        if not _is_lean(self.index):
            return self.ids()
        if self._sorted_ids is None:
            stored = faiss.rev_swig_ptr(self.index.id_map.data(), self.index.ntotal) if self.index.ntotal else \
                np.zeros(0, dtype=np.int64)
            if len(stored) < 2 or bool((stored[1:] > stored[:-1]).all()):
                self._sorted_ids = (stored, None)
            else:  # a file of an older layout: its ids in insertion order (8 more bytes a vector)
                order = np.argsort(stored, kind="stable")
                self._sorted_ids = (stored[order], order)
        return self._sorted_ids[0]

    def converted(self, factory: str, train_size: int = 200_000, seed: int = 0) -> VectorStore:
        """The same vectors and ids in a new index of `factory`, trained on a seeded sample of them.

        On a store with a GPU, an IVF type is trained and filled there and an HNSW type built with CAGRA
        (where faiss has it); the result is a CPU index either way, with the same GPU for searching.
        """
        ids = self.ids()
        return self._filled(factory, ids, self.reconstruct(ids), train_size, seed)  # reconstruct: id map built

    def _filled(self, factory: str, ids: np.ndarray, vectors: np.ndarray, train_size: int = 200_000,
                seed: int = 0) -> VectorStore:
        """A new store of `factory` holding `vectors` under `ids` (trained on a seeded sample first)."""
        fresh = VectorStore.create(self.dim, factory)
        sample = None
        if not fresh.is_trained:
            ivf = _ivf(fresh.index)
            needed = int(ivf.nlist) if ivf is not None else 1
            if len(vectors) < needed:
                raise IndexTypeError(f"index type {factory} needs at least {needed} vectors to train "
                                     f"(39 x {needed} for good lists); the index has {len(vectors)}")
            rng = np.random.default_rng(seed)
            sample = vectors if len(vectors) <= train_size else vectors[rng.choice(len(vectors), train_size, replace=False)]
        if self.gpu is not None:
            with self.gpu.lock:
                built = _build_on_gpu(self.gpu, self.dim, factory, ids, vectors, sample)
            if built is not None:
                return VectorStore(built, factory).to_gpu(self.gpu)
        if sample is not None:
            fresh.train(sample)
        for start in range(0, len(ids), 100_000):
            fresh.add(ids[start : start + 100_000], vectors[start : start + 100_000])
        return fresh.to_gpu(self.gpu)

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the complete new one, never a partial one."""
        import faiss

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


# Filtered search (VectorStore.search_among). Reading a vector back costs about this many scanned vectors
# (a hash lookup and a scattered copy in OpenMP threads against a BLAS scan: 1-5 us against 0.1-0.5 us on
# this project's busy 2-core machine), and a flat scan through an id selector twice an unfiltered one (it
# leaves the BLAS path: 245 against 110 ms at 1M, bench/filtered_search.py).
RECONSTRUCT_COST = 10.0
FLAT_SELECTOR_COST = 2.0
# Below this many matching vectors exact scoring is always chosen: microseconds, and recall 1.
EXACT_FILTER_MIN = 2048
# A filtered HNSW walk spends its candidate pool on non-matching nodes too, and needs a wider pool than
# efSearch / selectivity: 4x reached recall@10 >= 0.97 at 5-50% selectivity (tests/test_filters.py).
FILTERED_EF_FACTOR = 4
# The widest HNSW walk a filtered search tries before it scores the matching vectors exactly.
MAX_FILTERED_EF = 4096


def filtered_plan(store: VectorStore, matching: int) -> str:
    """'exact' or 'selector': the cheaper way to search `store` among `matching` of its vectors.

    Exact costs a product with the `matching` vectors (and reading them back, once per filter where they fit
    the cache, else every query). A selector search on a flat index scans everything; on IVF it
    scans the lists holding its quota of matches (about 1/selectivity times as many vectors); on HNSW it visits about efSearch/selectivity nodes of 2M neighbours.
    """
    n = max(store.ntotal, 1)
    if matching <= EXACT_FILTER_MIN:
        return "exact"
    # Read back once and kept with the filter (FILTER_VECTOR_CACHE_BYTES), the vectors cost one product per
    # query; too many to keep, every query reads them back.
    cached = matching * store.dim * 4 <= FILTER_VECTOR_CACHE_BYTES
    exact_cost = matching * (1.0 if cached else RECONSTRUCT_COST)
    selectivity = matching / n
    if store.kind == "ivf":
        ivf = _ivf(store.index)
        base = store.search_params.get("nprobe", int(ivf.nprobe))
        matches_scanned = max(IVF_FILTER_FACTOR * base * n / int(ivf.nlist), IVF_FILTER_MIN_SCAN)  # _ivf_probed_search
        selector_cost = min(n, matches_scanned / selectivity)
    elif store.kind == "hnsw":
        m = _hnsw_m(store.index)
        selector_cost = min(n, store._filtered_params(selectivity, 10)["efSearch"] * 2 * m)
    else:
        selector_cost = FLAT_SELECTOR_COST * n
    return "exact" if exact_cost <= selector_cost else "selector"


# Matching vectors read back for exact scoring are kept with the filter up to this size: repeated queries
# with one filter (paging, the page) then cost one matrix product. reconstruct_batch runs OpenMP threads and
# costs 1-5 us a vector on a busy 2-core machine, a scan 0.1-0.5 us.
FILTER_VECTOR_CACHE_BYTES = 256 * 2**20
# An IVF filtered search scans (this x unfiltered nprobe / nlist x ntotal) matching vectors; 2 kept recall@10
# >= 0.95 on random and cluster-aligned filters (tests/test_filters.py, bench/filtered_search.py).
IVF_FILTER_FACTOR = 2.0
# ... and at least this many: a filter that follows the clusters puts the matches far from most queries, where
# the centroid order is a coarser guide than near them; nprobe tuned on easy data can be 1 (recall@10 of a
# 10% cluster-aligned filter at 100k vectors, IVF1024 nprobe 1: 0.80 at 2x, 0.97 at 16x ~ 3,000 vectors).
IVF_FILTER_MIN_SCAN = 4096


@dataclass
class _FilterState:
    """A filter's ids (sorted) as a FAISS selector, and how many of them each IVF list holds (lazily)."""

    among: np.ndarray
    _selector: IdSelector | None = None
    list_counts: np.ndarray | None = None
    vectors: np.ndarray | None = None  # the matching vectors, read back for exact scoring

    @property
    def selector(self) -> IdSelector:
        if self._selector is None:
            self._selector = IdSelector(self.among)
        return self._selector


def faiss_ids(lists: Any, list_no: int) -> np.ndarray:
    """The ids stored in one inverted list."""
    import faiss

    return faiss.rev_swig_ptr(lists.get_ids(list_no), lists.list_size(list_no)).copy()


class IdSelector:
    """A FAISS id selector over a set of ids, with the arrays it points into kept alive.

    A bitmap (one bit per id up to the largest) where that is at most 64 MB, so membership is one load;
    else IDSelectorBatch (a hash set behind a Bloom filter).
    """

    MAX_BITMAP_BYTES = 64 * 2**20

    def __init__(self, ids: np.ndarray):
        import faiss

        ids = np.asarray(ids, dtype=np.int64)
        top = int(ids.max()) if len(ids) else 0
        if len(ids) and int(ids.min()) >= 0 and top // 8 + 1 <= self.MAX_BITMAP_BYTES:
            bits = np.zeros(top + 1, dtype=bool)
            bits[ids] = True
            self._data = np.packbits(bits, bitorder="little")
            self.selector = faiss.IDSelectorBitmap(len(self._data), faiss.swig_ptr(self._data))
        else:
            self._data = np.ascontiguousarray(ids)
            self.selector = faiss.IDSelectorBatch(len(self._data), faiss.swig_ptr(self._data))


def _hnsw_m(index: Any) -> int:
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    hnsw = getattr(faiss.downcast_index(inner), "hnsw", None)
    return int(hnsw.nb_neighbors(1)) if hnsw is not None else 32


def _reconstructed(index: Any, ids: np.ndarray) -> np.ndarray:
    """The stored vectors of `ids`, (n, dim) float32 (raises RuntimeError on an unknown id)."""
    return np.concatenate([index.reconstruct_batch(ids[i : i + 100_000]) for i in range(0, len(ids), 100_000)]) \
        if len(ids) else np.zeros((0, index.d), dtype=np.float32)


def _exact_among(read_back: Any, queries: np.ndarray, k: int, among: np.ndarray,
                 vectors: np.ndarray | None = None) -> SearchResult:
    """Exact inner-product top-k over the stored vectors of `among` (`vectors`, when already read back;
    else `read_back(ids)` reads them, raising RuntimeError on an unknown id)."""
    kk = min(k, len(among))
    result_ids = np.full((len(queries), k), -1, dtype=np.int64)
    result_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best = np.full((len(queries), 0), 0, dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(among), 100_000):  # bounded memory for large matching sets
        block = among[start : start + 100_000]
        block_vectors = read_back(block) if vectors is None else vectors[start : start + 100_000]
        scores = queries @ block_vectors.T
        block_ids = np.broadcast_to(block, scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        ids = np.concatenate([best, block_ids], axis=1)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if scores.shape[1] > kk else np.argsort(-scores, axis=1)
        best_scores = np.take_along_axis(scores, top, axis=1)
        best = np.take_along_axis(ids, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    result_scores[:, :kk] = np.take_along_axis(best_scores, order, axis=1)
    result_ids[:, :kk] = np.take_along_axis(best, order, axis=1)
    return SearchResult(result_scores, result_ids)


def _empty_result(n_queries: int, k: int) -> SearchResult:
    return SearchResult(np.full((n_queries, k), -np.inf, dtype=np.float32), np.full((n_queries, k), -1, dtype=np.int64))


def _padded(result: SearchResult, k: int) -> SearchResult:
    """`result` widened to k columns with empty slots (a store smaller than k answers fewer)."""
    have = result.ids.shape[1]
    if have >= k:
        return result
    padded = _empty_result(len(result.ids), k)
    padded.scores[:, :have], padded.ids[:, :have] = result.scores, result.ids
    return padded


def _param_string(params: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def _cpu_to_gpu(gpu: FaissGpu, index: Any) -> Any:
    """A GPU copy of a CPU index (IDMap2 wrappers stay on the host around a GPU flat index)."""
    import faiss

    ivf = _ivf(index)
    if ivf is None or isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.ArrayInvertedLists):
        return faiss.index_cpu_to_gpu(gpu.resources, gpu.device, index)
    # A memory-mapped sealed file: its lists are read into memory lists for the copy (the GPU needs them all
    # anyway), swapped in while it is made and dropped after; the mapped lists stay the index's own.
    mapped, owned = ivf.invlists, ivf.own_invlists
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    for list_no in range(ivf.nlist):
        size = mapped.list_size(list_no)
        if size:
            lists.add_entries(list_no, size, mapped.get_ids(list_no), mapped.get_codes(list_no))
    ivf.own_invlists = False
    ivf.replace_invlists(lists, False)
    try:
        return faiss.index_cpu_to_gpu(gpu.resources, gpu.device, index)
    finally:
        ivf.replace_invlists(mapped, owned)


def _build_on_gpu(gpu: FaissGpu, dim: int, factory: str, ids: np.ndarray, vectors: np.ndarray,
                  sample: np.ndarray | None) -> Any:
    """A CPU index of `factory` holding `vectors` under `ids`, computed on `gpu`; None when the GPU cannot
    build this type (flat indexes gain nothing from it, and HNSW needs CAGRA), or fails to."""
    import faiss

    hnsw = _HNSW_FLAT.match(factory)
    try:
        if hnsw is not None:
            m = int(hnsw["m"])
            # CAGRA needs more vectors than its intermediate graph's degree.
            if not gpu.has_cagra or len(vectors) <= 8 * m:
                return None
            return _cagra_as_hnsw(gpu, dim, m, ids, vectors)
        template = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if _ivf(template) is None:
            return None
        on_gpu = _cpu_to_gpu(gpu, template)
        if sample is not None:
            on_gpu.train(np.ascontiguousarray(sample, dtype=np.float32))
        for start in range(0, len(ids), 100_000):
            on_gpu.add_with_ids(np.ascontiguousarray(vectors[start : start + 100_000], dtype=np.float32),
                                np.ascontiguousarray(ids[start : start + 100_000], dtype=np.int64))
        index = faiss.index_gpu_to_cpu(on_gpu)
    except RuntimeError:  # a type or size the GPU does not take: the CPU builds it
        return None
    # The GPU copy has no id -> entry map; catalog ids must stay reconstructable and removable.
    _ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def _cagra_as_hnsw(gpu: FaissGpu, dim: int, m: int, ids: np.ndarray, vectors: np.ndarray) -> Any:
    """An IDMap2 over the HNSW graph CAGRA builds on the GPU (HNSW level 0 holds 2M neighbours)."""
    import faiss

    config = faiss.GpuIndexCagraConfig()
    config.device = gpu.device
    config.graph_degree = 2 * m
    config.intermediate_graph_degree = 4 * m
    cagra = faiss.GpuIndexCagra(gpu.resources, dim, faiss.METRIC_INNER_PRODUCT, config)
    cagra.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return with_ids(faiss.index_gpu_to_cpu(cagra), ids)  # an IndexHNSWCagra, searched by efSearch


def with_ids(index: Any, ids: np.ndarray) -> Any:
    """`index` (holding vectors 0..n-1) wrapped in an IndexIDMap2 that answers with `ids` instead.

    IndexIDMap2 only wraps empty indexes, so the wrapper is made around an empty one and given `index`.
    """
    import faiss

    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) != index.ntotal:
        raise ValueError(f"{len(ids)} ids for {index.ntotal} vectors")
    wrapper = faiss.IndexIDMap2(faiss.IndexFlat(index.d, index.metric_type))
    wrapper.index = index
    index.this.disown()  # the wrapper owns it now and frees it with itself
    wrapper.own_fields = True
    wrapper.referenced_objects = []
    faiss.copy_array_to_vector(ids, wrapper.id_map)
    wrapper.ntotal = index.ntotal
    wrapper.is_trained = index.is_trained
    wrapper.construct_rev_map()
    return wrapper


def _lean_id_map(index: Any) -> Any:
    """`index`, or for an IndexIDMap2 an IndexIDMap over the same inner index and ids: without the id ->
    position hash map that IndexIDMap2 builds on reading (~30 bytes a vector, 8 for the ids themselves),
    which a sealed file never needs (it is never changed; `VectorStore.read_back` finds positions in its
    sorted ids). A process holding 10M vectors in sealed files keeps ~300 MB less."""
    import faiss

    if type(index) is not faiss.IndexIDMap2:
        return index
    lean = faiss.IndexIDMap(faiss.IndexFlat(index.d, index.metric_type))
    lean.index = index.index
    index.own_fields = False  # the lean map owns the inner index (and its mapped file) now
    lean.own_fields = True
    lean.referenced_objects = []  # frees the placeholder flat index
    lean.id_map.swap(index.id_map)
    lean.ntotal = index.ntotal
    lean.is_trained = index.is_trained
    return lean  # `index`, with its hash map, is freed when the caller drops it


def _is_lean(index: Any) -> bool:
    import faiss

    return type(index) is faiss.IndexIDMap


def _ivf(index: faiss.Index):  # type: ignore[no-untyped-def]  # noqa: F821
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
