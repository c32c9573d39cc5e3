"""Searching a library as its owner does: folders named as the results table shows them, empty answers
that say why, and "more like this" that starts with the file itself."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from db.filters import SearchFilter
from indexer import BuildOptions, build_index
from search.engine import Engine
from tests import helpers
from tests.service_support import tone_environment

RATE = 16000


@pytest.fixture
def library(tmp_path: Path, tone_model: Path, catalog_url: str | None) -> tuple[Path, Path, str | None]:
    corpus = tmp_path / "library"
    for name, freq in (("a/dog.wav", 220), ("a/cat.wav", 330), ("b/bark.wav", 440), ("b/deep/howl.wav", 660),
                       ("top.wav", 880)):
        helpers.write_audio(corpus / name, helpers.tone(freq, 2.0, rate=RATE), RATE)
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0, db_url=catalog_url))
    return corpus, tmp_path / "index", catalog_url


def _names(engine: Engine, **conditions: object) -> set[str]:
    hits = engine.query("a tone of 440 Hz", k=50, where=SearchFilter.parse(**conditions))  # type: ignore[arg-type]
    return {h.relative_path for h in hits}


def test_a_relative_folder_is_found_inside_the_corpus_root_wherever_the_shell_stands(
        library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    corpus, index, db_url = library
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "b").mkdir(parents=True)  # a folder named b here, outside every corpus
    monkeypatch.chdir(elsewhere)
    engine = Engine(index, db_url=db_url, device="cpu")
    try:
        assert _names(engine, under="b") == {"b/bark.wav", "b/deep/howl.wav"}
        assert _names(engine, under="b/deep/") == {"b/deep/howl.wav"}
        assert _names(engine, under="./a") == {"a/dog.wav", "a/cat.wav"}
        assert _names(engine, under="a/dog.wav") == {"a/dog.wav"}
        assert _names(engine, under=".") == {"a/dog.wav", "a/cat.wav", "b/bark.wav", "b/deep/howl.wav", "top.wav"}
        assert _names(engine, under="b/de") == set()  # a name prefix is not a folder
        monkeypatch.chdir(corpus / "b")  # a folder from here that lies in the corpus means that folder
        assert _names(engine, under="deep") == {"b/deep/howl.wav"}
        assert _names(engine, under="..") == {"a/dog.wav", "a/cat.wav", "b/bark.wav", "b/deep/howl.wav", "top.wav"}
        assert _names(engine, under=corpus / "a") == {"a/dog.wav", "a/cat.wav"}  # absolute, as before
    finally:
        engine.close()


def test_an_empty_answer_says_which_filter_admitted_nothing(library, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.cli import main

    corpus, index, db_url = library
    monkeypatch.chdir(tmp_path)
    db = ["--db", db_url] if db_url else []
    runner = CliRunner()
    result = runner.invoke(main, ["query", "440", "--index", str(index), *db, "--under", "c", "--ext", "wav"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no results"
    assert (f"note: no results: under 'c' admits no indexed file (under 'c' admits none (no such folder here, "
            f"nor in the corpus root {corpus}); ext wav admits 5; 5 files indexed)") in result.stderr
    result = runner.invoke(main, ["query", "440", "--index", str(index), *db, "--under", "a", "--glob", "b/*"])
    assert result.stdout.strip() == "no results"
    assert ("note: no results: each filter admits files, but no indexed file passes them all (under 'a' admits 2; "
            "glob 'b/*' admits 2; 5 files indexed)") in result.stderr
    result = runner.invoke(main, ["query", "440", "--index", str(index), *db, "--under", "b", "--json"])
    assert {Path(h["path"]).name for h in json.loads(result.stdout)} == {"bark.wav", "howl.wav"}
    assert result.stderr == ""


def test_the_http_folder_filter_is_relative_to_the_corpus_root(library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.service import BackgroundServer, ServiceConfig, create_app

    corpus, index, db_url = library
    with tone_environment(tmp_path / "cache"), BackgroundServer(create_app(index, ServiceConfig(), db_url=db_url)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/api/query", params={"q": "440", "k": 10, "under": "b"})
        assert response.status_code == 200, response.text
        assert {h["name"] for h in response.json()["hits"]} == {"bark.wav", "howl.wav"}
        assert response.json()["notes"] == []
        response = client.get("/api/query", params={"q": "440", "under": "nowhere"})
        assert response.json()["hits"] == []
        assert response.json()["notes"][0].startswith("no results: under 'nowhere' admits no indexed file")
        response = client.get("/api/query", params={"q": "440", "under": str(corpus / "a")})
        assert {h["name"] for h in response.json()["hits"]} == {"dog.wav", "cat.wav"}


# -- "more like this" -----------------------------------------------------------------------------------
def _mixture(pitches: list[float]) -> np.ndarray:
    """Two-second windows of the given pitches, one after another (the tone encoder's windows)."""
    return np.concatenate([helpers.tone(p, 2.0, rate=RATE) for p in pitches])


@pytest.fixture
def takes(tmp_path: Path, tone_model: Path) -> tuple[Path, Path]:
    """Two hundred files of two to five windows of the tone encoder's pitches: many files share a mix of
    pitches in part, and some in full (copies with other names)."""
    rng = np.random.default_rng(7)
    corpus = tmp_path / "takes"
    pitches = [220.0, 330.0, 440.0, 660.0, 880.0]
    for n in range(198):
        chosen = [pitches[i] for i in rng.integers(0, 5, size=int(rng.integers(2, 6)))]
        helpers.write_audio(corpus / f"take_{n:02d}.wav", _mixture(chosen), RATE)
    helpers.write_audio(corpus / "harp_00.wav", _mixture([440, 440, 440]), RATE)  # one window of harp_01's kind
    helpers.write_audio(corpus / "harp_01.wav", _mixture([440, 440, 660]), RATE)
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    return corpus, tmp_path / "index"


def test_every_indexed_file_ranks_itself_first_with_its_exact_score(takes) -> None:  # type: ignore[no-untyped-def]
    corpus, index = takes
    engine = Engine(index, device="cpu")
    try:
        files = sorted(corpus.iterdir())
        for path in files:
            hits = engine.similar(path, k=5)
            assert Path(hits[0].path) == path, (path, [h.path for h in hits])
            assert hits[0].score == pytest.approx(1.0, abs=1e-6)
            assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
            assert all(a.score >= b.score - 1e-6 for a, b in itertools.pairwise(hits))
            assert engine.notes == []
        # harp_01's mean vector matches harp_00's 440 Hz windows (0.894) as well as its own best window:
        # files against files, harp_01 itself leads at 1.0 (takes of the same mix tie with it, after it)
        # and harp_00 scores 2/sqrt(5), its windows too.
        hits = engine.similar(corpus / "harp_01.wav", k=len(files))
        scores = {Path(h.path).name: h.score for h in hits}
        assert hits[0].relative_path == "harp_01.wav"
        assert scores["harp_00.wav"] == pytest.approx(2 / np.sqrt(5), abs=1e-5)
        assert [round(w.score, 4) for w in hits[0].windows][:1] == [round(2 / np.sqrt(5), 4)]
    finally:
        engine.close()


def test_exclude_self_leaves_the_file_and_its_copies_out_and_says_so(takes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.cli import main

    corpus, index = takes
    copy = tmp_path / "outside" / "same bytes.wav"
    copy.parent.mkdir()
    copy.write_bytes((corpus / "harp_01.wav").read_bytes())
    runner = CliRunner()
    result = runner.invoke(main, ["similar", str(copy), "--index", str(index), "--json", "-k", "3"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert Path(hits[0]["path"]).name == "harp_01.wav" and hits[0]["score"] == pytest.approx(1.0, abs=1e-6)
    result = runner.invoke(main, ["similar", str(corpus / "harp_01.wav"), "--index", str(index), "--json", "-k", "3",
                                  "--exclude-self"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert "harp_01.wav" not in {Path(h["path"]).name for h in hits} and len(hits) == 3
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert "note: left out" in result.stderr and "itself (indexed as harp_01.wav)" in result.stderr
    result = runner.invoke(main, ["similar", str(corpus / "harp_01.wav"), "--index", str(index), "--json", "-k", "3",
                                  "--exclude-self", "--per-window"])
    assert result.exit_code == 0, result.output
    assert "harp_01.wav" not in {Path(h["path"]).name for h in json.loads(result.stdout)}
    result = runner.invoke(main, ["similar", str(corpus / "harp_01.wav"), "--index", str(index), "--json", "-k", "2",
                                  "--glob", "take_*"])
    assert all(Path(h["path"]).name.startswith("take_") for h in json.loads(result.stdout))


def test_a_file_that_is_not_in_the_index_is_embedded_and_ranked_by_file_vector(takes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _corpus, index = takes
    outside = helpers.write_audio(tmp_path / "new.wav", _mixture([440, 440, 660, 440]), RATE)
    engine = Engine(index, device="cpu")
    try:
        hits = engine.similar(outside, k=200)
        # (3, 1)/sqrt(10) against harp_00 (1, 0): 0.949; against harp_01 (2, 1)/sqrt(5): 0.990.
        scores = {Path(h.path).name: h.score for h in hits}
        assert scores["harp_01.wav"] == pytest.approx(7 / np.sqrt(50), abs=1e-5)
        assert scores["harp_00.wav"] == pytest.approx(3 / np.sqrt(10), abs=1e-5)
        assert engine.notes == []
    finally:
        engine.close()
