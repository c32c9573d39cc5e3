"""FAISS vector stores and the index directory's generations.

Every FAISS detail lives here. Vectors are L2-normalised and searched by inner product, i.e. cosine.
Each vector's FAISS id is the id of its catalog row (segment or file). A checkpoint writes every store
as generation N+1 (temporary file, fsync, `os.replace`), then the catalog commits "generation N+1" in
the same transaction as its rows; files of other generations are removed afterwards. A crash at any
point leaves the catalog naming a complete generation.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

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


def choose_factory(n_vectors: int) -> str:
    """The FAISS factory string `--index-type auto` picks for a corpus of `n_vectors` windows.

    Exact search up to 100k vectors; IVF with about 4 sqrt(n) lists up to 2M (flat codes, so tuned
    nprobe reaches any recall); 8-bit scalar quantisation beyond, to keep the index in memory.
    """
    if n_vectors < AUTO_IVF_MIN_VECTORS:
        return DEFAULT_FACTORY
    nlist = 2 ** int(round(math.log2(4 * math.sqrt(n_vectors))))
    return f"IVF{nlist},Flat" if n_vectors < AUTO_SQ8_MIN_VECTORS else f"IVF{nlist},SQ8"


class VectorStore:
    """One FAISS index of unit vectors keyed by int64 ids."""

    def __init__(self, index: "faiss.Index", factory: str):  # noqa: F821
        self.index = index
        self.factory = factory
        self.search_params: dict[str, int] = {}

    @classmethod
    def create(cls, dim: int, factory: str = DEFAULT_FACTORY) -> "VectorStore":
        import faiss

        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        ivf = _ivf(index)
        if ivf is not None:
            # Arbitrary int64 ids (catalog row ids) must be reconstructable and removable.
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return cls(index, factory)

    @classmethod
    def load(cls, path: Path, factory: str, mmap: bool = False) -> "VectorStore":
        """Read a store; `mmap` maps it instead of reading it (indexes larger than RAM would like)."""
        import faiss

        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
        except RuntimeError as e:
            raise IndexCorruptError(f"{path}: unreadable FAISS index ({str(e).splitlines()[0][:160]})") from e
        return cls(index, factory)

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
            faiss.ParameterSpace().set_index_parameters(self.index, ",".join(f"{k}={v}" for k, v in params.items()))

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

    def remove(self, ids: Iterable[int]) -> int:
        """Remove vectors by id; returns how many were removed."""
        import faiss

        ids = np.asarray(list(ids), dtype=np.int64)
        if not len(ids):
            return 0
        if self.kind == "hnsw":
            return self._rebuild_without(ids)  # HNSW graphs cannot drop nodes
        if self.kind == "ivf":
            return int(self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def _rebuild_without(self, ids: np.ndarray) -> int:
        keep = np.setdiff1d(self.ids(), ids)
        removed = self.ntotal - len(keep)
        vectors = self.reconstruct(keep)
        fresh = VectorStore.create(self.dim, self.factory)
        fresh.add(keep, vectors)
        self.index = fresh.index
        self.set_search_params(self.search_params)
        return removed

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        k = max(1, min(int(k), max(self.ntotal, 1)))
        scores, ids = self.index.search(queries, k)
        return SearchResult(scores, ids)

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
        rows = [self.index.reconstruct(int(i)) for i in ids]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def converted(self, factory: str, train_size: int = 200_000, seed: int = 0) -> "VectorStore":
        """The same vectors and ids in a new index of `factory`, trained on a seeded sample of them."""
        ids = self.ids()
        vectors = self.reconstruct(ids)
        fresh = VectorStore.create(self.dim, factory)
        if not fresh.is_trained:
            ivf = _ivf(fresh.index)
            needed = int(ivf.nlist) if ivf is not None else 1
            if len(vectors) < needed:
                raise IndexTypeError(f"index type {factory} needs at least {needed} vectors to train "
                                     f"(39 x {needed} for good lists); the index has {len(vectors)}")
            rng = np.random.default_rng(seed)
            sample = vectors if len(vectors) <= train_size else vectors[rng.choice(len(vectors), train_size, replace=False)]
            fresh.train(sample)
        for start in range(0, len(ids), 100_000):
            fresh.add(ids[start : start + 100_000], vectors[start : start + 100_000])
        return fresh

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the complete new one, never a partial one."""
        import faiss

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _ivf(index: "faiss.Index"):  # type: ignore[no-untyped-def]  # noqa: F821
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


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

    def load_stores(self, generation: int, dim: int, factory: str, mmap: bool = False) -> dict[str, VectorStore]:
        """The stores of `generation` (empty new ones for generation 0).

        `factory` is the segment store's; file vectors (one per file) always use exact search.
        """
        stores = {}
        for name in STORE_NAMES:
            path = self.store_path(name, generation)
            store_factory = factory if name == "segments" else DEFAULT_FACTORY
            if generation == 0:
                stores[name] = VectorStore.create(dim, store_factory)
            elif not path.is_file():
                raise IndexCorruptError(f"{path}: missing, although the catalog names generation {generation}")
            else:
                stores[name] = VectorStore.load(path, store_factory, mmap=mmap and name == "segments")
                if stores[name].dim != dim:
                    raise IndexCorruptError(f"{path}: dimension {stores[name].dim}, the catalog says {dim}")
        return stores

    def save_stores(self, stores: dict[str, VectorStore], generation: int) -> None:
        for name, store in stores.items():
            store.save(self.store_path(name, generation))

    def remove_other_generations(self, keep: int) -> None:
        """Delete FAISS files of every generation but `keep`, and stale temporary files."""
        for path in self.root.iterdir():
            match = _GENERATION_FILE.match(path.name)
            stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
            if (match and int(match["gen"]) != keep) or stale_tmp:
                path.unlink(missing_ok=True)
