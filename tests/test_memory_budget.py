"""`--max-memory` and `--index-type auto`: the most exact index type that fits the budget, product-quantised
stores re-ranked from a float16 copy on disk, and imports that stream into their final type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.scale import write_parts
from indexer.cli import main as indexer_cli
from indexer.import_vectors import ImportOptions, import_vectors
from indexer.segments import MERGE_FACTOR, ExactCopy, IndexDirectory, SegmentedStore
from indexer.store import VectorStore, choose_factory, choose_index, parse_size
from indexer.verify import repair_index, verify_index
from tests.test_segments import DIM, _commit, _reference, _segmented, _vectors

GiB, MiB = 1 << 30, 1 << 20


def test_auto_picks_the_most_exact_type_that_fits_the_budget() -> None:
    assert choose_factory(5_000, 512, GiB) == "IDMap2,Flat"
    assert choose_factory(1_000_000, 512, 4 * GiB) == "IVF4096,Flat"  # 1.92 GiB of flat codes
    assert choose_factory(1_000_000, 512, GiB) == "IVF4096,SQ8"  # 504 MiB
    assert choose_factory(1_000_000, 512, 200 * MiB) == "IVF4096,PQ128"  # 138 MiB, re-ranked
    assert choose_factory(1_000_000, 512, 100 * MiB) == "IVF4096,PQ64"  # 77 MiB
    assert choose_factory(10_000_000, 512, 6 * GiB) == "IVF4096,SQ8"  # 4.85 GiB; flat would need 19.2 (lists capped at 4,096)
    choice = choose_index(10_000_000, 512, int(1.5 * GiB))
    assert choice.factory == "IVF4096,PQ128"
    assert choice.reason == ("10,000,000 vectors of 512: IVF4096,PQ128, re-ranked from a float16 copy on disk needs "
                             "1.27 GiB, within the 1.50 GiB budget; IVF4096,Flat, IVF4096,SQ8 would need 19.16 GiB, "
                             "4.85 GiB")
    tight = choose_index(10_000_000, 512, MiB)
    assert tight.factory == "IVF4096,PQ64" and "over the 1.00 MiB budget" in tight.reason


def test_sizes_read_as_people_write_them() -> None:
    assert parse_size("1.5GiB") == 1536 * MiB
    assert parse_size("800M") == parse_size("800MiB") == parse_size("800 mb") == 800 * MiB
    assert parse_size("2g") == 2 * GiB and parse_size("512KiB") == 512 << 10 and parse_size("1000000") == 1_000_000
    with pytest.raises(ValueError, match=r"'1\.5' would be 1 bytes: write the unit \(e\.g\. 1\.5G or 1\.5M\)"):
        parse_size("1.5")  # a forgotten unit, not a budget of one byte
    for bad in ("lots", "-1G", "1.5XB", "", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
    result = CliRunner().invoke(indexer_cli, ["compact", "--index", "nowhere", "--max-memory", "lots"])
    assert result.exit_code == 2 and "'lots' is not a size: write a number with K, M, G or T" in result.output


def test_pq_files_re_ranked_from_their_float16_copies_answer_as_one_merged_index(tmp_path: Path) -> None:
    factory = "IVF16,PQ4"
    store, live, listed = _segmented(tmp_path, factory, trained_on=_vectors(2000, 42))
    assert len(listed["files"]) == 5 and store.rerank
    for f in listed["files"]:  # each sealed file has its copy: sorted ids and their float16 rows
        copy = ExactCopy.open(tmp_path / f.name, DIM, f.vectors)
        assert np.all(np.diff(copy.ids) > 0) and copy.rows.dtype == np.float16
    store.set_search_params({"nprobe": 16})
    queries = _vectors(50, 4321)
    # One store of one sealed file holding every live vector, the same trained quantizer and codebook.
    one = SegmentedStore("segments", DIM, factory, tmp_path / "one", [], store.template, 1)
    (tmp_path / "one").mkdir()
    ids = np.array(sorted(live))
    one.add(ids, np.stack([live[i] for i in ids.tolist()]))
    one.flush()
    one.set_search_params({"nprobe": 16})
    found, expected = store.search(queries, 10), one.search(queries, 10)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=1e-6)
    # Re-scored exactly (to float16): the scores are the true inner products of the answers.
    true = np.einsum("qd,qkd->qk", queries, np.stack([[live[i] for i in row] for row in found.ids.tolist()]))
    np.testing.assert_allclose(found.scores, true, atol=2e-3)
    exact = queries @ np.stack([live[i] for i in ids.tolist()]).T
    truth = ids[np.argsort(-exact, axis=1)[:, :10]]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.ids.tolist(), truth.tolist())])
    store.rerank = False
    plain = store.search(queries, 10)
    store.rerank = True
    plain_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(plain.ids.tolist(), truth.tolist())])
    assert recall >= 0.95 and plain_recall < 0.8  # 4 bytes a vector alone cannot tell near neighbours apart
    np.testing.assert_allclose(store.reconstruct(ids[::37]), np.stack([live[i] for i in ids[::37].tolist()]), atol=1e-3)
    reference = _reference("IDMap2,Flat", live)  # and the re-ranked answer is near the exact one
    assert reference.search(queries, 1).ids[:, 0].tolist() == found.ids[:, 0].tolist()


def test_pq_deletions_never_come_back_after_merges_and_merged_copies_are_removed(tmp_path: Path) -> None:
    store, live, listed = _segmented(tmp_path, "IVF16,PQ4", batches=MERGE_FACTOR + 2, per_batch=100,
                                     trained_on=_vectors(2000, 42))
    assert max(f.level for f in listed["files"]) == 1
    written = set().union(*(range(b * 10_000, b * 10_000 + 100) for b in range(MERGE_FACTOR + 2)))
    deleted = np.array(sorted(written - set(live)))
    store.set_search_params({"nprobe": 16})
    assert store.ids().tolist() == sorted(live)
    assert not np.isin(store.search(_vectors(100, 5), 50).ids, deleted).any()
    on_disk = sorted(p.name for p in tmp_path.iterdir())
    stems = sorted(f.name[: -len(".faiss")] for f in listed["files"])
    assert on_disk == sorted([f"{s}.faiss" for s in stems] + [f"{s}.ids.npy" for s in stems]
                             + [f"{s}.f16.npy" for s in stems])


def test_an_import_streams_into_the_type_its_budget_calls_for(tmp_path: Path) -> None:
    write_parts(tmp_path / "parts", 100_000, 16, clusters=50)
    write_parts(tmp_path / "more", 60, 16, clusters=50, first_row=100_020, seed=1)  # a file of its own
    budget = "1.5MiB"  # 100,000 x 16: flat 7.2 MB, SQ8 2.5 MB, PQ4 1.27 MB
    result = CliRunner().invoke(indexer_cli, ["import", str(tmp_path / "parts"), "--index", str(tmp_path / "idx"),
                                              "--max-memory", budget])
    assert result.exit_code == 0, result.output
    info = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "idx"), "--json"]).output)
    provenance = info["provenance"]
    assert provenance["faiss_factory"] == "IVF1024,PQ4"
    assert provenance["search_params"]["chosen_because"].startswith("100,000 vectors of 16: IVF1024,PQ4, re-ranked")
    assert provenance["search_params"]["recall_at_10"] >= 0.9
    names = sorted(p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith("segments."))
    assert all(n.split(".")[-1] in ("faiss", "npy") for n in names) and "segments.1.f16.npy" in names
    assert len([n for n in names if n.endswith(".faiss")]) * 2 == len([n for n in names if n.endswith(".npy")])
    # A window of the import finds itself first.
    from indexer.index import Index

    index = Index(tmp_path / "idx")
    stores = index.load_stores()
    ids = stores["segments"].ids()
    vectors = stores["segments"].reconstruct(ids[:20])
    assert stores["segments"].search(vectors, 1).ids[:, 0].tolist() == ids[:20].tolist()
    index.close()
    # Adding to it keeps its type and budget reason.
    import_vectors([tmp_path / "more"], tmp_path / "idx", ImportOptions(max_memory=parse_size(budget)))
    again = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "idx"), "--json"]).output)
    assert again["provenance"]["faiss_factory"] == "IVF1024,PQ4" and again["counts"]["segments"] == 100_060
    # The budget is the index's: a compact (or build) without --max-memory keeps it, and says so.
    assert again["provenance"]["search_params"]["max_memory"] == parse_size(budget)
    result = CliRunner().invoke(indexer_cli, ["compact", "--index", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    compacted = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "idx"), "--json"]).output)
    assert compacted["provenance"]["faiss_factory"] == "IVF1024,PQ4"
    assert "within the 1.50 MiB budget" in compacted["provenance"]["search_params"]["chosen_because"]


def test_compact_keeps_the_type_the_index_was_given(tmp_path: Path) -> None:
    write_parts(tmp_path / "parts", 3000, 16, clusters=20)
    result = CliRunner().invoke(indexer_cli, ["import", str(tmp_path / "parts"), "--index", str(tmp_path / "idx"),
                                              "--index-type", "IVF16,Flat"])
    assert result.exit_code == 0, result.output
    for options in ([], ["--index-type", "auto"]):
        result = CliRunner().invoke(indexer_cli, ["compact", "--index", str(tmp_path / "idx"), *options])
        assert result.exit_code == 0, result.output
        info = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "idx"), "--json"]).output)
        # Kept when none is named; `auto` asked for by name goes by size (3,000 vectors: exact search).
        assert info["provenance"]["faiss_factory"] == ("IVF16,Flat" if not options else "IDMap2,Flat")


def test_too_few_vectors_to_train_stay_exact_or_are_refused_in_one_line(tmp_path: Path) -> None:
    small = choose_index(50_000, 512, MiB)
    assert small.factory == "IDMap2,Flat" and "over the 1.00 MiB budget" in small.reason
    write_parts(tmp_path / "parts", 120, 16, clusters=5)
    result = CliRunner().invoke(indexer_cli, ["import", str(tmp_path / "parts"), "--index", str(tmp_path / "a"),
                                              "--max-memory", "1KiB"])
    assert result.exit_code == 0, result.output  # auto: exact search, the reason says why
    result = CliRunner().invoke(indexer_cli, ["import", str(tmp_path / "parts"), "--index", str(tmp_path / "b"),
                                              "--index-type", "IVF4,PQ4"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: index type IVF4,PQ4 needs at least 256 vectors to train; the index has "
                                     "120: use IDMap2,Flat (or --index-type auto) until it grows")


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_re_ranking_copy_is_reported_by_verify(tmp_path: Path, damage: str) -> None:
    write_parts(tmp_path / "parts", 3_000, 16, clusters=20)
    import_vectors([tmp_path / "parts"], tmp_path / "idx", ImportOptions(index_type="IVF16,PQ4"))
    copy = tmp_path / "idx" / "segments.1.f16.npy"
    if damage == "missing":
        copy.unlink()
    else:
        copy.write_bytes(copy.read_bytes()[:1000])
    report = verify_index(tmp_path / "idx")
    assert not report.ok and report.unreadable_files == ["segments.1.faiss"]
    reason = "is missing" if damage == "missing" else "is cut short or damaged"
    assert report.problems[0].startswith(f"segments.1.faiss: its re-ranking copy segments.1.f16.npy {reason}")
    repair_index(tmp_path / "idx", reembed=False)  # imported media are out of reach: dropped, reported
    assert verify_index(tmp_path / "idx").ok
    assert not copy.exists() and not (tmp_path / "idx" / "segments.1.ids.npy").exists()


def test_a_store_reopened_reads_its_copy_not_the_codes(tmp_path: Path) -> None:
    template = VectorStore.create(DIM, "IVF8,PQ4")
    template.train(_vectors(1000, 1))
    store = SegmentedStore("segments", DIM, "IVF8,PQ4", tmp_path, [], template, 1)
    vectors = _vectors(300, 2)
    store.add(np.arange(300) + 5, vectors)
    listed: dict = {"files": [], "deletions": {}}
    store = _commit(IndexDirectory(tmp_path), store, listed)
    np.testing.assert_allclose(store.reconstruct(np.arange(300) + 5), vectors, atol=1e-3)


def test_ivf_merges_copy_codes_and_answer_as_one_index(tmp_path: Path) -> None:
    store, live, _ = _segmented(tmp_path, "IVF16,SQ8", batches=MERGE_FACTOR + 1, per_batch=100,
                                     trained_on=_vectors(2000, 42))
    merged = [f for f in store.files if f.meta.level == 1]
    assert len(merged) == 1 and store.ids().tolist() == sorted(live)
    store.set_search_params({"nprobe": 4})
    reference = _reference("IVF16,SQ8", live, store.template)
    reference.set_search_params({"nprobe": 4})
    queries = _vectors(40, 99)
    found, expected = store.search(queries, 10), reference.search(queries, 10)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=1e-5)


def test_repair_of_a_pq_index_whose_only_file_is_damaged_embeds_its_files_again(tmp_path: Path,
                                                                                  tone_model: Path) -> None:
    from indexer import BuildOptions, build_index
    from tests.test_crash_safety import _corpus, _snapshot

    corpus = _corpus(tmp_path / "corpus", range(30))  # 360 windows: enough to train 256-entry codebooks
    build_index(corpus, tmp_path / "idx", BuildOptions(model=str(tone_model), index_type="IVF4,PQ2"))
    before = _snapshot(tmp_path / "idx")
    for copy in (tmp_path / "idx").glob("segments.*.f16.npy"):
        copy.unlink()
    assert not verify_index(tmp_path / "idx").ok
    repair_index(tmp_path / "idx")
    assert verify_index(tmp_path / "idx").ok
    after = _snapshot(tmp_path / "idx")
    assert sorted(after) == sorted(before)  # every window back, embedded again from the corpus


def test_an_ivf_search_probes_more_lists_rather_than_answer_short(tmp_path: Path) -> None:
    template = VectorStore.create(DIM, "IVF32,Flat")
    template.train(_vectors(3000, 1))
    store = SegmentedStore("segments", DIM, "IVF32,Flat", tmp_path, [], template, 1)
    vectors = _vectors(200, 2)
    store.add(np.arange(150) + 1, vectors[:150])  # a sealed file and a tail
    store.flush()
    store.add(np.arange(150, 200) + 1, vectors[150:])
    store.set_search_params({"nprobe": 1})  # one list of 32 holds ~6 of 200 vectors
    found = store.search(_vectors(5, 3), 50)
    assert ((found.ids >= 0).sum(axis=1) == 50).all()
    assert store.search(_vectors(1, 4), 500).ids[0].tolist().count(-1) == 300  # all 200 there are, no more


def test_a_tuning_short_of_its_target_is_said_in_plain_words(tmp_path: Path) -> None:
    from indexer.tuning import short_of_target

    assert short_of_target("IVF64,PQ8", {"nprobe": 64, "recall_at_10": 0.7362, "target_recall": 0.95}) == (
        "IVF64,PQ8 reaches recall@10 0.736 against exact search, below the target 0.95 even at nprobe 64: a less "
        "compressed type (a larger --max-memory, or --index-type) gets closer")
    assert short_of_target("IVF64,Flat", {"nprobe": 4, "recall_at_10": 0.96, "target_recall": 0.95}) is None
    write_parts(tmp_path / "parts", 3000, 16, clusters=20)
    result = CliRunner().invoke(indexer_cli, ["import", str(tmp_path / "parts"), "--index", str(tmp_path / "idx"),
                                              "--index-type", "IVF16,PQ1x4", "--target-recall", "0.999"])
    assert result.exit_code == 0, result.output  # 4 bits a vector: not even every list and re-ranking reach it
    assert "note: IVF16,PQ1x4 reaches recall@10 0." in result.output
    assert "below the target 1.00 even at nprobe 16: a less compressed type" in result.output
