"""Index types beyond exact search: conversion, training on a sample, tuned recall, removal, memory mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer import BuildOptions, Index, build_index
from indexer.encoders.base import l2_normalize
from indexer.store import IndexTypeError, VectorStore, choose_factory
from indexer.tuning import exact_neighbours, recall_at, tune_search_params
from tests import helpers


def clustered(n: int, dim: int, clusters: int, seed: int, noise: float = 1.0) -> np.ndarray:
    """Unit vectors around `clusters` centres, the shape real embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return l2_normalize(centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)))


def test_auto_choice_by_size() -> None:
    budget = 6 << 30  # a quarter of a 24 GiB machine (tests/test_memory_budget.py: smaller budgets)
    assert choose_factory(5_000, 512, budget) == "IDMap2,Flat"
    assert choose_factory(1_000_000, 512, budget) == "IVF4096,Flat"
    assert choose_factory(5_000_000, 512, budget) == "IVF4096,SQ8"


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQ8", "IDMap2,HNSW16,Flat"])
def test_converted_index_reaches_target_recall_against_exact_search(factory: str, tmp_path: Path) -> None:
    everything = clustered(20_300, 64, 1000, seed=0)
    vectors, queries = everything[:20_000], everything[20_000:]  # 300 held-out queries of the same distribution
    ids = np.arange(20_000, dtype=np.int64) * 7 + 3
    flat = VectorStore.create(64)
    flat.add(ids, vectors)
    store = flat.converted(factory)
    assert store.ntotal == 20_000 and np.array_equal(store.ids(), ids)
    tuning = tune_search_params(store, target_recall=0.95)
    assert tuning.recall_at_10 >= 0.95 and tuning.params

    # Held-out queries (not stored vectors) confirm the tuned recall against exact search.
    truth = ids[exact_neighbours(vectors, queries, 10)]
    assert recall_at(store.search(queries, 10).ids, truth) >= 0.93

    removed = store.remove(ids[:10])
    assert removed == 10 and store.ntotal == 19_990 and not set(ids[:10]) & set(store.search(vectors[:10], 1).ids[:, 0])
    store.save(tmp_path / "s.faiss")
    mapped = VectorStore.load(tmp_path / "s.faiss", factory, mmap=True)
    mapped.set_search_params(tuning.params)
    np.testing.assert_array_equal(mapped.search(queries, 10).ids, store.search(queries, 10).ids)


def test_build_with_an_ivf_index_type(tmp_path: Path, clap_checkpoint: Path) -> None:
    corpus = tmp_path / "corpus"
    for i in range(3):
        helpers.write_audio(corpus / f"t{i}.wav", helpers.chirp(200 + 100 * i, 4000, 40.0))  # 4 windows each
    with pytest.raises(IndexTypeError, match="IVF64,Flat needs at least 64 vectors"):
        build_index(corpus, tmp_path / "bad", BuildOptions(model=str(clap_checkpoint), index_type="IVF64,Flat"))
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(clap_checkpoint), index_type="IVF2,Flat"))
    index = Index(tmp_path / "index")
    provenance = index.provenance()
    assert provenance.faiss_factory == "IVF2,Flat"
    assert provenance.search_params["nprobe"] in (1, 2) and provenance.search_params["recall_at_10"] >= 0.95
    stores = index.load_stores()
    assert stores["segments"].kind == "ivf" and stores["segments"].ntotal == 12
    index.close()


def test_compact_retrains_and_can_return_to_exact_search(tmp_path: Path, clap_checkpoint: Path) -> None:
    from click.testing import CliRunner

    from indexer.cli import main

    corpus = tmp_path / "corpus"
    for i in range(3):
        helpers.write_audio(corpus / f"t{i}.wav", helpers.chirp(200 + 100 * i, 4000, 40.0))
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(clap_checkpoint), index_type="IVF2,Flat"))
    before = Index(tmp_path / "index").load_stores()["segments"]
    ids = before.ids()
    vectors = before.reconstruct(ids)
    result = CliRunner().invoke(main, ["compact", "--index", str(tmp_path / "index"), "--index-type", "auto"])
    assert result.exit_code == 0, result.output
    assert "12 vectors, IVF2,Flat -> IDMap2,Flat" in result.stdout  # auto: 12 vectors need no IVF
    index = Index(tmp_path / "index")
    after = index.load_stores()["segments"]
    assert index.provenance().faiss_factory == "IDMap2,Flat" and index.generation() == 2
    np.testing.assert_array_equal(after.search(vectors[:3], 5).ids, ids[exact_neighbours(vectors, vectors[:3], 5)])
