"""FAISS vector stores and the index directory's generations.

Every FAISS detail lives here. Vectors are L2-normalised and searched by inner product, i.e. cosine.
Each vector's FAISS id is the id of its catalog row (segment or file). A checkpoint writes every store
as generation N+1 (temporary file, fsync, `os.replace`), then the catalog commits "generation N+1" in
the same transaction as its rows; files of other generations are removed afterwards. A crash at any
point leaves the catalog naming a complete generation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from indexer.errors import IndexCorruptError

DEFAULT_FACTORY = "IDMap2,Flat"
METRIC = "inner_product"
STORE_NAMES = ("segments", "files")
_GENERATION_FILE = re.compile(r"^(?P<name>[a-z]+)\.(?P<gen>\d+)\.faiss$")


@dataclass(frozen=True)
class SearchResult:
    """Scores and ids of a batch of queries, best first; id -1 marks an empty slot."""

    scores: np.ndarray  # (n_queries, k) float32
    ids: np.ndarray  # (n_queries, k) int64


class VectorStore:
    """One FAISS index of unit vectors keyed by int64 ids."""

    def __init__(self, index: "faiss.Index", factory: str):  # noqa: F821
        self.index = index
        self.factory = factory

    @classmethod
    def create(cls, dim: int, factory: str = DEFAULT_FACTORY) -> "VectorStore":
        import faiss

        return cls(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT), factory)

    @classmethod
    def load(cls, path: Path, factory: str) -> "VectorStore":
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexCorruptError(f"{path}: unreadable FAISS index ({str(e).splitlines()[0][:160]})") from e
        return cls(index, factory)

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
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        k = max(1, min(int(k), max(self.ntotal, 1)))
        scores, ids = self.index.search(queries, k)
        return SearchResult(scores, ids)

    def ids(self) -> np.ndarray:
        """All ids in the store (IDMap indexes keep them in `id_map`)."""
        import faiss

        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def reconstruct(self, ids: Iterable[int]) -> np.ndarray:
        """The stored vectors of `ids` (IDMap2 keeps the id -> vector map), (n, dim)."""
        rows = [self.index.reconstruct(int(i)) for i in ids]
        return np.stack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the complete new one, never a partial one."""
        import faiss

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


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

    def load_stores(self, generation: int, dim: int, factory: str) -> dict[str, VectorStore]:
        """The stores of `generation` (empty new ones for generation 0)."""
        stores = {}
        for name in STORE_NAMES:
            path = self.store_path(name, generation)
            if generation == 0:
                stores[name] = VectorStore.create(dim, factory)
            elif not path.is_file():
                raise IndexCorruptError(f"{path}: missing, although the catalog names generation {generation}")
            else:
                stores[name] = VectorStore.load(path, factory)
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
