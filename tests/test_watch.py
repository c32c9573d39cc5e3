"""`indexer watch`: changes made while watching end up exactly as a fresh build makes them; a file being
written waits until it holds still; a SIGKILL loses nothing. Polling with a test clock makes most of these
deterministic; the event and subprocess tests wait in bounded loops, never on a timing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from indexer import BuildOptions, Index, build_index
from indexer.corpus import content_hash
from indexer.watch import CorpusWatcher, WatchOptions
from search.engine import Engine
from tests import helpers
from tests.service_support import RATE, steps, wav_bytes


def _write(path: Path, *pitches: float) -> Path:
    return helpers.write_audio(path, steps(*pitches), rate=RATE)


def _corpus(root: Path) -> Path:
    corpus = root / "corpus"
    _write(corpus / "a220.wav", 220)
    _write(corpus / "b330.flac", 330, 440)
    _write(corpus / "sub" / "c440.wav", 440)
    _write(corpus / "sub" / "d660.ogg", 660, 880, 220)
    return corpus


def snapshot(index: Path) -> dict[str, tuple]:
    """Everything a build decides, by file path: catalog rows, segments and their vectors (ids aside)."""
    from sqlalchemy import select

    from db.schema import FileRow, SegmentRow

    idx = Index(index)
    try:
        store = idx.load_stores()["segments"]
        out = {}
        with idx.catalog.session() as s:
            for f in s.scalars(select(FileRow)):
                segments = s.scalars(select(SegmentRow).where(SegmentRow.file_id == f.id).order_by(SegmentRow.start))
                out[f.path] = (f.content_hash, f.size, f.mtime, round(f.duration, 6), f.source_rate, f.channels,
                               tuple((seg.start, seg.end, seg.modalities, tuple(np.round(store.reconstruct([seg.id])[0], 6)))
                                     for seg in segments))
        assert store.ntotal == sum(len(v[-1]) for v in out.values())
        return out
    finally:
        idx.close()


def fresh_build(corpus: Path, where: Path, model: Path) -> dict[str, tuple]:
    index = where / "fresh-index"
    shutil.rmtree(index, ignore_errors=True)
    build_index(corpus, index, BuildOptions(model=str(model), decode_workers=0))
    return snapshot(index)


def _watcher(corpus: Path, index: Path, model: Path, **options: object) -> CorpusWatcher:
    settings = {"poll": True, "settle_seconds": 1.0, "interval": 0.05, **options}
    return CorpusWatcher(corpus, index, WatchOptions(build=BuildOptions(model=str(model), decode_workers=0),
                                                     **settings))  # type: ignore[arg-type]


def _settle(watcher: CorpusWatcher, clock: list[float]) -> None:
    """Steps of a test clock until the watcher has applied everything that changed."""
    for _ in range(10):
        clock[0] += 0.6
        watcher.step(clock[0])
        if not len(watcher.pending):
            return
    raise AssertionError(f"changes still pending after 10 steps: {len(watcher.pending)}")


def test_added_changed_renamed_and_removed_files_end_as_a_fresh_build(tmp_path: Path, tone_model: Path) -> None:
    corpus = _corpus(tmp_path)
    index = tmp_path / "index"
    watcher = _watcher(corpus, index, tone_model)
    watcher.start()
    engine = Engine(index)  # a running reader: it must see each new generation
    try:
        assert snapshot(index) == fresh_build(corpus, tmp_path, tone_model)
        assert [h.path for h in engine.query("a 880 Hz tone", k=1)] == [str(corpus / "sub" / "d660.ogg")]
        clock = [1000.0]
        ids_before = watcher.index.catalog.corpus_files(1)

        _write(corpus / "new" / "e880.wav", 880)  # added, in a new directory
        _write(corpus / "a220.wav", 330, 660)  # changed
        os.rename(corpus / "b330.flac", corpus / "renamed.flac")  # renamed
        (corpus / "sub" / "d660.ogg").unlink()  # removed
        (corpus / "notes.txt").write_text("not media")
        generation = watcher.index.generation()
        _settle(watcher, clock)

        assert watcher.index.generation() == generation + 1  # one batch, one generation
        report = watcher.state.reports[-1]
        assert (report.added, report.updated, report.moved, report.removed) == (1, 1, 1, 1)
        # The renamed file kept its row and vectors: nothing was embedded for it.
        assert watcher.index.catalog.corpus_files(1)["renamed.flac"].id == ids_before["b330.flac"].id
        assert report.segments_added == 1 + 2  # e880 and the new a220, not the renamed file's two
        assert snapshot(index) == fresh_build(corpus, tmp_path, tone_model)
        assert [h.path for h in engine.query("a 880 Hz tone", k=1)] == [str(corpus / "new" / "e880.wav")]

        os.rename(corpus / "sub", corpus / "moved")  # a directory moved
        _settle(watcher, clock)
        assert watcher.state.reports[-1].moved == 1 and watcher.state.reports[-1].segments_added == 0
        assert snapshot(index) == fresh_build(corpus, tmp_path, tone_model)
        assert sorted(snapshot(index)) == ["a220.wav", "moved/c440.wav", "new/e880.wav", "renamed.flac"]
    finally:
        engine.close()
        watcher.close()


def test_a_file_being_written_is_indexed_only_once_complete(tmp_path: Path, tone_model: Path) -> None:
    corpus = _corpus(tmp_path)
    index = tmp_path / "index"
    watcher = _watcher(corpus, index, tone_model, settle_seconds=2.0)
    watcher.start()
    try:
        data = wav_bytes(steps(440, 660, 880))
        target = corpus / "growing.wav"
        clock = 0.0
        seen_hashes: set[str] = set()
        with open(target, "wb") as f:
            for start in range(0, len(data), len(data) // 8):
                f.write(data[start : start + len(data) // 8])
                f.flush()
                os.utime(target)  # a writer's progress moves size and mtime between any two looks
                clock += 5.0  # longer than the settle time between looks, but the file moved
                watcher.step(clock)
                idx = watcher.index
                rows = idx.catalog.corpus_files(1)
                seen_hashes |= {r.content_hash for p, r in rows.items() if p == "growing.wav"}
                assert "growing.wav" not in idx.catalog.corpus_failures(1)
        assert seen_hashes == set()
        for _ in range(3):  # it now holds still: read once settled
            clock += 5.0
            watcher.step(clock)
        rows = watcher.index.catalog.corpus_files(1)
        assert rows["growing.wav"].content_hash == content_hash(target)
        assert snapshot(index) == fresh_build(corpus, tmp_path, tone_model)
    finally:
        watcher.close()


def _wait_for(condition, what: str, attempts: int = 600) -> None:  # type: ignore[no-untyped-def]
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _matches(index: Path, expected: dict[str, tuple]) -> bool:
    try:
        return snapshot(index) == expected
    except Exception:  # noqa: BLE001 - not built yet, or a generation swapped under the reader
        return False


def test_file_events_keep_the_index_in_step(tmp_path: Path, tone_model: Path) -> None:
    corpus = _corpus(tmp_path)
    index = tmp_path / "index"
    watcher = _watcher(corpus, index, tone_model, poll=False, settle_seconds=0.2)
    watcher.start()
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,))
    thread.start()
    try:
        _write(corpus / "deep" / "er" / "e880.wav", 880)
        os.rename(corpus / "b330.flac", corpus / "deep" / "b330.flac")
        shutil.rmtree(corpus / "sub")
        expected = fresh_build(corpus, tmp_path, tone_model)
        _wait_for(lambda: _matches(index, expected), "the watcher to apply file events")
    finally:
        stop.set()
        thread.join()
        watcher.close()


def _watch_process(corpus: Path, index: Path, model: Path | None) -> subprocess.Popen:
    """`indexer watch --poll` in a process of its own (no --model: the index's own)."""
    env = {**os.environ, "RESOUND_PLUGINS": "tests.tone_plugin", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "watch", str(corpus), "--index", str(index),
         *(["--model", str(model)] if model else []), "--poll", "--interval", "0.1", "--settle", "0.3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_watcher_loses_nothing_and_a_stopped_one_exits_cleanly(tmp_path: Path, tone_model: Path) -> None:
    from indexer.verify import verify_index

    corpus = _corpus(tmp_path)
    index = tmp_path / "index"
    process = _watch_process(corpus, index, tone_model)
    try:
        expected = fresh_build(corpus, tmp_path, tone_model)
        _wait_for(lambda: _matches(index, expected), "the catch-up build")
        for i, pitch in enumerate((220, 330, 440, 660, 880, 220, 330, 440)):
            _write(corpus / "wave" / f"f{i}.wav", pitch, 880)
        (corpus / "a220.wav").unlink()
        process.send_signal(signal.SIGKILL)  # whatever it was doing, mid-generation or not
        process.wait(timeout=60)
        assert verify_index(index).ok

        process = _watch_process(corpus, index, None)  # the restart catches up, with the index's model
        expected = fresh_build(corpus, tmp_path, tone_model)
        _wait_for(lambda: _matches(index, expected), "the restarted watcher to converge")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert err.strip().splitlines()[-1] == "stopped"
        assert verify_index(index).ok
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_build_after_renames_moves_rows_instead_of_embedding_again(tmp_path: Path, tone_model: Path) -> None:
    corpus = _corpus(tmp_path)
    index = tmp_path / "index"
    options = BuildOptions(model=str(tone_model), decode_workers=0)
    build_index(corpus, index, options)
    before = snapshot(index)
    os.rename(corpus / "sub" / "d660.ogg", corpus / "d660-renamed.ogg")
    shutil.copy(corpus / "a220.wav", corpus / "a220-copy.wav")  # a copy is new: the original stays
    report = build_index(corpus, index, options)
    assert (report.added, report.moved, report.removed, report.segments_added) == (1, 1, 0, 1)
    after = snapshot(index)
    assert after["d660-renamed.ogg"][:2] == before["sub/d660.ogg"][:2]
    assert after == fresh_build(corpus, tmp_path, tone_model)
