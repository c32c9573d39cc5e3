"""The indexing speed levers keep what is indexed: precision auto's choice and its record, the decoding
thread, batched catalog writes and the cheap downmix (issue 17). Speed itself: bench/indexing_throughput.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sqlalchemy import select, text

from db import Base, Catalog, FailureRow, FileRow, SegmentRow, sqlite_url
from db.catalog import NewFile
from indexer import BuildOptions, build_index
from indexer.embed import SegmentInputs
from indexer.encoders import precision as precision_module
from indexer.encoders.precision import agreement_windows, bf16_agreement, resolve_precision
from indexer.errors import AudioDecodeError
from indexer.index import Index
from indexer.media.decode import decode_audio, downmix
from indexer.starter import WEIGHTS_PATH, StarterEncoder
from tests import helpers


@pytest.fixture(scope="module")
def starter() -> StarterEncoder:
    return StarterEncoder(WEIGHTS_PATH)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh agreement cache, on disk and in memory."""
    monkeypatch.setenv("RESOUND_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision_module, "_AGREEMENT", {})
    return tmp_path / "cache"


def test_auto_is_fp32_on_a_cpu_without_native_bf16(starter: StarterEncoder, cache_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(starter, "auto") == "fp32"
    assert not cache_dir.exists()  # nothing measured where bf16 is out of the question


def test_auto_picks_bf16_with_native_support_and_the_measured_agreement(starter: StarterEncoder, cache_dir: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(starter, "auto") == "bf16"
    # The figure behind the choice: bf16 against fp32 on the deterministic test windows, cached on disk.
    windows = agreement_windows(16000, 64000)
    reference = starter.embed_audio(windows)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = starter.embed_audio(windows)
    expected = np.min(np.sum(reference * reduced, axis=1) / np.linalg.norm(reduced, axis=1))
    cached = json.loads((cache_dir / "precision.json").read_text())
    [(key, value)] = cached.items()
    assert key.startswith(f"starter:{starter.info.checkpoint_sha256}:torch-{torch.__version__}")
    assert value == pytest.approx(expected, abs=1e-6) and value >= 0.999
    # Measured once: a new process reads the figure from disk without running the model.
    monkeypatch.setattr(precision_module, "_AGREEMENT", {})
    monkeypatch.setattr(starter, "embed_audio", lambda windows: pytest.fail("agreement measured twice"))
    assert bf16_agreement(starter) == value


def test_auto_keeps_fp32_for_a_model_that_disagrees_in_bf16(starter: StarterEncoder, cache_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision_module, "bf16_agreement", lambda encoder: 0.998)
    assert resolve_precision(starter, "auto") == "fp32"
    assert resolve_precision(starter, "bf16") == "bf16"  # asked for: given, measured or not
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, not 'int8'"):
        resolve_precision(starter, "int8")


def _catalog_rows(index: Path) -> tuple[list, list]:
    catalog = Index(index).catalog
    with catalog.session() as s:
        files = [(f.id, f.path, f.content_hash, f.size, f.duration, f.source_rate, f.channels)
                 for f in s.scalars(select(FileRow).order_by(FileRow.id))]
        segments = [(g.id, g.file_id, g.start, g.end, g.modalities) for g in s.scalars(select(SegmentRow).order_by(SegmentRow.id))]
    catalog.close()
    return files, segments


def _vectors(index: Path) -> np.ndarray:
    opened = Index(index)
    store = opened.load_stores()["segments"]
    vectors = store.reconstruct(np.sort(store.ids()))
    opened.close()
    return vectors


def _small_corpus(root: Path) -> Path:
    helpers.write_audio(root / "a440.wav", helpers.tone(440, 9.0, rate=44100), rate=44100)
    helpers.write_audio(root / "sweep.flac", helpers.chirp(100, 6000, 5.0, rate=22050), rate=22050)
    helpers.write_audio(root / "noise.ogg", helpers.noise(3.0, seed=1))
    (root / "broken.wav").write_bytes(b"RIFF not really")
    return root


def test_provenance_records_the_precision_used(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _small_corpus(tmp_path / "corpus")
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    build_index(corpus, tmp_path / "index", BuildOptions(model="starter", device="cpu"))
    index = Index(tmp_path / "index")
    assert index.provenance().versions["precision"] == "bf16"
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["provenance"]["versions"]["precision"] == "bf16"
    index.close()
    # An update at another precision: the index now holds vectors of both.
    helpers.write_audio(corpus / "a880.wav", helpers.tone(880, 4.0))
    build_index(corpus, tmp_path / "index", BuildOptions(model="starter", device="cpu", precision="fp32"))
    index = Index(tmp_path / "index")
    assert index.provenance().versions["precision"] == "bf16+fp32"
    index.close()


def test_the_decoding_thread_gives_the_index_inline_decoding_gives(tmp_path: Path, cache_dir: Path) -> None:
    corpus = _small_corpus(tmp_path / "corpus")
    # The same model threads for both (the default gives the model one core less with the decoding thread):
    # a different thread count sums in another order, a few 1e-8 off.
    common = dict(model="starter", precision="fp32", decode_workers=0, model_threads=1)
    inline = build_index(corpus, tmp_path / "inline", BuildOptions(**common, decode_thread=False))
    threaded = build_index(corpus, tmp_path / "thread", BuildOptions(**common, decode_thread=True))
    assert (threaded.added, threaded.segments_added) == (inline.added, inline.segments_added) == (3, 3 + 2 + 1)
    assert [Path(f.path).name for f in threaded.failed] == [Path(f.path).name for f in inline.failed] == ["broken.wav"]
    assert _catalog_rows(tmp_path / "thread") == _catalog_rows(tmp_path / "inline")
    np.testing.assert_array_equal(_vectors(tmp_path / "thread"), _vectors(tmp_path / "inline"))


def test_batched_catalog_writes_stage_the_rows_of_one_file_at_a_time(tmp_path: Path, catalog_url: str | None) -> None:
    files = [
        NewFile(0, "a.wav", "a" * 64, 10, 1.0, 9.0, 44100, 2, [(0.0, 4.0), (4.0, 8.0), (8.0, 9.0)]),
        NewFile(0, "sub/é.flac", "b" * 64, 20, 2.0, 1.5, 22050, 1, [(0.0, 1.5)], "audio", b"sub/\xc3\xa9.flac"),
        NewFile(0, "v.mp4", "c" * 64, 30, 3.0, 4.0, 48000, 2, [(0.0, 4.0)], "audio+visual"),
    ]
    results = []
    for name in ("one_by_one", "batched"):
        url = catalog_url or sqlite_url(tmp_path / f"{name}.sqlite")
        catalog = Catalog(url)
        writer = catalog.writer()
        corpus_id = writer.corpus_id("/corpus")
        for f in files:  # earlier failures of these paths are cleared by adding them
            writer.record_failure(corpus_id, f.path, "old", "it failed before")
        writer.record_failure(corpus_id, "other.wav", "x", "still failed")
        staged = [replace(f, corpus_id=corpus_id) for f in files]
        if name == "one_by_one":
            ids = [writer.add_file(f.corpus_id, f.path, f.content_hash, f.size, f.mtime, f.duration, f.source_rate,
                                   f.channels, f.spans, f.modalities, path_bytes=f.path_bytes) for f in staged]
        else:
            ids = writer.add_files(staged)
        writer.commit(1)
        with catalog.session() as s:
            rows = (
                [(r.id, r.corpus_id, r.path, r.path_bytes, r.content_hash, r.size, r.mtime, r.duration, r.source_rate,
                  r.channels) for r in s.scalars(select(FileRow).order_by(FileRow.id))],
                [(r.id, r.file_id, r.start, r.end, r.modalities) for r in s.scalars(select(SegmentRow).order_by(SegmentRow.id))],
                [(r.path, r.reason) for r in s.scalars(select(FailureRow))],
            )
        if catalog_url:  # the same PostgreSQL database for the second run: start it from nothing again
            with catalog.engine.begin() as connection:
                Base.metadata.drop_all(connection)
                connection.execute(text("DROP TABLE alembic_version"))
        catalog.close()
        results.append((ids, rows))
    assert results[0] == results[1]
    ids, (file_rows, segment_rows, failures) = results[1]
    assert [len(segments) for _, segments in ids] == [3, 1, 1]
    assert [r[1] for r in segment_rows] == [ids[0][0]] * 3 + [ids[1][0], ids[2][0]]
    assert [r[2] for r in file_rows] == ["a.wav", "sub/é.flac", "v.mp4"]
    assert failures == [("other.wav", "still failed")]


def test_the_downmix_is_the_channel_mean_and_bad_samples_are_still_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for channels in (1, 2, 3, 6):
        data = rng.uniform(-1, 1, (4001, channels)).astype(np.float32)
        np.testing.assert_array_equal(downmix(data), data.mean(axis=1))
    stereo = rng.uniform(-0.5, 0.5, (8000, 2)).astype(np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        damaged = stereo.copy()
        damaged[4000, 1] = bad
        path = tmp_path / "bad.wav"
        soundfile.write(path, damaged, 16000, subtype="FLOAT")
        with pytest.raises(AudioDecodeError, match="bad.wav.*samples contain NaN or infinity"):
            decode_audio(path, 16000)


@pytest.mark.parametrize("ahead", [0, 10**6], ids=["front end on the decoding thread", "on the model's thread"])
def test_the_front_end_gives_the_same_index_on_either_thread(tmp_path: Path, cache_dir: Path, ahead: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer import prefetch

    corpus = _small_corpus(tmp_path / "corpus")
    common = {"model": "starter", "precision": "bf16", "decode_workers": 0, "decode_thread": True, "model_threads": 1}
    reference = build_index(corpus, tmp_path / "model", BuildOptions(**common, front_end_on_decode=False))
    # STEP_WHEN_AHEAD 0: the decoding thread runs the front end on every file; 10**6: on none (the model's
    # thread computes the missing features in its batches, the path a decoder that falls behind takes).
    monkeypatch.setattr(prefetch, "STEP_WHEN_AHEAD", ahead)
    moved = build_index(corpus, tmp_path / "moved", BuildOptions(**common))
    assert (moved.added, moved.segments_added) == (reference.added, reference.segments_added) == (3, 6)
    assert [Path(f.path).name for f in moved.failed] == ["broken.wav"]
    assert _catalog_rows(tmp_path / "moved") == _catalog_rows(tmp_path / "model")
    np.testing.assert_allclose(_vectors(tmp_path / "moved"), _vectors(tmp_path / "model"), rtol=0, atol=1e-6)


def test_prepared_features_embed_as_the_windows_do(starter: StarterEncoder) -> None:
    from indexer.embed import FrontEnd, embed_inputs

    rng = np.random.default_rng(3)
    windows = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (64000, 64000, 20000, 64000, 7000)]
    expected = embed_inputs(starter, windows, [None] * len(windows), "bf16")
    front_end = FrontEnd.of(starter, "bf16")
    assert front_end is not None
    prepared = front_end(SegmentInputs([(0.0, 4.0)] * 2, windows[:2], [None, None], 8.0, 16000, 1)).prepared
    # Some windows prepared (in another batch), the rest computed in the model's batch: the same vectors.
    features = [*prepared, None, None, None]
    np.testing.assert_allclose(front_end.embed(windows, features), expected, rtol=0, atol=1e-6)


def test_a_new_file_is_hashed_once_by_its_decoding_and_moves_are_still_found(tmp_path: Path, cache_dir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import indexer.build as build_module

    corpus = _small_corpus(tmp_path / "corpus")
    hashed: list[str] = []
    real_hash = build_module.content_hash
    monkeypatch.setattr(build_module, "content_hash", lambda path: hashed.append(Path(path).name) or real_hash(path))
    options = BuildOptions(model="starter", precision="fp32")
    build_index(corpus, tmp_path / "index", options)
    assert hashed == ["broken.wav"]  # only a file that failed, for its failure row; the others by their decoding
    files, _ = _catalog_rows(tmp_path / "index")
    assert {f[1]: f[2] for f in files} == {
        name: hashlib.sha256((corpus / name).read_bytes()).hexdigest() for name in ("a440.wav", "noise.ogg", "sweep.flac")}
    (corpus / "a440.wav").rename(corpus / "renamed.wav")
    report = build_index(corpus, tmp_path / "index", options)
    assert (report.moved, report.added, report.segments_added) == (1, 0, 0)


def test_a_build_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, cache_dir: Path) -> None:
    import gc

    corpus = _small_corpus(tmp_path / "corpus")
    build_index(corpus, tmp_path / "index", BuildOptions(model="starter", precision="fp32"))
    assert gc.get_freeze_count() == 0


def test_the_model_widens_to_every_core_only_while_the_decoder_idles_and_only_while_that_is_faster() -> None:
    from indexer.build import WIDE_RETRY_SECONDS, _ModelThreads
    from indexer.prefetch import Backlog

    now = [0.0]
    backlog = Backlog()

    def after(seconds: float, decoder_waited: float) -> Backlog:
        """The backlog once `seconds` passed, of which the decoder waited `decoder_waited` on a full queue."""
        now[0] += seconds
        backlog.waited += decoder_waited
        return backlog

    def busy() -> Backlog:
        return after(0.1, 0.0)

    def idle() -> Backlog:
        return after(0.1, 0.09)

    threads = _ModelThreads(narrow=1, wide=2, clock=lambda: now[0])
    assert threads.choose(busy()) == 1  # the decoder needs its core
    assert threads.choose(idle()) == 2  # it waited on a full queue: the model takes both cores
    assert threads.choose(after(0.1, 0.04)) == 1  # waiting less than half the time is not idle
    threads.record(1, 0.050)  # the first batch on a thread count pays one-off costs: not counted
    threads.record(2, 0.090)
    assert threads.choose(idle()) == 2
    threads.record(1, 0.010)
    threads.record(2, 0.006)
    assert threads.choose(idle()) == 2  # measured faster: kept
    threads.record(2, 0.030)  # the other core got busy: two threads now wait for each other
    threads.record(2, 0.030)
    assert threads.choose(idle()) == 1  # given up ...
    assert threads.choose(after(WIDE_RETRY_SECONDS - 0.2, 0.9 * (WIDE_RETRY_SECONDS - 0.2))) == 1
    assert threads.choose(after(0.3, 0.27)) == 2  # ... then tried again, measured afresh
    threads.record(2, 0.020)
    assert threads.choose(idle()) == 1
    assert threads.choose(after(2 * WIDE_RETRY_SECONDS - 0.2, 0.9 * (2 * WIDE_RETRY_SECONDS - 0.2))) == 1
    assert threads.choose(after(0.3, 0.27)) == 2  # twice as long after a second miss
    threads.record(2, 0.005)
    assert threads.choose(idle()) == 2 and threads.choose(busy()) == 1
    backlog.finished = True
    assert threads.choose(busy()) == 2  # every file decoded: the decoder is done
