"""indexer/ivf_files.py: IVF files merged list by list into one file answer as one index holding the live
entries, and read back with faiss (mapped or not); the conversion to IVF leaves one file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.encoders.base import l2_normalize
from indexer.ivf_files import write_merged_ivf
from indexer.segments import IndexDirectory

DIM = 16


def _vectors(n: int, seed: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, DIM))).astype(np.float32)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8", "IVF16,PQ4"])
def test_merged_lists_answer_as_one_index_of_the_live_entries(tmp_path: Path, factory: str) -> None:
    import faiss

    template = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
    template.train(_vectors(4000, 1))
    parts, deleted, live = [], [], {}
    for p in range(3):
        part = faiss.clone_index(template)
        ids, vectors = np.arange(p * 1000, p * 1000 + 500), _vectors(500, 10 + p)
        part.add_with_ids(vectors, ids)
        gone = np.sort(ids[p::7])  # some entries of each part left out (a part's deletions)
        parts.append(part)
        deleted.append(gone)
        live.update((i, v) for i, v in zip(ids.tolist(), vectors) if i not in set(gone.tolist()))
    path = tmp_path / "merged.faiss"
    written = write_merged_ivf(path, template, [(faiss.extract_index_ivf(part).invlists, gone)
                                                for part, gone in zip(parts, deleted)])
    assert written == len(live) == 1500 - sum(len(g) for g in deleted)
    reference = faiss.clone_index(template)
    ids = np.array(sorted(live), dtype=np.int64)
    reference.add_with_ids(np.stack([live[i] for i in ids.tolist()]), ids)
    queries = _vectors(30, 99)
    for flags in (0, faiss.IO_FLAG_MMAP):
        merged = faiss.read_index(str(path), flags)
        assert merged.ntotal == len(live)
        for index in (merged, reference):
            faiss.extract_index_ivf(index).nprobe = 4
        found, expected = merged.search(queries, 10), reference.search(queries, 10)
        # Equal entries per list, in another order within a list: ties aside, the same answer.
        np.testing.assert_allclose(found[0], expected[0], rtol=1e-6)
        assert (np.sort(found[1], axis=1) == np.sort(expected[1], axis=1)).mean() > 0.99
        assert not np.isin(found[1], np.concatenate(deleted)).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.faiss"]  # no temporary file left


def test_a_template_holding_vectors_is_refused(tmp_path: Path) -> None:
    import faiss

    template = faiss.index_factory(DIM, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    template.train(_vectors(2000, 1))
    template.add(_vectors(10, 2))
    with pytest.raises(ValueError, match="empty IVF index"):
        write_merged_ivf(tmp_path / "x.faiss", template, [])
    assert not list(tmp_path.iterdir())


def test_conversion_to_ivf_leaves_one_file_answering_as_the_files_did(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer import segments

    monkeypatch.setattr(segments, "TAIL_MAX_BYTES", 300 * DIM * 4)  # a file per 300 vectors
    flat = IndexDirectory(tmp_path).load_stores(0, DIM, "IDMap2,Flat")["segments"]
    flat.add(np.arange(3000), _vectors(3000, 5))
    flat.flush()
    flat.committed()
    ivf = flat.converted("IVF16,Flat", train_size=2000)
    assert len(ivf.files) == 1 and ivf.files[0].store.ntotal == 3000
    on_disk = sorted(p.name for p in tmp_path.glob("segments.*.faiss"))
    assert on_disk == sorted({f.meta.name for f in flat.files} | {ivf.files[0].meta.name})  # the parts are gone
    ivf.set_search_params({"nprobe": 16})  # every list: exact
    queries = _vectors(5, 6)
    exact = queries @ _vectors(3000, 5).T
    np.testing.assert_array_equal(ivf.search(queries, 5).ids, np.argsort(-exact, axis=1)[:, :5])
