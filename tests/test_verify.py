"""`indexer verify`: vectors <-> rows both ways, and `--repair` restoring an index equal to a clean build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, text

from db.schema import SegmentRow
from indexer import BuildOptions, Index, build_index
from indexer.cli import main as indexer_cli
from indexer.verify import repair_index, verify_index
from tests import helpers


@pytest.fixture
def small_index(tmp_path: Path, clap_checkpoint: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "a.wav", helpers.tone(440, 2.0))
    helpers.write_audio(corpus / "b.flac", helpers.chirp(300, 3000, 12.0))
    helpers.write_audio(corpus / "c.ogg", helpers.noise(1.5, seed=4))
    index_path = tmp_path / "index"
    build_index(corpus, index_path, BuildOptions(model=str(clap_checkpoint)))
    return corpus, index_path


def _snapshot(index_path: Path) -> dict[tuple[str, float, float], np.ndarray]:
    index = Index(index_path)
    store = index.load_stores()["segments"]
    ids = store.ids().tolist()
    segments = index.catalog.segments(ids)
    out = {(segments[i].path, segments[i].start, segments[i].end): v for i, v in zip(ids, store.reconstruct(ids))}
    index.close()
    return out


def test_clean_index_verifies(small_index: tuple[Path, Path]) -> None:
    _, index_path = small_index
    report = verify_index(index_path)
    assert report.ok and report.problems == []
    assert report.counts == {"segments_rows": 4, "segments_vectors": 4, "files_rows": 3, "files_vectors": 3}
    result = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True


def test_orphans_and_missing_vectors_are_found_and_repaired(small_index: tuple[Path, Path]) -> None:
    _, index_path = small_index
    before = _snapshot(index_path)
    index = Index(index_path)
    stores = index.load_stores()
    # Damage: a vector no row names, and a segment of b.flac whose vector is gone.
    stores["segments"].add([9999], np.ones((1, 512), dtype=np.float32) / np.sqrt(512))
    victim = next(i for i, s in index.catalog.segments(stores["segments"].ids()).items() if s.path.endswith("b.flac"))
    stores["segments"].remove([victim])
    index.commit_generation(stores, index.catalog.writer())  # the vectors changed, the rows not
    index.close()

    report = verify_index(index_path)
    assert not report.ok
    assert report.orphan_vectors == {"segments": [9999]}
    assert any("catalog rows without a vector" in p for p in report.problems)
    result = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path)])
    assert result.exit_code == 1 and "inconsistent" in result.stdout

    repair_index(index_path)
    assert verify_index(index_path).ok
    after = _snapshot(index_path)
    assert sorted(after) == sorted(before)  # b.flac re-embedded, windows and all
    for key, vector in before.items():
        np.testing.assert_allclose(after[key], vector, atol=1e-6)


def test_rows_without_vectors_after_catalog_damage(small_index: tuple[Path, Path]) -> None:
    _, index_path = small_index
    index = Index(index_path)
    with index.catalog.session() as s:  # a segment row deleted behind resound's back: its vector is orphaned
        s.execute(delete(SegmentRow).where(SegmentRow.id == 1))
        s.commit()
    index.close()
    report = verify_index(index_path)
    assert report.orphan_vectors == {"segments": [1]}
    repair_index(index_path, reembed=False)
    assert verify_index(index_path).ok


def test_a_stored_segment_count_that_is_off_is_reported_and_recounted(small_index: tuple[Path, Path]) -> None:
    """`indexer info` shows the segment count each commit keeps; verify checks it against the rows."""
    _, index_path = small_index
    index = Index(index_path)
    assert index.catalog.counts()["segments"] == 4
    with index.catalog.session() as s:
        s.execute(text("UPDATE index_info SET segment_count = segment_count + 5"))
        s.commit()
    index.close()
    report = verify_index(index_path)
    assert report.problems == ["catalog: stored segment count 9, 4 segment rows (recounted by --repair)"]
    repair_index(index_path, reembed=False)
    assert verify_index(index_path).ok
    result = CliRunner().invoke(indexer_cli, ["info", "--index", str(index_path), "--json"])
    assert json.loads(result.stdout)["counts"]["segments"] == 4


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_a_damaged_vector_file_is_reported_and_its_files_re_embedded(small_index: tuple[Path, Path], damage: str) -> None:
    _, index_path = small_index
    before = _snapshot(index_path)
    target = index_path / "segments.1.faiss"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "garbage":
        target.write_bytes(b"not a faiss index" * 100)
    else:
        target.unlink()

    report = verify_index(index_path)
    assert not report.ok and report.unreadable_files == ["segments.1.faiss"]
    assert report.problems[0].startswith("segments.1.faiss: ")
    assert any("catalog rows without a vector" in p for p in report.problems)
    repair_index(index_path)
    assert verify_index(index_path).ok
    after = _snapshot(index_path)
    assert sorted(after) == sorted(before)  # every window back, from the catalog's corpus
    for key, vector in before.items():
        np.testing.assert_allclose(after[key], vector, atol=1e-6)


def test_a_repair_that_cannot_embed_lost_files_again_refuses_and_changes_nothing(
        small_index: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, index_path = small_index
    target = index_path / "segments.1.faiss"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    corpus.rename(tmp_path / "elsewhere")  # the media is out of reach (an imported archive, a lost mount)

    result = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path), "--repair"])
    assert result.exit_code != 0
    assert "3 of the 3 files whose vectors are missing cannot be embedded again here" in result.output
    assert "nothing was changed" in result.output and "--drop-unreachable" in result.output
    assert "repaired" not in result.output
    assert not verify_index(index_path).ok  # still reported, rows kept: the user decides
    assert Index(index_path).catalog.counts()["files"] == 3

    result = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path), "--repair", "--drop-unreachable"])
    assert result.exit_code == 0, result.output
    assert "repaired: 3 files whose vectors were missing were embedded again or, out of reach here, dropped" in result.output
    assert verify_index(index_path).ok
    assert Index(index_path).catalog.counts()["files"] == 0
