"""A stand-in for faiss's GPU API on machines without one, for testing resound's GPU code paths on CPU.

It keeps the behaviours of faiss-gpu that resound's logic depends on, so that a mistake in that logic
fails here as it would on a GPU: a GPU index answers search, train and add but keeps no id -> entry map
(an IVF copied back has none: `reconstruct` fails until it is rebuilt), k and nprobe stop at 2048, HNSW
cannot be cloned to a GPU, an id selector is refused, search parameters set on the CPU index after cloning do not reach the GPU copy
(GpuParameterSpace does), and CAGRA needs more vectors than its intermediate graph degree. The searching
itself is faiss on CPU, so results can be compared exactly.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

GPU_MAX_K = 2048


class StandardGpuResources:
    """Memory pools and streams of a GPU (nothing to hold here)."""


class FakeGpuIndex:
    """An index "on the GPU": a CPU clone behind the narrow interface GPU indexes offer."""

    def __init__(self, cpu: Any):
        self.cpu = cpu

    @property
    def d(self) -> int:
        return int(self.cpu.d)

    @property
    def ntotal(self) -> int:
        return int(self.cpu.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.cpu.is_trained)

    def train(self, x: np.ndarray) -> None:
        self.cpu.train(x)

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        self.cpu.add_with_ids(x, ids)

    def search(self, x: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if params is not None and params.sel is not None:
            # Modelled on a faiss-gpu whose GPU indexes take no id selector: resound must answer on CPU.
            raise RuntimeError("Error: IDSelector not supported on GPU")
        ivf = faiss.try_extract_index_ivf(self.cpu)
        if k > GPU_MAX_K or (ivf is not None and ivf.nprobe > GPU_MAX_K):
            raise RuntimeError(f"Error: k and nprobe must be <= {GPU_MAX_K} on GPU")
        return self.cpu.search(x, k)


def _chain(index: Any) -> list[Any]:
    """The index and the indexes it wraps (IDMap, pre-transforms)."""
    out = [faiss.downcast_index(index)]
    while hasattr(out[-1], "index") and out[-1].index is not None:
        out.append(faiss.downcast_index(out[-1].index))
    return out


def index_cpu_to_gpu(resources: StandardGpuResources, device: int, index: Any, options: Any = None) -> FakeGpuIndex:
    if any(isinstance(i, faiss.IndexHNSW) for i in _chain(index)):
        raise RuntimeError("Error in index_cpu_to_gpu: not implemented for this type of index")
    clone = faiss.clone_index(index)
    ivf = faiss.try_extract_index_ivf(clone)
    if ivf is not None:
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # GPU inverted lists keep no direct map
    return FakeGpuIndex(clone)


def index_gpu_to_cpu(index: Any) -> Any:
    if isinstance(index, GpuIndexCagra):
        return faiss.clone_index(index.graph)  # faiss-gpu returns an IndexHNSWCagra: an IndexHNSW
    return faiss.clone_index(index.cpu)


class GpuParameterSpace:
    def set_index_parameters(self, index: FakeGpuIndex, params: str) -> None:
        faiss.ParameterSpace().set_index_parameters(index.cpu, params)


class GpuClonerOptions:
    useFloat16 = False


def get_num_gpus() -> int:
    return 1


class GpuIndexCagraConfig:
    def __init__(self) -> None:
        self.device = 0
        self.graph_degree = 64
        self.intermediate_graph_degree = 128


class GpuIndexCagra:
    """Builds its graph on `train`, over vectors 0..n-1 (CAGRA takes no ids)."""

    def __init__(self, resources: StandardGpuResources, d: int, metric: int, config: GpuIndexCagraConfig):
        self.d, self.metric, self.config = d, metric, config
        self.graph: Any = None

    def train(self, x: np.ndarray) -> None:
        if len(x) <= self.config.intermediate_graph_degree:
            raise RuntimeError("cagra: the dataset must hold more vectors than intermediate_graph_degree")
        self.graph = faiss.IndexHNSWFlat(self.d, self.config.graph_degree // 2, self.metric)
        self.graph.add(np.ascontiguousarray(x, dtype=np.float32))


def install(monkeypatch: Any, cagra: bool = True) -> None:
    """Give the faiss module these GPU functions for the test (and forget GPUs resound opened before)."""
    import indexer.store

    names = ["StandardGpuResources", "index_cpu_to_gpu", "index_gpu_to_cpu", "GpuParameterSpace",
             "GpuClonerOptions", "get_num_gpus"] + (["GpuIndexCagra", "GpuIndexCagraConfig"] if cagra else [])
    for name in names:
        monkeypatch.setattr(faiss, name, globals()[name], raising=False)
    if not cagra:
        monkeypatch.delattr(faiss, "GpuIndexCagra", raising=False)
    monkeypatch.setattr(indexer.store, "_GPUS", {})
