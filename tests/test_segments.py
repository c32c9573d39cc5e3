"""Segmented stores (indexer/segments.py): sealed files + tail + deletions answer exactly as one index
holding the live vectors; deletions never come back after merges; checkpoints write only what is new."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer import BuildOptions, Index, build_index
from indexer.encoders.base import l2_normalize
from indexer.segments import MERGE_FACTOR, IndexDirectory, SegmentedStore
from indexer.store import VectorStore
from tests import helpers

DIM = 16


def _vectors(n: int, seed: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, DIM))).astype(np.float32)


def _commit(directory: IndexDirectory, store: SegmentedStore, listed: dict) -> SegmentedStore:
    """Flush `store` as a catalog commit would, then reopen it from what was listed (as a new process)."""
    files, deletions = store.flush()
    store.committed()
    for name, ids in deletions.items():
        listed["deletions"][name] = np.union1d(listed["deletions"].get(name, ids), ids)
    listed["deletions"] = {f.name: listed["deletions"][f.name] for f in files if f.name in listed["deletions"]}
    listed["files"] = files
    directory.remove_unlisted(f.name for f in files)
    return directory.load_stores(store.generation - 1, DIM, store.factory, files, listed["deletions"])["segments"]


def _segmented(tmp_path: Path, factory: str, batches: int = 5, per_batch: int = 400,
               trained_on: np.ndarray | None = None) -> tuple[SegmentedStore, dict[int, np.ndarray], dict]:
    """A store of `batches` sealed files (each a checkpoint), with some vectors of each deleted."""
    directory = IndexDirectory(tmp_path)
    store = directory.load_stores(0, DIM, "IDMap2,Flat")["segments"]
    if factory != "IDMap2,Flat":
        store = store.converted(factory) if store.ntotal else SegmentedStore(
            "segments", DIM, factory, tmp_path, [], VectorStore.create(DIM, factory), 1)
        store.train(trained_on)
    listed: dict = {"files": [], "deletions": {}}
    live: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(7)
    for b in range(batches):
        ids = np.arange(b * 10_000, b * 10_000 + per_batch)
        vectors = _vectors(per_batch, b)
        store.add(ids, vectors)
        live.update(zip(ids.tolist(), vectors))
        gone = rng.choice(list(live), 30, replace=False)
        assert store.remove(gone) == 30
        for i in gone.tolist():
            live.pop(i)
        store = _commit(directory, store, listed)
    return store, live, listed


def _reference(factory: str, live: dict[int, np.ndarray], template: VectorStore | None = None) -> VectorStore:
    import faiss

    if template is None:
        reference = VectorStore.create(DIM, factory)
    else:  # the same trained quantizer, one index holding every live vector
        reference = VectorStore(faiss.clone_index(template.index), factory)
    ids = np.array(sorted(live), dtype=np.int64)
    reference.add(ids, np.stack([live[i] for i in ids.tolist()]))
    return reference


def test_search_over_sealed_files_tail_and_deletions_equals_one_flat_index(tmp_path: Path) -> None:
    store, live, listed = _segmented(tmp_path, "IDMap2,Flat")
    assert len(listed["files"]) == 5 and any(len(d) for d in listed["deletions"].values())
    store.add(np.arange(90_000, 90_050), _vectors(50, 99))  # an unsealed tail too
    live.update(zip(range(90_000, 90_050), _vectors(50, 99)))
    queries = _vectors(20, 1234)
    ids = np.array(sorted(live))
    exact = queries @ np.stack([live[i] for i in ids.tolist()]).T
    order = np.argsort(-exact, axis=1)[:, :10]
    result = store.search(queries, 10)
    np.testing.assert_array_equal(result.ids, ids[order])
    np.testing.assert_allclose(result.scores, np.take_along_axis(exact, order, axis=1), rtol=1e-5)
    assert store.ntotal == len(live) and store.ids().tolist() == ids.tolist()
    np.testing.assert_array_equal(store.reconstruct(ids[::97]), np.stack([live[i] for i in ids[::97].tolist()]))
    with pytest.raises(RuntimeError):
        store.reconstruct([next(iter(set(range(2000)) - set(live)))])  # deleted: gone for reads too


def test_filtered_search_across_files_equals_exact_search_among_the_matches(tmp_path: Path) -> None:
    store, live, _ = _segmented(tmp_path, "IDMap2,Flat")
    ids = np.array(sorted(live))
    rng = np.random.default_rng(3)
    among = np.sort(np.concatenate([rng.choice(ids, 300, replace=False), [1, 2, 3, 10_001]]))  # deleted ids too
    queries = _vectors(5, 77)
    result = store.search(queries, 10, among=among)
    matching = np.array([i for i in among.tolist() if i in live])
    exact = queries @ np.stack([live[i] for i in matching.tolist()]).T
    np.testing.assert_array_equal(result.ids, matching[np.argsort(-exact, axis=1)[:, :10]])
    again = store.search(queries, 10, among=among)  # the per-file share of the filter is reused
    np.testing.assert_array_equal(again.ids, result.ids)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8"])
def test_ivf_files_share_one_quantizer_and_answer_as_the_merged_index(tmp_path: Path, factory: str) -> None:
    store, live, listed = _segmented(tmp_path, factory, trained_on=_vectors(2000, 42))
    assert len(listed["files"]) == 5
    store.set_search_params({"nprobe": 3})
    reference = _reference(factory, live, store.template)
    reference.set_search_params({"nprobe": 3})
    queries = _vectors(50, 4321)
    found, expected = store.search(queries, 10), reference.search(queries, 10)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=1e-5)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,SQ8"])
def test_ivf_files_without_deletions_answer_in_one_faiss_call_as_the_merged_index(tmp_path: Path,
                                                                                   factory: str) -> None:
    store = SegmentedStore("segments", DIM, factory, tmp_path, [], VectorStore.create(DIM, factory), 1)
    store.train(_vectors(2000, 42))
    live: dict[int, np.ndarray] = {}
    for b in range(4):
        ids, vectors = np.arange(b * 10_000, b * 10_000 + 300), _vectors(300, b)
        store.add(ids, vectors)
        live.update(zip(ids.tolist(), vectors))
        store.flush()
        store.committed()
    store.add(np.arange(90_000, 90_050), _vectors(50, 99))  # and a tail
    live.update(zip(range(90_000, 90_050), _vectors(50, 99)))
    store.set_search_params({"nprobe": 3})
    reference = _reference(factory, live, store.template)
    reference.set_search_params({"nprobe": 3})
    queries = _vectors(50, 4321)
    found, expected = store.search(queries, 10), reference.search(queries, 10)
    assert store._shards is not None and store._shards.index.count() == len(store.files) + 1  # FAISS's fan-out
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=1e-5)
    # k beyond what the probed lists hold: padded as one index pads, then wider probes fill it.
    wide = store.search(queries[:2], len(live) + 5)
    assert (wide.ids[:, : len(live)] >= 0).all() and (wide.ids[:, len(live) :] == -1).all()
    assert np.isneginf(wide.scores[:, len(live) :]).all()
    # A deletion leaves FAISS's fan-out (it takes no selector): the answer drops the deleted id.
    gone = int(next(i for i in found.ids[0] if i < 90_000))  # in a sealed file, not the tail
    assert store.remove([gone]) == 1
    assert gone not in store.search(queries, 10).ids and store._shards is None


def test_deletions_never_come_back_after_merges(tmp_path: Path) -> None:
    store, live, listed = _segmented(tmp_path, "IDMap2,Flat", batches=MERGE_FACTOR + 3, per_batch=100)
    levels = sorted(f.level for f in listed["files"])
    assert levels[-1] == 1 and len(listed["files"]) == 4  # eight checkpoints merged into one, three after
    assert store.ids().tolist() == sorted(live)
    written = set().union(*(range(b * 10_000, b * 10_000 + 100) for b in range(MERGE_FACTOR + 3)))
    deleted = np.array(sorted(written - set(live)))
    assert len(deleted) == 30 * (MERGE_FACTOR + 3)
    merged = next(f for f in store.files if f.meta.level == 1)
    # The merge left the vectors deleted before it behind; those deleted since are listed as deletions.
    still_there = set(merged.ids.tolist()) & set(deleted.tolist())
    assert still_there == set(listed["deletions"].get(merged.meta.name, np.zeros(0)).tolist())
    assert len(still_there) < 30 * 3 and merged.store.ntotal < 8 * 100
    assert not np.isin(store.search(_vectors(200, 5), 50).ids, deleted).any()
    filtered = store.search(_vectors(3, 6), 10, among=deleted).ids
    assert (filtered == -1).all()


def test_a_file_mostly_deleted_is_rewritten_without_them(tmp_path: Path) -> None:
    store, live, listed = _segmented(tmp_path, "IDMap2,Flat", batches=2, per_batch=100)
    first = listed["files"][0].name
    doomed = sorted(i for i in live if i < 10_000)[5:]  # all but five of the first file's live vectors
    assert store.remove(doomed) == len(doomed)
    store = _commit(IndexDirectory(tmp_path), store, listed)
    assert first not in {f.name for f in listed["files"]} and not (tmp_path / first).exists()
    assert listed["deletions"].get(listed["files"][0].name) is None
    assert store.ntotal == len(live) - len(doomed)
    assert store.files[0].store.ntotal == 5  # rewritten: only its live vectors


def test_a_build_checkpoint_writes_only_the_new_file(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "corpus"
    for i in range(6):  # removing one leaves its files under DELETED_SHARE_REWRITE deleted
        pitch = helpers.ToneEncoder.PITCHES[i % 3] * (1 + i // 3)
        helpers.write_audio(corpus / f"a{i}.flac", helpers.tone(pitch, 2.0, rate=16000), rate=16000)
    index_path = tmp_path / "index"
    build_index(corpus, index_path, BuildOptions(model=str(tone_model)))
    first = index_path / "segments.1.faiss"
    stamp = first.stat().st_mtime_ns, first.read_bytes()
    helpers.write_audio(corpus / "new.flac", helpers.tone(helpers.ToneEncoder.PITCHES[3], 2.0, rate=16000), rate=16000)
    (corpus / "a0.flac").unlink()
    report = build_index(corpus, index_path, BuildOptions(model=str(tone_model)))
    assert report.added == 1 and report.removed == 1
    assert (first.stat().st_mtime_ns, first.read_bytes()) == stamp  # sealed: never written again
    index = Index(index_path)
    generation, files, deletions = index.vector_files()
    assert generation == 2
    assert sorted(f.name for f in files) == ["files.1.faiss", "files.2.faiss", "segments.1.faiss", "segments.2.faiss"]
    assert sorted(deletions) == ["files.1.faiss", "segments.1.faiss"]  # a0's vectors, as deletions
    stores = index.load_stores()
    segments = index.catalog.segments(stores["segments"].ids())
    assert sorted({Path(s.path).name for s in segments.values()}) == ["a1.flac", "a2.flac", "a3.flac", "a4.flac", "a5.flac", "new.flac"]
    index.close()


def test_an_index_written_before_files_were_listed_opens_and_grows(tmp_path: Path, tone_model: Path) -> None:
    import sqlite3

    corpus = tmp_path / "corpus"
    for i, pitch in enumerate(helpers.ToneEncoder.PITCHES[:3]):
        helpers.write_audio(corpus / f"a{i}.flac", helpers.tone(pitch, 2.0, rate=16000), rate=16000)
    index_path = tmp_path / "index"
    build_index(corpus, index_path, BuildOptions(model=str(tone_model)))
    # As revision 0003_file_terms left it: generation 1 in segments.1.faiss and files.1.faiss, no listing.
    with sqlite3.connect(index_path / "catalog.sqlite") as db:
        for index_name in ("ix_segments_visual", "ix_files_duration", "ix_files_mtime"):  # revision 0005's
            db.execute(f"DROP INDEX {index_name}")
        for column in ("keyword_files", "keyword_terms", "segment_count"):
            db.execute(f"ALTER TABLE index_info DROP COLUMN {column}")
        db.execute("DROP TABLE vector_deletions")
        db.execute("DROP TABLE vector_files")
        db.execute("UPDATE alembic_version SET version_num = '0003_file_terms'")
    index = Index(index_path)
    generation, files, _ = index.vector_files()
    assert generation == 1 and sorted(f.name for f in files) == ["files.1.faiss", "segments.1.faiss"]
    assert index.load_stores()["segments"].ntotal == 3
    index.close()
    helpers.write_audio(corpus / "new.flac", helpers.tone(helpers.ToneEncoder.PITCHES[3], 2.0, rate=16000), rate=16000)
    build_index(corpus, index_path, BuildOptions(model=str(tone_model)))
    index = Index(index_path)
    assert index.load_stores()["segments"].ntotal == 4
    assert sorted(f.name for f in index.vector_files()[1]) == ["files.1.faiss", "files.2.faiss", "segments.1.faiss",
                                                               "segments.2.faiss"]
    index.close()


@pytest.mark.parametrize("ids_in_order", [True, False])
def test_a_sealed_flat_file_reads_vectors_back_without_a_hash_map(tmp_path: Path, ids_in_order: bool) -> None:
    import faiss

    ids = np.arange(1000, 1300) if ids_in_order else np.random.default_rng(1).permutation(np.arange(1000, 1300))
    vectors = _vectors(300, 8)
    written = VectorStore.create(DIM, "IDMap2,Flat")
    written.add(ids, vectors)
    written.save(tmp_path / "segments.1.faiss")
    sealed = VectorStore.load(tmp_path / "segments.1.faiss", "IDMap2,Flat", mmap=True)
    assert type(sealed.index) is faiss.IndexIDMap  # the file was an IndexIDMap2: no id -> position map kept
    wanted = np.array([1299, 1000, 1150])
    expected = np.stack([vectors[int(np.flatnonzero(ids == i)[0])] for i in wanted])
    np.testing.assert_array_equal(sealed.read_back(wanted), expected)
    np.testing.assert_array_equal(sealed.reconstruct(wanted.tolist()), expected)
    assert sealed.sorted_ids().tolist() == list(range(1000, 1300))
    with pytest.raises(RuntimeError, match="id 5 is not stored"):
        sealed.read_back(np.array([1000, 5]))
    found = sealed.search(vectors[:3], 1).ids[:, 0]  # search answers with the file's ids
    assert found.tolist() == ids[:3].tolist()
    among = np.array([1001, 1002, 1003])
    exact = sealed.search_among(vectors[:1], 2, among, exact=True)
    assert set(exact.ids[0].tolist()) <= set(among.tolist()) and (exact.ids[0] >= 0).all()


def test_a_query_short_of_k_probes_wider_alone_so_its_batch_does_not_change_answers(tmp_path: Path) -> None:
    store = SegmentedStore("segments", DIM, "IVF16,Flat", tmp_path, [], VectorStore.create(DIM, "IVF16,Flat"), 1)
    store.train(_vectors(2000, 42))
    store.add(np.arange(400), _vectors(400, 3))  # ~25 a list: nprobe 1 leaves some queries short of k = 20
    store.flush()
    store.committed()
    store.set_search_params({"nprobe": 1})
    queries = _vectors(60, 11)
    first = store._search_once(queries, 20, 20, None, None, store._plain_cpu_ivf())  # nprobe 1 as it is
    found = (first.ids >= 0).sum(axis=1)
    assert (found < 20).any() and (found == 20).any()  # the batch mixes short and full queries
    batch = store.search(queries, 20)
    alone = [store.search(q[None], 20) for q in queries]
    assert (batch.ids >= 0).all()  # the short ones were widened until they had k
    np.testing.assert_array_equal(batch.ids, np.concatenate([a.ids for a in alone]))
    np.testing.assert_allclose(batch.scores, np.concatenate([a.scores for a in alone]), rtol=1e-6)
    # The full ones kept their nprobe-1 answer (a whole-batch widening would have changed them).
    np.testing.assert_array_equal(batch.ids[found == 20], first.ids[found == 20])
