"""File names that are not UTF-8 or hold a line break, through export and import, `search similar` and
`search duplicates`: stored as a build stores them, recognised as themselves, printed on one line with
their odd bytes as backslash escapes (docs/errors.md)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexer import BuildOptions, build_index
from indexer.cli import main as indexer_cli
from indexer.errors import IndexMismatchError
from indexer.export import export_index
from indexer.import_vectors import import_vectors
from search.cli import main as search_cli
from search.engine import Engine
from tests.test_duplicates import MELODY, RATE, played
from tests.test_export import _wav
from tests.test_findings_issue25 import cli, error_line
from tests.test_import import _windows, foreign_export

RAW = os.fsdecode(b"bad\xff.wav")  # not UTF-8: Python holds the byte as the surrogate \udcff
RAW_FOLDER = os.fsdecode(b"caf\xe9")
NEWLINE = "new\nline.wav"


def _stored_names(index: Path) -> set[tuple[str, str, bytes | None]]:
    """(corpus root, path, path_bytes) of every file, as the catalog holds them."""
    with sqlite3.connect(index / "catalog.sqlite") as db:
        rows = db.execute("SELECT c.root, f.path, f.path_bytes FROM files f JOIN corpora c ON f.corpus_id = c.id")
        return {(root, path, raw) for root, path, raw in rows}


def _named_wav(path: Path, freqs: list[float]) -> None:
    """tests/test_export.py's tagged-tone file under a name libsndfile cannot open (written, then renamed)."""
    plain = path.parent.parent / f".{len(path.parts)}.tmp.wav"
    _wav(plain, freqs)
    os.rename(plain, path)


@pytest.fixture
def odd_index(tmp_path: Path, tone_model: Path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    _wav(corpus / "a.wav", [220, 440])
    _named_wav(corpus / RAW, [880])
    (corpus / RAW_FOLDER).mkdir()
    _named_wav(corpus / RAW_FOLDER / "x.wav", [330])
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    return corpus.resolve(), tmp_path / "index"


@pytest.mark.parametrize("suffix", ["npz", "parquet"])
def test_an_export_of_names_that_are_not_utf8_imports_as_a_build_stores_them(
        odd_index: tuple[Path, Path], tmp_path: Path, suffix: str) -> None:
    corpus, built = odd_index
    export = tmp_path / f"ex.{suffix}"
    cli(indexer_cli, ["export", "--index", built, "--out", export])
    target = tmp_path / "new"
    cli(indexer_cli, ["import", "--index", target, export])
    assert _stored_names(target) == _stored_names(built) == {
        (str(corpus), "a.wav", None), (str(corpus), "bad\\xff.wav", b"bad\xff.wav"),
        (str(corpus), "caf\\xe9/x.wav", b"caf\xe9/x.wav")}
    theirs, ours = _windows(built), _windows(target)
    assert sorted(ours) == sorted(theirs) and f"{corpus}/{RAW}" in {p for p, _, _ in ours}
    for key, vector in theirs.items():
        np.testing.assert_array_equal(ours[key], vector)
    # The exported text columns are UTF-8 for other tools; the exact bytes ride along.
    if suffix == "npz":
        with np.load(export) as data:
            assert f"{corpus}/bad\\xff.wav" in data["path"].tolist()
            assert os.fsencode(f"{corpus}/{RAW}") in data["path_bytes"].tolist()
    # Importing again replaces the files rather than adding them a second time.
    assert import_vectors([export], target).replaced == 3
    assert len(_stored_names(target)) == 3
    result = cli(search_cli, ["query", "an 880 Hz tone", "--index", target, "-k", "1"])
    assert result.stdout.splitlines()[1].endswith("bad\\xff.wav")


def test_a_failed_import_into_a_new_folder_leaves_nothing_half_made(odd_index: tuple[Path, Path], tmp_path: Path) -> None:
    _, built = odd_index
    good = tmp_path / "good.npz"
    export_index(built, good)
    foreign = foreign_export(good, tmp_path / "foreign.npz")

    target = tmp_path / "new"
    with pytest.raises(IndexMismatchError):
        import_vectors([good, foreign], target)
    assert not target.exists()  # no .lock, no catalog.sqlite: nothing a query would take for an index
    result = cli(indexer_cli, ["import", "--index", target, good, foreign], 1)
    assert "import them into an index of their own" in error_line(result) and not target.exists()

    existing = tmp_path / "empty-folder"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(IndexMismatchError):
        import_vectors([good, foreign], existing)
    assert sorted(os.listdir(existing)) == ["notes.txt"]  # what was there stays; what the import made goes

    report = import_vectors([good], target)  # and the same import, fixed, runs
    assert (report.created, report.files) == (True, 3)
    assert _windows(target).keys() == _windows(built).keys()


@pytest.fixture
def twins(tmp_path: Path, tone_model: Path) -> tuple[Path, Path]:
    """A corpus where two odd names each have an identical twin that sorts (and is indexed) before them."""
    corpus = tmp_path / "corpus"
    _wav(corpus / "a-twin.wav", [880])
    shutil.copyfile(corpus / "a-twin.wav", corpus / RAW)
    _wav(corpus / "a-twin-2.wav", [330, 330])
    shutil.copyfile(corpus / "a-twin-2.wav", corpus / NEWLINE)
    _wav(corpus / "other.wav", [880, 220])
    index = tmp_path / "index"
    build_index(corpus, index, BuildOptions(model=str(tone_model), decode_workers=0))
    return corpus.resolve(), index


def test_similar_recognises_a_query_file_whose_name_is_odd_as_itself(twins: tuple[Path, Path]) -> None:
    corpus, index = twins
    engine = Engine(index)
    try:
        for name, twin in ((RAW, "a-twin.wav"), (NEWLINE, "a-twin-2.wav")):
            hits = engine.similar(corpus / name, k=3)
            assert [h.path for h in hits[:2]] == [str(corpus / name), str(corpus / twin)]
            assert hits[0].score == pytest.approx(1.0)
    finally:
        engine.close()
    result = cli(search_cli, ["similar", corpus / RAW, "--index", index, "--exclude-self", "-k", "5"])
    assert error_line(result) == f"note: left out {corpus}/bad\\xff.wav itself (indexed as bad\\xff.wav) and 1 identical copy"
    assert "a-twin.wav" not in result.stdout and "bad" not in result.stdout
    result = cli(search_cli, ["similar", corpus / NEWLINE, "--index", index, "--exclude-self", "-k", "5"])
    assert error_line(result) == f"note: left out {corpus}/new\\nline.wav itself (indexed as new\\nline.wav) and 1 identical copy"
    assert "a-twin-2.wav" not in result.stdout and "line.wav" not in result.stdout


def test_duplicates_prints_each_member_on_one_line_whatever_its_name(tmp_path: Path, tone_model: Path) -> None:
    from tests import helpers

    corpus = tmp_path / "corpus"
    melody = played(*MELODY)
    helpers.write_audio(corpus / "melody.wav", melody, rate=RATE)
    helpers.write_audio(corpus / NEWLINE, melody[2 * RATE:], rate=RATE)  # a copy cut by 2 s
    helpers.write_audio(corpus / RAW, melody[4 * RATE:], rate=RATE)  # and by 4 s
    index = tmp_path / "index"
    build_index(corpus, index, BuildOptions(model=str(tone_model), decode_workers=0))
    corpus = corpus.resolve()
    for extra in ([], ["--no-check"]):
        lines = cli(search_cli, ["duplicates", "--index", index, *extra]).stdout.splitlines()
        assert len(lines) == 4 and lines[0].startswith("group 1: 3 files"), lines
        names = [line.rsplit("  ", 1)[1] for line in lines[1:]]
        assert names[0] == f"{corpus}/melody.wav"  # the reference: the longest
        assert sorted(names[1:]) == [f"{corpus}/bad\\xff.wav", f"{corpus}/new\\nline.wav"]
    data = json.loads(cli(search_cli, ["duplicates", "--index", index, "--json"]).stdout)
    assert sorted(m["path"] for m in data[0]["members"]) == [  # JSON escapes the line break itself
        f"{corpus}/bad\\xff.wav", f"{corpus}/melody.wav", f"{corpus}/{NEWLINE}"]
