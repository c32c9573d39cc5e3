"""One writer at a time, readers answering during a build, and clear errors for broken indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import BuildOptions, Index, build_index
from indexer.errors import IndexCorruptError, IndexLockedError, QueryError
from indexer.store import VectorStore
from search import Engine
from search.cli import main as search_cli
from tests import helpers


@pytest.fixture
def built(tmp_path: Path, clap_checkpoint: Path) -> tuple[Path, Path, BuildOptions]:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "a.wav", helpers.tone(440, 2.0))
    helpers.write_audio(corpus / "b.wav", helpers.noise(2.0, seed=1))
    options = BuildOptions(model=str(clap_checkpoint))
    build_index(corpus, tmp_path / "index", options)
    return corpus, tmp_path / "index", options


def test_second_writer_is_refused_with_a_clear_message(built) -> None:  # type: ignore[no-untyped-def]
    corpus, index_path, options = built
    holder = Index(index_path)
    with holder.writer_lock():
        with pytest.raises(IndexLockedError, match=r"index is being written by pid \d+"):
            build_index(corpus, index_path, options)
    holder.close()
    build_index(corpus, index_path, options)  # free again once the first writer is done


def test_a_reader_keeps_answering_across_a_build(built) -> None:  # type: ignore[no-untyped-def]
    corpus, index_path, options = built
    engine = Engine(index_path)
    before = engine.query("a tone", k=10)
    assert {Path(h.path).name for h in before} == {"a.wav", "b.wav"}
    helpers.write_audio(corpus / "c.wav", helpers.chirp(200, 2000, 2.0))
    build_index(corpus, index_path, options)  # commits generation 2 and deletes generation 1's files
    after = engine.query("a tone", k=10)  # the warm engine picks up the new generation
    assert {Path(h.path).name for h in after} == {"a.wav", "b.wav", "c.wav"}
    engine.close()


def test_query_errors(built) -> None:  # type: ignore[no-untyped-def]
    _, index_path, _ = built
    engine = Engine(index_path)
    with pytest.raises(QueryError, match="empty query text"):
        engine.query("")
    with pytest.raises(QueryError, match="exceeds 2000"):
        engine.query("rain " * 1000)
    with pytest.raises(QueryError, match="nowhere.wav: file not found"):
        engine.similar(index_path / "nowhere.wav")
    engine.close()


def test_corrupt_and_wrong_dimension_index_files(built) -> None:  # type: ignore[no-untyped-def]
    _, index_path, _ = built
    segments = index_path / "segments.1.faiss"
    original = segments.read_bytes()
    segments.write_bytes(original[: len(original) // 3])
    result = CliRunner().invoke(search_cli, ["query", "rain", "--index", str(index_path)])
    assert result.exit_code == 1 and "segments.1.faiss: unreadable FAISS index" in result.stderr
    assert result.stderr.count("\n") == 1

    wrong = VectorStore.create(64)
    wrong.add([1], np.ones((1, 64), dtype=np.float32) / 8)
    wrong.save(segments)
    with pytest.raises(IndexCorruptError, match="dimension 64, the catalog says 512"):
        Engine(index_path).query("rain")
    segments.unlink()
    with pytest.raises(IndexCorruptError, match="missing, although the catalog names generation 1"):
        Engine(index_path).query("rain")
