"""Building an index from real files and searching it, through the library and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import BuildOptions, Index, build_index
from indexer.cli import EXIT_PARTIAL
from indexer.cli import main as indexer_cli
from indexer.errors import CheckpointNotFoundError, EmptyCorpusError, IndexMismatchError
from search import Engine
from search.cli import main as search_cli
from tests import helpers

CORPUS_FILES = [
    "clicks.opus",
    "noise/brown.mp3",
    "noise/white.ogg",
    "speech/hello.wav",
    "sweep.flac",
    "tones/a440.wav",
    "tones/a880.m4a",
]


@pytest.fixture
def options(clap_checkpoint: Path) -> BuildOptions:
    return BuildOptions(model=str(clap_checkpoint), batch_size=4)


def _rows(index_path: Path, db_url: str | None = None) -> list[tuple]:
    from sqlalchemy import text

    catalog = Index(index_path, db_url=db_url).catalog
    with catalog.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.id, f.path, s.start, s.end FROM segments s JOIN files f ON f.id = s.file_id ORDER BY s.id"
        )).all()
    catalog.close()
    return [tuple(r) for r in rows]


def _vectors(index_path: Path, db_url: str | None = None) -> dict[int, np.ndarray]:
    stores = Index(index_path, db_url=db_url).load_stores()
    ids = stores["segments"].ids()
    return dict(zip(ids.tolist(), stores["segments"].reconstruct(ids)))


def test_build_indexes_every_format_with_windows_and_provenance(corpus: Path, tmp_path: Path, options: BuildOptions) -> None:
    index_path = tmp_path / "index"
    report = build_index(corpus, index_path, options)
    assert (report.added, report.failed, report.unchanged) == (len(CORPUS_FILES), [], 0)

    rows = _rows(index_path)
    assert sorted({path for _, path, _, _ in rows}) == CORPUS_FILES
    # The 12 s sweep is two 10 s windows, the second aligned to the end; short files are one window.
    sweep = [(start, end) for _, path, start, end in rows if path == "sweep.flac"]
    assert sweep == [(0.0, 10.0), (2.0, 12.0)]
    a440 = [(start, end) for _, path, start, end in rows if path == "tones/a440.wav"]
    assert a440 == [(0.0, 3.0)]
    assert report.segments_added == len(rows) == len(CORPUS_FILES) + 1

    provenance = Index(index_path).provenance()
    assert provenance.model_id == "laion_clap:random-clap.pt"
    assert provenance.checkpoint_sha256 == helpers_sha256(options.model)
    assert (provenance.dim, provenance.metric, provenance.faiss_factory) == (512, "inner_product", "IDMap2,Flat")
    assert provenance.preprocessing["quantize"] == "int16" and provenance.preprocessing["fill"] == "repeatpad"
    assert {"torch", "faiss-cpu", "laion-clap", "numpy"} <= set(provenance.versions)
    manifest = json.loads((index_path / "manifest.json").read_text())
    assert manifest["generation"] == 1 and manifest["provenance"]["model_id"] == provenance.model_id
    assert sorted(p.name for p in index_path.glob("*.faiss")) == ["files.1.faiss", "segments.1.faiss"]


def helpers_sha256(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_every_file_finds_itself_first(corpus: Path, tmp_path: Path, clap_checkpoint: Path) -> None:
    index_path = tmp_path / "index"
    build_index(corpus, index_path, BuildOptions(model=str(clap_checkpoint), batch_size=4))
    engine = Engine(index_path)
    try:
        for name in CORPUS_FILES:
            hits = engine.similar(corpus / name, k=3)
            assert hits[0].path == str(corpus / name), f"{name}: {[(h.path, h.score) for h in hits]}"
            assert hits[0].rank == 1 and hits[0].score >= hits[1].score
    finally:
        engine.close()


def test_rebuild_changes_exactly_the_added_and_deleted_files(
    corpus: Path, tmp_path: Path, clap_checkpoint: Path, catalog_url: str | None
) -> None:
    options = BuildOptions(model=str(clap_checkpoint), batch_size=4, db_url=catalog_url)
    index_path = tmp_path / "index"
    build_index(corpus, index_path, options)
    rows_before, vectors_before = _rows(index_path, catalog_url), _vectors(index_path, catalog_url)

    (corpus / "noise" / "white.ogg").unlink()
    helpers.write_audio(corpus / "tones" / "a220.flac", helpers.tone(220, 4.0))
    report = build_index(corpus, index_path, options)

    assert (report.added, report.removed, report.updated, report.unchanged) == (1, 1, 0, len(CORPUS_FILES) - 1)
    rows_after, vectors_after = _rows(index_path, catalog_url), _vectors(index_path, catalog_url)
    kept = [r for r in rows_before if r[1] != "noise/white.ogg"]
    added = [r for r in rows_after if r not in rows_before]
    assert [r for r in rows_after if r in rows_before] == kept
    assert [(path, start, end) for _, path, start, end in added] == [("tones/a220.flac", 0.0, 4.0)]
    assert set(vectors_after) == {r[0] for r in rows_after}
    for segment_id, _, _, _ in kept:  # untouched vectors are bit-identical
        np.testing.assert_array_equal(vectors_after[segment_id], vectors_before[segment_id])
    # Generation 2 wrote only its new files; the removal is a deletion from the sealed files of generation 1.
    assert sorted(p.name for p in index_path.glob("*.faiss")) == ["files.1.faiss", "files.2.faiss", "segments.1.faiss",
                                                                  "segments.2.faiss"]

    # A third run with nothing changed writes nothing.
    report = build_index(corpus, index_path, options)
    assert (report.added, report.removed, report.unchanged, report.changed) == (0, 0, len(CORPUS_FILES), False)
    assert Index(index_path, db_url=catalog_url).generation() == 2


def test_postgres_password_is_never_written_or_printed(corpus: Path, tmp_path: Path, clap_checkpoint: Path,
                                                       postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    password = url.password
    assert password  # the fixture's URL carries one (a trusting server ignores it)
    index_path = tmp_path / "index"
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(index_path), "--model",
                                              str(clap_checkpoint), "--db", postgres_url, "--quiet"])
    assert result.exit_code == 0, result.output
    assert not (index_path / "catalog.sqlite").exists()
    manifest = (index_path / "manifest.json").read_text()
    assert password not in manifest and postgres_url.replace(f":{password}", "") in manifest
    info = CliRunner().invoke(indexer_cli, ["info", "--index", str(index_path), "--db", postgres_url])
    assert password not in info.output and f"{url.username}:***@{url.host}" in info.output
    assert password not in result.output


def test_changed_content_is_reembedded(corpus: Path, tmp_path: Path, options: BuildOptions) -> None:
    index_path = tmp_path / "index"
    build_index(corpus, index_path, options)
    helpers.write_audio(corpus / "tones" / "a440.wav", helpers.tone(440, 6.0))
    report = build_index(corpus, index_path, options)
    assert (report.updated, report.added, report.unchanged) == (1, 0, len(CORPUS_FILES) - 1)
    assert [(s, e) for _, p, s, e in _rows(index_path) if p == "tones/a440.wav"] == [(0.0, 6.0)]


def test_corrupt_file_is_reported_and_does_not_stop_the_run(corpus: Path, tmp_path: Path, clap_checkpoint: Path) -> None:
    (corpus / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    result = CliRunner().invoke(
        indexer_cli, ["build", str(corpus), "--index", str(tmp_path / "index"), "--model", str(clap_checkpoint), "--quiet"]
    )
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert f"{len(CORPUS_FILES)} added" in result.stdout and "1 failed" in result.stdout
    failure_lines = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failure_lines) == 1
    assert failure_lines[0] == f"failed: {corpus / 'broken.wav'}: damaged WAV header"  # plain words
    assert len({p for _, p, _, _ in _rows(tmp_path / "index")}) == len(CORPUS_FILES)

    info = CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "index"), "--failed", "--json"])
    (failed,) = json.loads(info.stdout)["failed"]
    assert failed["path"] == str(corpus / "broken.wav")
    assert failed["reason"].startswith("damaged WAV header (soundfile: ") and "pyav: " in failed["reason"]


def test_empty_corpus_is_a_one_line_error(tmp_path: Path, clap_checkpoint: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(EmptyCorpusError, match="no audio or video files"):
        build_index(tmp_path / "empty", tmp_path / "index", BuildOptions(model=str(clap_checkpoint)))
    result = CliRunner().invoke(indexer_cli, ["build", str(tmp_path / "empty"), "--index", str(tmp_path / "index")])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("Error: ") and "no audio or video files" in result.stderr


def test_missing_checkpoint_offline_names_the_file(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(CheckpointNotFoundError, match=r"630k-audioset-best\.pt is not in the Hugging Face cache"):
        build_index(corpus, tmp_path / "index", BuildOptions(model="630k-audioset-best"))
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(tmp_path / "index"), "--model", "630k-best"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "630k-best.pt" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_unknown_model_name(tmp_path: Path, corpus: Path) -> None:
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(tmp_path / "i"), "--model", "nope"])
    assert result.exit_code == 1 and "unknown model 'nope'" in result.stderr


def test_model_mismatch_is_refused(corpus: Path, tmp_path: Path, options: BuildOptions, other_clap_checkpoint: Path) -> None:
    index_path = tmp_path / "index"
    build_index(corpus, index_path, options)
    with pytest.raises(IndexMismatchError, match="index was built with model laion_clap:random-clap.pt"):
        Engine(index_path, model=str(other_clap_checkpoint))
    with pytest.raises(IndexMismatchError):
        build_index(corpus, index_path, BuildOptions(model=str(other_clap_checkpoint)))
    result = CliRunner().invoke(search_cli, ["query", "organ", "--index", str(index_path), "--model", str(other_clap_checkpoint)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "other-clap.pt" in result.stderr and "random-clap.pt" in result.stderr


def test_cli_query_and_similar_print_ranked_json(corpus: Path, tmp_path: Path, clap_checkpoint: Path, monkeypatch) -> None:
    index_path = tmp_path / "index"
    monkeypatch.setenv("RESOUND_INDEX", str(index_path))  # --index defaults to $RESOUND_INDEX
    runner = CliRunner()
    result = runner.invoke(indexer_cli, ["build", str(corpus), "--model", str(clap_checkpoint), "--batch-size", "8"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(search_cli, ["query", "a pure sine tone", "-k", "4", "--json", "--mode", "vector"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert all(set(h) == {"rank", "path", "start", "end", "score", "windows", "tags", "matched_words", "keyword_score",
                          "fused_score"} for h in hits)
    assert len({h["path"] for h in hits}) == 4  # one hit per file: k counts files
    assert all(h["windows"][0] == {"start": h["start"], "end": h["end"], "score": h["score"]} for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)

    result = runner.invoke(search_cli, ["similar", str(corpus / "speech" / "hello.wav"), "-k", "2", "--json"])
    assert json.loads(result.stdout)[0]["path"] == str(corpus / "speech" / "hello.wav")

    result = runner.invoke(search_cli, ["similar", str(corpus / "speech" / "hello.wav"), "-k", "2"])
    header, first = (line.split() for line in result.stdout.splitlines()[:2])
    assert header[:4] == ["rank", "score", "time", "file"] and header[-1] in ("file", f"{corpus})")  # root if it fits
    assert first[0] == "1" and first[-1] == "speech/hello.wav"  # relative to the corpus root

    info = json.loads(runner.invoke(indexer_cli, ["info", "--json"]).stdout)
    assert info["counts"] == {"corpora": 1, "files": len(CORPUS_FILES), "segments": len(CORPUS_FILES) + 1, "failures": 0}


def test_missing_index_and_empty_query_errors(tmp_path: Path, corpus: Path, options: BuildOptions) -> None:
    result = CliRunner().invoke(search_cli, ["query", "x", "--index", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no resound index here" in result.stderr
    build_index(corpus, tmp_path / "index", options)
    result = CliRunner().invoke(search_cli, ["query", "   ", "--index", str(tmp_path / "index")])
    assert result.exit_code == 2 and "empty query text" in result.stderr  # a usage error (docs/errors.md)


def test_postgres_and_sqlite_catalogs_give_the_same_results(corpus: Path, tmp_path: Path, clap_checkpoint: Path,
                                                            postgres_url: str) -> None:
    options = BuildOptions(model=str(clap_checkpoint), batch_size=8)
    build_index(corpus, tmp_path / "sqlite", options)
    build_index(corpus, tmp_path / "postgres", BuildOptions(model=str(clap_checkpoint), batch_size=8, db_url=postgres_url))
    engines = [Engine(tmp_path / "sqlite"), Engine(tmp_path / "postgres")]
    try:
        for text in ("a pure tone", "speech", "noise"):
            a, b = (e.query(text, k=8) for e in engines)
            assert [(h.rank, h.path, h.start, h.end) for h in a] == [(h.rank, h.path, h.start, h.end) for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
        a, b = (e.similar(corpus / "sweep.flac", k=3) for e in engines)
        assert [h.to_json() for h in a] == [h.to_json() for h in b]
    finally:
        for e in engines:
            e.close()
