"""`indexer import`: an export's vectors enter an index with their files, windows, tags and provenance;
another model's vectors are refused in one line; media out of reach stay searchable and are never removed
for being out of reach."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import BuildOptions, Index, build_index
from indexer.cli import main as indexer_cli
from indexer.errors import IndexMismatchError
from indexer.export import export_index
from indexer.import_vectors import ImportOptions, ImportSourceError, import_vectors
from indexer.verify import verify_index
from tests.test_export import _wav


def _windows(index_path: Path) -> dict[tuple[str, float, float], np.ndarray]:
    index = Index(index_path)
    store = index.load_stores()["segments"]
    ids = store.ids()
    segments = index.catalog.segments(ids)
    out = {(segments[i].path, segments[i].start, segments[i].end): v for i, v in zip(ids.tolist(), store.reconstruct(ids))}
    index.close()
    return out


def foreign_export(npz: Path, out: Path) -> Path:
    """A copy of the npz export `npz` whose provenance names another model (laion-clap/other)."""
    with np.load(npz) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["provenance"]))
    meta.update(model_id="laion-clap/other", checkpoint_sha256="f" * 64)
    arrays["provenance"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)
    return out


@pytest.fixture
def exported(tmp_path: Path, tone_model: Path) -> tuple[Path, Path, Path]:
    corpus = tmp_path / "corpus"
    _wav(corpus / "a.wav", [220, 440], artist="Ann", genre="Jazz")
    _wav(corpus / "sub" / "b.flac", [880], title="Bé")
    _wav(corpus / "c.ogg", [330, 660, 220])
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    (tmp_path / "exports").mkdir()
    export_index(tmp_path / "index", tmp_path / "exports" / "part1.parquet")
    export_index(tmp_path / "index", tmp_path / "part.npz")
    return corpus.resolve(), tmp_path / "index", tmp_path / "exports"


@pytest.mark.parametrize("source", ["folder", "npz"])
def test_import_creates_an_index_equal_to_the_exported_one_with_paths_mapped(
        exported: tuple[Path, Path, Path], tmp_path: Path, source: str) -> None:
    corpus, original, folder = exported
    target = tmp_path / "imported"
    src = folder if source == "folder" else tmp_path / "part.npz"
    report = import_vectors([src], target, ImportOptions(map_prefix=[(str(corpus), "/cluster/audio")]))
    assert (report.created, report.files, report.windows) == (True, 3, 6)
    theirs, ours = _windows(original), _windows(target)
    assert sorted(ours) == sorted((p.replace(str(corpus), "/cluster/audio"), a, b) for p, a, b in theirs)
    for (path, start, end), vector in theirs.items():
        np.testing.assert_array_equal(ours[(path.replace(str(corpus), "/cluster/audio"), start, end)], vector)
    a, b = Index(original), Index(target)
    assert a.provenance().model_id == b.provenance().model_id
    assert a.provenance().checkpoint_sha256 == b.provenance().checkpoint_sha256
    a.close(), b.close()
    # Media out of reach: searchable, verified without loss.
    from search.engine import Engine

    engine = Engine(target)
    hits = engine.query("a 880 Hz tone", k=1)
    assert hits[0].path == "/cluster/audio/sub/b.flac"
    engine.close()
    report = verify_index(target)
    assert report.ok and report.unreachable_media == ["/cluster/audio/a.wav", "/cluster/audio/c.ogg",
                                                      "/cluster/audio/sub/b.flac"]
    result = CliRunner().invoke(indexer_cli, ["verify", "--index", str(target)])
    assert result.exit_code == 0 and "3 indexed files out of reach here (kept and searchable)" in result.output
    assert len(_windows(target)) == 6  # verify removed nothing


def test_importing_again_replaces_and_a_build_elsewhere_keeps_imported_files(
        exported: tuple[Path, Path, Path], tmp_path: Path, tone_model: Path) -> None:
    corpus, _, folder = exported
    target = tmp_path / "imported"
    options = ImportOptions(map_prefix=[(str(corpus), "/unreachable")])
    import_vectors([folder], target, options)
    again = import_vectors([folder], target, options)
    assert (again.files, again.replaced, again.created) == (3, 3, False)
    other = tmp_path / "other"
    _wav(other / "d.wav", [660])
    build_index(other, target, BuildOptions(model=str(tone_model), decode_workers=0))
    paths = sorted({p for p, _, _ in _windows(target)})
    assert paths == sorted(["/unreachable/a.wav", "/unreachable/c.ogg", "/unreachable/sub/b.flac",
                            f"{other.resolve()}/d.wav"])
    assert verify_index(target).ok


def test_another_models_vectors_are_refused_in_one_line(exported: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, original, _ = exported
    foreign = foreign_export(tmp_path / "part.npz", tmp_path / "foreign.npz")
    with pytest.raises(IndexMismatchError, match="vectors of model laion-clap/other"):
        import_vectors([foreign], original)
    result = CliRunner().invoke(indexer_cli, ["import", str(foreign), "--index", str(original)])
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message and "import them into an index of their own" in message
    with pytest.raises(ImportSourceError, match="continue from an earlier source"):
        import_vectors([tmp_path / "part.npz", tmp_path / "part.npz"], tmp_path / "twice")  # one run, twice
    with pytest.raises(ImportSourceError, match="no such file or folder"):
        import_vectors([tmp_path / "nothing.parquet"], original)
    with pytest.raises(ImportSourceError, match="expected OLD=NEW"):
        from indexer.import_vectors import parse_map_prefix

        parse_map_prefix(["no-equals"])


def test_import_with_its_corpus_root_keeps_one_corpus_and_relative_paths(exported: tuple[Path, Path, Path],
                                                                          tmp_path: Path) -> None:
    corpus, _, exports = exported
    result = CliRunner().invoke(indexer_cli, ["import", str(exports), "--index", str(tmp_path / "rooted"),
                                              "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    index = Index(tmp_path / "rooted")
    try:
        assert index.catalog.corpus_roots() == [str(corpus)]
        ids = index.load_stores()["segments"].ids()
        paths = sorted({s.path for s in index.catalog.segments(ids.tolist()).values()})
    finally:
        index.close()
    assert [Path(p).relative_to(corpus).as_posix() for p in paths] == ["a.wav", "c.ogg", "sub/b.flac"]
    elsewhere = CliRunner().invoke(indexer_cli, ["import", str(exports), "--index", str(tmp_path / "x"),
                                                 "--corpus", str(tmp_path / "nowhere")])
    assert elsewhere.exit_code == 1 and "not under the corpus" in elsewhere.output


@pytest.mark.parametrize("damage", ["width", "nan"])
def test_vectors_of_the_wrong_width_or_not_finite_are_refused_naming_the_source(
        exported: tuple[Path, Path, Path], tmp_path: Path, damage: str) -> None:
    with np.load(tmp_path / "part.npz") as data:
        arrays = dict(data)
    if damage == "width":
        arrays["vectors"] = arrays["vectors"][:, :-2]
    else:
        arrays["vectors"] = arrays["vectors"].copy()
        arrays["vectors"][1, 0] = np.nan
    bad = tmp_path / f"bad-{damage}.npz"
    np.savez(bad, **arrays)
    dim = np.load(tmp_path / "part.npz")["vectors"].shape[1]
    expected = (f"its vectors have {dim - 2} values, its provenance says {dim}" if damage == "width"
                else "1 vectors hold NaN or infinite values (the first: the window of")
    with pytest.raises(ImportSourceError, match=re.escape(expected)):
        import_vectors([bad], tmp_path / "new")
    assert not (tmp_path / "new").exists()  # nothing half-made
    result = CliRunner().invoke(indexer_cli, ["import", str(bad), "--index", str(tmp_path / "new")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}: ") and "internal error" not in result.output


def test_an_export_imported_back_into_its_index_replaces_its_files_not_doubles_them(
        exported: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, original, exports = exported
    before = _windows(original)
    report = import_vectors([exports], original)  # no --corpus: the files lie under the index's own corpus
    assert (report.files, report.replaced) == (3, 3)
    index = Index(original)
    assert index.catalog.counts()["files"] == 3 and len(index.catalog.corpus_roots()) == 1
    index.close()
    after = _windows(original)
    assert sorted(after) == sorted(before)
    for key, vector in before.items():
        np.testing.assert_allclose(after[key], vector, atol=1e-6)
