"""Search filters: inside the FAISS search on every index type (against brute force over the filtered set),
their catalog semantics on SQLite and Postgres, container tags, and the CLI and HTTP forms."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from db.filters import SearchFilter, glob_regex
from indexer import BuildOptions, Index, build_index
from indexer.errors import FilterError
from indexer.media.tags import read_tags
from indexer.store import VectorStore, filtered_plan
from indexer.tuning import exact_neighbours, recall_at, tune_search_params
from search.engine import Engine
from tests import fake_faiss_gpu, helpers
from tests.service_support import tone_environment
from tests.test_index_types import clustered

FACTORIES = ["IDMap2,Flat", "IVF64,Flat", "IDMap2,HNSW16,Flat"]
N, DIM = 20_000, 64


# -- inside FAISS: every index type against an exact reference ---------------------------------------
@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    everything = clustered(N + 200, DIM, 1000, seed=0)
    ids = np.arange(N, dtype=np.int64) * 7 + 3  # catalog ids are not 0..n-1
    return everything[:N], everything[N:], ids  # 200 held-out queries of the same distribution


@pytest.fixture(scope="module")
def stores(data) -> dict[str, VectorStore]:  # type: ignore[no-untyped-def]
    vectors, _, ids = data
    flat = VectorStore.create(DIM)
    flat.add(ids, vectors)
    out = {}
    for factory in FACTORIES:
        store = flat if factory == "IDMap2,Flat" else flat.converted(factory)
        store.set_search_params(tune_search_params(store, target_recall=0.95).params)
        out[factory] = store
    return out


def _filtered_truth(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, among: np.ndarray, k: int) -> np.ndarray:
    mask = np.isin(ids, among)
    return ids[mask][exact_neighbours(vectors[mask], queries, k)]


def _check(result_ids: np.ndarray, truth: np.ndarray, among: np.ndarray, k: int) -> float:
    assert (result_ids[:, :k] >= 0).all(), "k results whenever k match"
    assert np.isin(result_ids, among).all(), "only matching ids"
    return recall_at(result_ids, truth)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("selectivity", [0.01, 0.1, 0.5])
def test_filtered_search_matches_brute_force_over_the_filtered_set(stores, data, factory: str,  # type: ignore[no-untyped-def]
                                                                   selectivity: float) -> None:
    vectors, queries, ids = data
    among = np.sort(np.random.default_rng(int(selectivity * 100)).choice(ids, int(selectivity * N), replace=False))
    truth = _filtered_truth(vectors, ids, queries, among, 10)
    result = stores[factory].search(queries, 10, among=among)
    assert _check(result.ids, truth, among, 10) >= 0.95


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IDMap2,HNSW16,Flat"])
@pytest.mark.parametrize("selectivity", [0.01, 0.1, 0.5])
def test_the_id_selector_path_alone_reaches_the_recall(stores, data, factory: str, selectivity: float) -> None:  # type: ignore[no-untyped-def]
    """The selector inside the IVF scan / HNSW walk (nprobe, efSearch widened for the selectivity), not
    the exact scoring the cost model picks for small sets, meets the bar too."""
    vectors, queries, ids = data
    among = np.sort(np.random.default_rng(7).choice(ids, int(selectivity * N), replace=False))
    truth = _filtered_truth(vectors, ids, queries[:50], among, 10)
    result = stores[factory].search_among(queries[:50], 10, among, exact=False)
    assert _check(result.ids, truth, among, 10) >= 0.95


@pytest.mark.parametrize("factory", FACTORIES)
def test_a_filter_aligned_with_the_clusters_still_reaches_the_recall(stores, data, factory: str) -> None:  # type: ignore[no-untyped-def]
    """Real filters follow content (a folder of drums): the matching vectors sit in a few IVF lists or graph
    regions, far from most queries. 10% of the vectors, chosen as the nearest to one direction."""
    vectors, queries, ids = data
    direction = vectors[0]
    among = np.sort(ids[np.argsort(-(vectors @ direction))[: N // 10]])
    truth = _filtered_truth(vectors, ids, queries, among, 10)
    for exact in (None, False):
        result = stores[factory].search_among(queries, 10, among, exact=exact)
        assert _check(result.ids, truth, among, 10) >= 0.95


@pytest.mark.parametrize("factory", FACTORIES)
def test_k_results_whenever_k_match_and_only_those_that_exist(stores, data, factory: str) -> None:  # type: ignore[no-untyped-def]
    vectors, queries, ids = data
    store = stores[factory]
    # Ten matching ids scattered over the index: exactly those ten, best first, for every query.
    ten = np.sort(np.random.default_rng(3).choice(ids, 10, replace=False))
    for exact in (None, False):
        result = store.search_among(queries[:20], 10, ten, exact=exact)
        assert all(set(row) == set(ten) for row in result.ids)
        assert (np.diff(result.scores, axis=1) <= 1e-6).all()
    # Three match: three results, then empty slots; ids the store lacks (a newer catalog) are ignored.
    three = np.concatenate([ten[:3], [-5, 10**9]])
    result = store.search(queries[:5], 10, among=three)
    assert (result.ids[:, :3] >= 0).all() and (result.ids[:, 3:] == -1).all()
    assert all(set(row[:3]) == set(ten[:3]) for row in result.ids)
    np.testing.assert_allclose(result.scores[:, :3], np.sort(queries[:5] @ vectors[np.isin(ids, ten[:3])].T)[:, ::-1],
                               rtol=1e-5)
    # Nothing matches: nothing comes back.
    assert (store.search(queries[:2], 10, among=np.zeros(0, dtype=np.int64)).ids == -1).all()


def test_the_cost_model_scores_small_sets_exactly_and_searches_large_ones_in_the_index(stores) -> None:  # type: ignore[no-untyped-def]
    for factory in FACTORIES:
        assert filtered_plan(stores[factory], 200) == "exact"
    # Most vectors: the graph and the lists are cheaper; a flat scan through a selector costs more than a
    # product with the matching vectors, once read back (kept with the filter).
    assert filtered_plan(stores["IDMap2,HNSW16,Flat"], N * 9 // 10) == "selector"
    assert filtered_plan(stores["IDMap2,Flat"], N * 9 // 10) == "exact"
    ivf = stores["IVF64,Flat"]
    tuned = dict(ivf.search_params)  # these vectors need half the lists (nprobe 32 of 64): a scan anyway
    assert tuned["nprobe"] >= 16 and filtered_plan(ivf, N * 9 // 10) == "exact"
    try:
        ivf.set_search_params({"nprobe": 2})
        assert filtered_plan(ivf, N * 9 // 10) == "selector"
    finally:
        ivf.set_search_params(tuned)


def test_filtered_search_on_a_gpu_without_selectors_runs_on_cpu_with_a_note(monkeypatch: pytest.MonkeyPatch, data) -> None:  # type: ignore[no-untyped-def]
    """The fake GPU index, like a faiss-gpu that takes no id selector, refuses one: filtered searches fall
    back to the CPU index (same results, a note says so), unfiltered ones stay on the GPU. IVF filtered
    searches probe chosen lists, which only the CPU index does."""
    from indexer.store import faiss_gpu

    fake_faiss_gpu.install(monkeypatch)
    vectors, queries, ids = data
    among = np.sort(ids[: N // 2])
    for factory in ("IDMap2,Flat", "IVF64,Flat"):
        store = VectorStore.create(DIM)
        store.add(ids, vectors)
        store = store if factory == "IDMap2,Flat" else store.converted(factory)
        store.set_search_params({"nprobe": 8} if factory != "IDMap2,Flat" else {})
        expected = store.search_among(queries, 10, among, exact=False)  # before the store has a GPU
        store.to_gpu(faiss_gpu(0))
        got = store.search_among(queries, 10, among, exact=False)
        np.testing.assert_array_equal(got.ids, expected.ids)
        assert store.filter_gpu_note is not None and "searches run on CPU" in store.filter_gpu_note
        store.search(queries, 10)
        assert store.gpu_note is None and store._gpu_index is not None  # unfiltered search still on the GPU


# -- the catalog's semantics --------------------------------------------------------------------------
RATE = 16000  # the ToneEncoder's; its windows are 2 s, one-hot by pitch


def _tagged_wav(path: Path, samples: np.ndarray, **tags: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with soundfile.SoundFile(str(path), "w", RATE, 1, format=path.suffix[1:].upper()) as f:
        for key, value in tags.items():
            setattr(f, key, value)
        f.write(samples)


def _mtime(path: Path, iso: str) -> None:
    stamp = datetime.fromisoformat(iso).timestamp()
    os.utime(path, (stamp, stamp))


def _tones(freq: float, seconds: float) -> np.ndarray:
    return helpers.tone(freq, seconds, rate=RATE)


@pytest.fixture
def library(tmp_path: Path, tone_model: Path, catalog_url: str | None) -> tuple[Path, Path, str | None]:
    """A small sound library: folders, formats, durations, tags and modified times that filters pick by."""
    corpus = tmp_path / "library"
    _tagged_wav(corpus / "drums" / "kick.wav", _tones(220, 2.0), artist="Ann", genre="Rock")
    _tagged_wav(corpus / "drums" / "snare.flac", _tones(330, 4.0), genre="Jazz")
    _tagged_wav(corpus / "field" / "rain.ogg", _tones(440, 6.0), title="Rain on the Roof", artist="Bob")
    helpers.write_audio(corpus / "field" / "deep" / "wind.mp3", _tones(660, 2.0), rate=RATE)
    _tagged_wav(corpus / "odd [name]_100%.wav", _tones(880, 2.0), title="Ünïcode Title")
    for name, iso in (("drums/kick.wav", "2020-01-01"), ("drums/snare.flac", "2022-06-01"),
                      ("field/rain.ogg", "2024-01-01"), ("field/deep/wind.mp3", "2025-03-01"),
                      ("odd [name]_100%.wav", "2019-05-05")):
        _mtime(corpus / name, iso)
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0, db_url=catalog_url))
    return corpus, tmp_path / "index", catalog_url


ALL = {"kick.wav", "snare.flac", "rain.ogg", "wind.mp3", "odd [name]_100%.wav"}


def _files(engine: Engine, **conditions: object) -> set[str]:
    hits = engine.query("a tone of 440 Hz", k=50, where=SearchFilter.parse(**conditions))  # type: ignore[arg-type]
    return {Path(h.path).name for h in hits}


def test_each_condition_admits_exactly_the_files_it_describes(library) -> None:  # type: ignore[no-untyped-def]
    corpus, index, db_url = library
    engine = Engine(index, db_url=db_url, device="cpu")
    try:
        assert _files(engine) == ALL
        assert _files(engine, under=corpus / "drums") == {"kick.wav", "snare.flac"}
        assert _files(engine, under=corpus / "field") == {"rain.ogg", "wind.mp3"}
        assert _files(engine, under=corpus) == ALL
        assert _files(engine, under=corpus.parent) == ALL  # a folder above the corpus root
        assert _files(engine, under=corpus / "dr") == set()  # a name prefix is not a folder
        assert _files(engine, under=corpus / "field" / "deep" / "wind.mp3") == {"wind.mp3"}
        assert _files(engine, under=corpus.parent / "elsewhere") == set()
        assert _files(engine, glob="drums/*") == {"kick.wav", "snare.flac"}
        assert _files(engine, glob="*.wav") == {"kick.wav", "odd [name]_100%.wav"}
        assert _files(engine, glob="*/deep/*") == {"wind.mp3"}
        assert _files(engine, glob="field/????.ogg") == {"rain.ogg"}
        assert _files(engine, glob="[!d]*.wav") == {"odd [name]_100%.wav"}
        assert _files(engine, glob="odd [[]name]_100%.wav") == {"odd [name]_100%.wav"}  # brackets, % and _ literal
        assert _files(engine, glob="odd_*") == set()
        assert _files(engine, glob=str(corpus / "drums") + "/k*") == {"kick.wav"}  # absolute pattern
        assert _files(engine, extensions=["wav"]) == {"kick.wav", "odd [name]_100%.wav"}
        assert _files(engine, extensions=[".FLAC", "ogg"]) == {"snare.flac", "rain.ogg"}
        assert _files(engine, min_duration=3) == {"snare.flac", "rain.ogg"}
        assert _files(engine, max_duration=2.5) == {"kick.wav", "wind.mp3", "odd [name]_100%.wav"}
        assert _files(engine, min_duration=3, max_duration=5) == {"snare.flac"}
        assert _files(engine, modified_after="2022-01-01", modified_before="2024-06-01") == {"snare.flac", "rain.ogg"}
        assert _files(engine, modified_before="2020-01-01") == {"odd [name]_100%.wav"}
        assert _files(engine, modified_after="2020-01-01T00:00:00") == ALL - {"odd [name]_100%.wav"}
        assert _files(engine, tags=["genre=JAZZ"]) == {"snare.flac"}
        assert _files(engine, tags=["artist=ann", "genre=rock"]) == {"kick.wav"}
        assert _files(engine, tags=["artist=ann", "genre=jazz"]) == set()
        assert _files(engine, tags=["title=rain on the roof"]) == {"rain.ogg"}
        assert _files(engine, tags=["title=ÜNÏCODE TITLE"]) == {"odd [name]_100%.wav"}  # casefold, not ASCII lower
        assert _files(engine, modality="audio") == ALL
        assert _files(engine, modality="visual") == set()
        assert _files(engine, under=corpus / "drums", extensions=["wav"]) == {"kick.wav"}
    finally:
        engine.close()


def test_a_selective_filter_still_returns_k_hits(library) -> None:  # type: ignore[no-untyped-def]
    """Unfiltered, the 440 Hz file's three windows lead; under drums/ (three windows, none at 440 Hz) the
    three drum windows come back: not a post-filter of the top k."""
    corpus, index, db_url = library
    engine = Engine(index, db_url=db_url, device="cpu")
    try:
        top = engine.query("a tone of 440 Hz", k=3, per_file=False)  # windows: rain.ogg has the three best
        assert {Path(h.path).name for h in top} == {"rain.ogg"}
        hits = engine.query("a tone of 440 Hz", k=3, where=SearchFilter.parse(under=corpus / "drums"), per_file=False)
        assert sorted((Path(h.path).name, h.start) for h in hits) == [("kick.wav", 0.0), ("snare.flac", 0.0),
                                                                      ("snare.flac", 2.0)]
        assert [h.rank for h in hits] == [1, 2, 3]
    finally:
        engine.close()


def test_tags_are_read_from_every_container(tmp_path: Path) -> None:
    import av

    samples = _tones(440, 1.0)
    for ext in ("wav", "flac", "ogg"):
        _tagged_wav(tmp_path / f"t.{ext}", samples, title="Título", artist="The Band", album="LP", genre="Jazz")
        assert read_tags(tmp_path / f"t.{ext}") == {"title": "Título", "artist": "The Band", "album": "LP",
                                                    "genre": "Jazz"}
    for ext, codec in (("mp3", "libmp3lame"), ("m4a", "aac"), ("opus", "libopus")):
        with av.open(str(tmp_path / f"t.{ext}"), "w") as container:
            container.metadata.update({"title": "Song", "artist": "X", "genre": "Rock", "comment": "a comment"})
            stream = container.add_stream(codec, rate=48000 if codec == "libopus" else RATE)
            stream.layout = "mono"
            helpers.mux_audio(container, stream, samples, RATE)
        # FFmpeg writes a comment as ID3 TXXX:comment, MP4 ©cmt and Vorbis DESCRIPTION (its mapping).
        said = "description" if ext == "opus" else "comment"
        assert read_tags(tmp_path / f"t.{ext}") == {"title": "Song", "artist": "X", "genre": "Rock", said: "a comment"}
    helpers.write_audio(tmp_path / "plain.wav", samples, rate=RATE)
    assert read_tags(tmp_path / "plain.wav") == {}
    (tmp_path / "junk.mp3").write_bytes(b"\x00" * 100)
    assert read_tags(tmp_path / "junk.mp3") == {}  # no tags, no exception: the decoder reports the file


def test_a_changed_file_gets_its_new_tags_and_a_removed_one_loses_them(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "c"
    _tagged_wav(corpus / "a.wav", _tones(220, 2.0), genre="Rock")
    _tagged_wav(corpus / "b.wav", _tones(330, 2.0), genre="Rock")
    options = BuildOptions(model=str(tone_model), decode_workers=0)
    build_index(corpus, tmp_path / "index", options)
    _tagged_wav(corpus / "a.wav", _tones(220, 4.0), genre="Ambient")
    (corpus / "b.wav").unlink()
    build_index(corpus, tmp_path / "index", options)
    index = Index(tmp_path / "index")
    try:
        files = index.catalog.corpus_files(index.catalog.writer().corpus_id(str(corpus.resolve())))
        assert index.catalog.file_tags([r.id for r in files.values()]) == {files["a.wav"].id: {"genre": "Ambient"}}
        with index.catalog.session() as s:
            from sqlalchemy import func, select

            from db import FileTagRow

            assert s.scalar(select(func.count()).select_from(FileTagRow)) == 1
    finally:
        index.close()


def test_bad_conditions_are_one_line_errors() -> None:
    with pytest.raises(FilterError, match="tag filter 'genre' is not key=value"):
        SearchFilter.parse(tags=["genre"])
    with pytest.raises(FilterError, match="unknown tag 'mood'"):
        SearchFilter.parse(tags=["mood=happy"])
    with pytest.raises(FilterError, match="time 'yesterday' is not an ISO date"):
        SearchFilter.parse(modified_after="yesterday")
    with pytest.raises(FilterError, match="empty duration range: 5.0 > 2.0"):
        SearchFilter(min_duration=5.0, max_duration=2.0)
    with pytest.raises(FilterError, match="unknown modality 'smell'"):
        SearchFilter(modality="smell")
    assert SearchFilter().is_empty and SearchFilter.parse(extensions=["", "."]).is_empty


def test_glob_patterns_become_anchored_regular_expressions() -> None:
    import fnmatch
    import re

    names = ["a.wav", "dir/a.wav", "a.wavx", "b.flac", "[x].wav", "a+b.wav", "q?.wav", "é.wav", "x]y.wav"]
    for pattern in ("*.wav", "dir/*", "?.wav", "[ab].*", "[!a]*", "[[]x].wav", "a+b.*", "*]*", "é*", "[]x]*"):
        regex = re.compile(glob_regex(pattern))
        assert [n for n in names if regex.search(n)] == [n for n in names if fnmatch.fnmatchcase(n, pattern)], pattern


# -- the CLI and the HTTP API ----------------------------------------------------------------------------
def test_search_cli_filters(library) -> None:  # type: ignore[no-untyped-def]
    from search.cli import main

    corpus, index, db_url = library
    db = ["--db", db_url] if db_url else []
    runner = CliRunner()
    result = runner.invoke(main, ["query", "a tone of 440 Hz", "--index", str(index), *db, "-k", "10", "--json", "--per-window",
                                  "--under", str(corpus / "drums"), "--ext", "flac"])
    assert result.exit_code == 0, result.output
    assert [(Path(h["path"]).name, h["start"]) for h in json.loads(result.stdout)] == [("snare.flac", 0.0),
                                                                                      ("snare.flac", 2.0)]
    result = runner.invoke(main, ["query", "a tone of 440 Hz", "--index", str(index), *db, "--json", "--per-window",
                                  "--tag", "artist=BOB", "--min-duration", "5", "--modified-after", "2023-12-31"])
    assert result.exit_code == 0, result.output
    assert {Path(h["path"]).name for h in json.loads(result.stdout)} == {"rain.ogg"}
    result = runner.invoke(main, ["similar", str(corpus / "drums" / "kick.wav"), "--index", str(index), *db, "--per-window",
                                  "--json", "--glob", "field/*", "--has", "audio", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2 and all("/field/" in h["path"] for h in json.loads(result.stdout))
    result = runner.invoke(main, ["query", "x", "--index", str(index), *db, "--glob", "nothing-*"])
    assert result.exit_code == 0 and result.stdout.strip() == "no results"
    result = runner.invoke(main, ["query", "x", "--index", str(index), *db, "--tag", "genre"])
    assert result.exit_code == 1 and "Error: tag filter 'genre' is not key=value" in result.output
    result = runner.invoke(main, ["query", "x", "--index", str(index), *db, "--modified-before", "soon"])
    assert result.exit_code == 1 and "time 'soon' is not an ISO date" in result.output


def test_http_api_filters(library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from search.service import BackgroundServer, ServiceConfig, create_app

    corpus, index, db_url = library
    with tone_environment(tmp_path / "cache"), BackgroundServer(create_app(index, ServiceConfig(), db_url=db_url)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/api/query", params={"q": "a tone of 440 Hz", "k": 3, "under": str(corpus / "drums"),
                                                     "per_window": "true"})
        assert response.status_code == 200, response.text
        assert sorted((h["name"], h["start"]) for h in response.json()["hits"]) == [
            ("kick.wav", 0.0), ("snare.flac", 0.0), ("snare.flac", 2.0)]
        response = client.get("/api/query", params=[("q", "440"), ("ext", "wav"), ("ext", "mp3"), ("tag", "genre=rock")])
        assert [h["name"] for h in response.json()["hits"]] == ["kick.wav"]
        wav = (corpus / "field" / "rain.ogg").read_bytes()
        response = client.post("/api/similar", files={"file": ("rain.ogg", wav)},
                               data={"k": "5", "glob": "drums/*", "max_duration": "3"})
        assert response.status_code == 200, response.text
        assert [h["name"] for h in response.json()["hits"]] == ["kick.wav"]
        first = client.get("/api/query", params={"q": "880"}).json()["hits"][0]
        response = client.get(f"/api/segments/{first['segment_id']}/similar", params={"k": 10, "glob": "field/*",
                                                                                   "per_window": "true"})
        assert {h["name"] for h in response.json()["hits"]} == {"rain.ogg", "wind.mp3"}
        response = client.get("/api/query", params={"q": "440", "tag": "genre"})
        assert response.status_code == 400 and "tag filter 'genre' is not key=value" in response.json()["detail"]
        response = client.get("/api/query", params={"q": "440", "has": "smell"})
        assert response.status_code == 422
        page = client.get("/").text
        assert 'id="filters"' in page and 'id="f-under"' in page


def test_classify_labels_only_the_files_a_filter_admits(tmp_path: Path, tone_model: Path) -> None:
    """classify searches no index: its filters are judged on the files themselves (path, extension,
    duration), with the same meaning as a search's."""
    from search.cli import main as search_cli

    folder = tmp_path / "clips"
    helpers.write_audio(folder / "short" / "a.wav", helpers.tone(440, 1.0, rate=RATE), RATE)
    helpers.write_audio(folder / "long" / "b.wav", helpers.tone(440, 6.0, rate=RATE), RATE)
    helpers.write_audio(folder / "long" / "c.flac", helpers.tone(880, 6.0, rate=RATE), RATE)
    labels = tmp_path / "labels.txt"
    labels.write_text("a 440 beep\nan 880 whistle\n")
    runner = CliRunner()

    def classified(*options: str) -> list[str]:
        result = runner.invoke(search_cli, ["classify", str(folder), "--labels", str(labels), "--model",
                                            str(tone_model), "--prompts", "label", "--json", *options])
        assert result.exit_code == 0, result.output
        return sorted(Path(entry["path"]).relative_to(folder).as_posix() for entry in json.loads(result.stdout))

    assert classified() == ["long/b.wav", "long/c.flac", "short/a.wav"]
    assert classified("--ext", "wav") == ["long/b.wav", "short/a.wav"]
    assert classified("--glob", "long/*") == ["long/b.wav", "long/c.flac"]
    assert classified("--min-duration", "3", "--ext", "wav") == ["long/b.wav"]
    assert classified("--under", str(folder / "short")) == ["short/a.wav"]
