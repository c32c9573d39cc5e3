"""FAISS stores against exact numpy references, removal by id, atomic generations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.encoders.base import l2_normalize
from indexer.segments import IndexDirectory
from indexer.store import VectorStore


def test_search_equals_brute_force_inner_product() -> None:
    rng = np.random.default_rng(0)
    vectors = l2_normalize(rng.standard_normal((500, 32)))
    ids = rng.permutation(10_000)[:500]
    store = VectorStore.create(32)
    store.add(ids, vectors)
    queries = l2_normalize(rng.standard_normal((7, 32)))
    result = store.search(queries, 10)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1)[:, :10]
    np.testing.assert_array_equal(result.ids, ids[order])
    np.testing.assert_allclose(result.scores, np.take_along_axis(scores, order, axis=1), rtol=1e-5)


def test_remove_by_id_and_k_larger_than_store() -> None:
    store = VectorStore.create(4)
    store.add([10, 20, 30], np.eye(4, dtype=np.float32)[:3])
    assert store.remove([20, 99]) == 1
    assert sorted(store.ids().tolist()) == [10, 30]
    result = store.search(np.eye(4, dtype=np.float32)[:1], 10)
    assert result.ids.tolist() == [[10, 30]]
    np.testing.assert_array_equal(store.reconstruct([30]), np.eye(4, dtype=np.float32)[2:3])


def test_generations_are_written_atomically_and_unlisted_files_removed(tmp_path: Path) -> None:
    directory = IndexDirectory(tmp_path)
    stores = directory.load_stores(0, 4, "IDMap2,Flat")
    stores["segments"].add([1], np.eye(4, dtype=np.float32)[:1])
    first, _ = stores["segments"].flush()
    stores["segments"].committed()
    stores["segments"].add([2], np.eye(4, dtype=np.float32)[1:2])
    listed, deletions = stores["segments"].flush()
    assert [f.name for f in first] == ["segments.1.faiss"]
    assert [f.name for f in listed] == ["segments.1.faiss", "segments.2.faiss"]  # the first file is kept as it is
    (tmp_path / ".segments.3.faiss.123.tmp").write_bytes(b"partial")  # a crashed writer's leftover
    (tmp_path / "segments.3.faiss").write_bytes(b"never listed")  # sealed, but its commit never came
    directory.remove_unlisted(f.name for f in listed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segments.1.faiss", "segments.2.faiss"]
    loaded = directory.load_stores(2, 4, "IDMap2,Flat", listed, deletions)
    assert sorted(loaded["segments"].ids().tolist()) == [1, 2]
