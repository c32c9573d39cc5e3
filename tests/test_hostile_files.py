"""Files that lie, change and hide: containers whose headers understate their length, FIFOs swapped in for
files, trees deeper than Python's recursion limit, files rewritten while they are read, and directories
that cannot be read. Nothing hangs, nothing goes stale, nothing is lost."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from db.schema import FileRow
from indexer import BuildOptions, Index, build_index
from indexer.cli import EXIT_PARTIAL
from indexer.cli import main as indexer_cli
from indexer.corpus import walk_corpus
from indexer.embed import WindowPlan, file_inputs
from indexer.errors import EmptyCorpusError, MediaTooLongError, QueryError
from indexer.media.decode import DecodeLimits, decode_audio
from search import Engine
from search.cli import main as search_cli
from tests import helpers
from tests.lying_media import write_lying
from tests.service_support import ToneIndex, make_tone_index, running_service, tone_environment

RATE = 16000  # the ToneEncoder's rate; its windows are 2 s
A440 = 2  # the ToneEncoder's one-hot position of 440 Hz (PITCHES = 220, 330, 440, 660, 880)
A880 = 4


@pytest.fixture(scope="module")
def liars(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Matroska (FLAC) and an MP4 (AAC) file that say they last 7 s and hold 3 hours (a few MB each)."""
    root = tmp_path_factory.mktemp("liars")
    return {suffix: write_lying(root / f"liar{suffix}", claimed_seconds=7, real_seconds=3 * 3600, tone_seconds=4)
            for suffix in (".mkv", ".mp4")}


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> ToneIndex:
    root = tmp_path_factory.mktemp("hostile_service")
    with tone_environment(root / "cache"):
        yield make_tone_index(root)


def _tone_file(path: Path, freq: float, seconds: float = 2.0) -> Path:
    return helpers.write_audio(path, helpers.tone(freq, seconds, rate=RATE), rate=RATE)


def _vectors(index_path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Each indexed file's (content hash, file vector)."""
    index = Index(index_path)
    try:
        stores = index.load_stores()
        with index.catalog.session() as s:
            rows = list(s.execute(select(FileRow.path, FileRow.id, FileRow.content_hash)))
        return {path: (digest, stores["files"].reconstruct([file_id])[0]) for path, file_id, digest in rows}
    finally:
        index.close()


# -- limits that hold against what the bytes say ------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_decoding_stops_at_the_limit_whatever_the_header_says(liars: dict[str, Path], suffix: str) -> None:
    with pytest.raises(MediaTooLongError, match="longer than the 60 s limit"):
        decode_audio(liars[suffix], RATE, DecodeLimits(max_seconds=60))
    with pytest.raises(MediaTooLongError, match="more than the limit of 100,000 samples"):
        decode_audio(liars[suffix], RATE, DecodeLimits(max_samples=100_000))


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_lying_upload_is_refused_with_413_in_bounded_memory(tones: ToneIndex, liars: dict[str, Path], suffix: str) -> None:
    """The header's 7 s passes the 10 s check; decoding stops at 10 s, not after 3 hours (which would hold
    173 M samples at 16 kHz: 690 MB as float32)."""
    with tone_environment(tones.root / "cache"), running_service(tones.index, max_upload_seconds=10.0) as url, \
            httpx.Client(base_url=url, timeout=120) as client:
        clip = liars[suffix].read_bytes()
        for route in ("/api/similar", "/api/classify"):
            tracemalloc.start()
            try:
                response = client.post(route, files={"file": (f"liar{suffix}", clip)}, data={"labels": "a\nb"})
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert (response.status_code, response.json()) == (413, {"detail": f"liar{suffix}: longer than the 10 s limit"})
            assert peak < 64 * 2**20, f"{route}: {peak / 2**20:.0f} MiB held while refusing"
        # The service answers on.
        assert client.get("/api/query", params={"q": "a 440 tone"}).status_code == 200


def test_search_similar_and_classify_refuse_a_file_past_max_seconds(tones: ToneIndex, liars: dict[str, Path]) -> None:
    with tone_environment(tones.root / "cache"):
        similar = CliRunner().invoke(search_cli, ["similar", str(liars[".mkv"]), "--index", str(tones.index),
                                                  "--max-seconds", "30"])
        classify = CliRunner().invoke(search_cli, ["classify", str(liars[".mp4"]), "--label-set", "starter",
                                                   "--model", str(tones.model), "--max-seconds", "30"])
    assert similar.exit_code == 1 and f"{liars['.mkv']}: longer than the 30 s limit" in similar.output
    assert classify.exit_code == 1 and f"{liars['.mp4']}: longer than the 30 s limit" in classify.output


def test_the_build_caps_each_file_and_retries_it_when_the_cap_changes(tmp_path: Path, tone_model: Path,
                                                                      liars: dict[str, Path]) -> None:
    corpus = tmp_path / "corpus"
    _tone_file(corpus / "ok.wav", 440)
    (corpus / "liar.mkv").symlink_to(liars[".mkv"])
    index_path = tmp_path / "index"
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(index_path), "--model",
                                              str(tone_model), "--max-file-seconds", "60", "--quiet"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert f"failed: {corpus / 'liar.mkv'}: longer than the 60 s limit" in result.stderr
    options = BuildOptions(model=str(tone_model), decode_workers=0, max_file_seconds=60)
    assert build_index(corpus, index_path, options).still_failed == 1  # same file, same cap: not decoded again
    report = build_index(corpus, index_path, BuildOptions(model=str(tone_model), decode_workers=0,
                                                          max_file_seconds=30))
    assert (report.still_failed, [f.reason for f in report.failed]) == (0, ["longer than the 30 s limit"])


def test_a_file_whose_header_understates_it_is_streamed_whole(tmp_path: Path, tone_model: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Header: 7 s; content: 120 s. Decoding it whole stops at the streaming threshold (here 32 s of
    8 kHz audio) and the file is streamed instead: all of it is indexed, in bounded memory."""
    corpus = tmp_path / "corpus"
    write_lying(corpus / "understated.mkv", claimed_seconds=7, real_seconds=120, tone_seconds=120)
    monkeypatch.setattr("indexer.embed.STREAM_ABOVE_BYTES", 32 * 8000 * 4)
    plan = WindowPlan(RATE, 2 * RATE, 2 * RATE, stream_above_bytes=32 * 8000 * 4)
    assert type(file_inputs(plan, corpus / "understated.mkv")).__name__ == "StreamedInputs"
    report = build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    assert (report.added, report.segments_added, report.failed) == (1, 60, [])


# -- never block on what is not a regular file --------------------------------------------------------
def _build_in_thread(corpus: Path, index_path: Path, options: BuildOptions, limit_s: float = 300.0):  # type: ignore[no-untyped-def]
    """Run a build on a thread; returns its report, or fails the test if it has not finished in `limit_s`."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["report"] = build_index(corpus, index_path, options)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        for fifo in corpus.rglob("*"):  # release a build blocked in open() before failing the test
            if fifo.is_fifo():
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"the build did not finish within {limit_s:.0f} s (blocked on a FIFO?)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["report"]


@pytest.mark.parametrize("when", ["after the scan", "after the plan"])
def test_a_file_swapped_for_a_fifo_fails_and_the_build_finishes(tmp_path: Path, tone_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    import indexer.build as build_module

    corpus = tmp_path / "corpus"
    _tone_file(corpus / "a.wav", 440)
    _tone_file(corpus / "b.wav", 880)

    def swap() -> None:
        (corpus / "b.wav").unlink()
        os.mkfifo(corpus / "b.wav")

    if when == "after the scan":
        real_walk = build_module.walk_corpus

        def walk_then_swap(root):  # type: ignore[no-untyped-def]
            scan = real_walk(root)
            swap()
            return scan

        monkeypatch.setattr(build_module, "walk_corpus", walk_then_swap)
    else:  # the plan opens a new file (to fail an unreadable one early) and leaves its hash to the decoding
        real_open = build_module.open_regular

        def open_then_swap(path):  # type: ignore[no-untyped-def]
            opened = real_open(path)
            if Path(path).name == "b.wav":
                swap()
            return opened

        monkeypatch.setattr(build_module, "open_regular", open_then_swap)
    report = _build_in_thread(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    assert report.added == 1
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [
        ("b.wav", "cannot read file (not a regular file: a FIFO)")]


def test_a_fifo_or_device_named_like_media_is_reported_not_read(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "corpus"
    _tone_file(corpus / "a.wav", 440)
    os.mkfifo(corpus / "pipe.wav")
    (corpus / "zeros.wav").symlink_to("/dev/zero")
    report = _build_in_thread(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    assert report.added == 1
    assert sorted((Path(f.path).name, f.reason) for f in report.failed) == [
        ("pipe.wav", "cannot read file (not a regular file: a FIFO)"),
        ("zeros.wav", "cannot read file (not a regular file: a device)")]


def test_search_similar_on_a_fifo_is_refused_not_waited_on(tones: ToneIndex, tmp_path: Path) -> None:
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    with tone_environment(tones.root / "cache"):
        engine = Engine(tones.index)
    try:
        with pytest.raises(QueryError, match=r"clip.wav: cannot read file \(not a regular file: a FIFO\)"):
            engine.similar(fifo)
    finally:
        engine.close()


# -- any depth, no loops -----------------------------------------------------------------------------
def test_a_tree_1100_levels_deep_with_a_loop_is_indexed(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "corpus"
    levels = [corpus]
    for _ in range(1100):  # deeper than Python's recursion limit (os.makedirs itself would recurse)
        levels.append(levels[-1] / "d")
        levels[-1].mkdir(parents=len(levels) == 2)
    deep = levels[-1]
    try:
        _tone_file(deep / "bottom.wav", 880)
        _tone_file(corpus / "top.wav", 440)
        (deep / "loop").symlink_to(corpus, target_is_directory=True)  # back to the top: walked once
        assert [f.path.count("/") for f in walk_corpus(corpus).files] == [1100, 0]
        report = build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
        assert (report.added, report.failed) == (2, [])
        engine = Engine(tmp_path / "index")
        try:
            (hit,) = engine.query("an 880 tone", k=1)
            assert hit.path == str(deep / "bottom.wav")
        finally:
            engine.close()
    finally:  # shutil.rmtree (and pytest's clean-up of old temporary directories) would recurse 1,100 deep
        for name in ("loop", "bottom.wav"):
            (deep / name).unlink(missing_ok=True)
        for level in reversed(levels[1:]):
            level.rmdir()


# -- the vector and the hash come from the same bytes --------------------------------------------------
@pytest.mark.parametrize("snapshot", ["in memory", "re-checked on disk"])
def test_a_file_rewritten_while_read_is_stored_with_the_hash_of_what_was_embedded(
        tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch, snapshot: str) -> None:
    import indexer.embed as embed_module

    corpus = tmp_path / "corpus"
    victim = _tone_file(corpus / "victim.wav", 440)
    old = victim.read_bytes()
    new = helpers.write_audio(tmp_path / "new.wav", helpers.tone(880, 2.0, rate=RATE), rate=RATE).read_bytes()
    if snapshot == "re-checked on disk":
        monkeypatch.setattr("indexer.media.source.SNAPSHOT_MAX_BYTES", 0)  # decoded from disk, then re-checked
    real_decode = embed_module.decode_audio
    rewrites = []

    def decode_then_rewrite(source, *args):  # type: ignore[no-untyped-def]
        decoded = real_decode(source, *args)
        if not rewrites:  # the file changes once, just after the decoder read it
            rewrites.append(victim.write_bytes(new))
        return decoded

    monkeypatch.setattr(embed_module, "decode_audio", decode_then_rewrite)
    index_path = tmp_path / "index"
    report = build_index(corpus, index_path, BuildOptions(model=str(tone_model), decode_workers=0))
    assert (report.added, report.failed) == (1, [])
    digest, vector = _vectors(index_path)["victim.wav"]
    if snapshot == "in memory":
        # The bytes decoded were the old ones, and so were the bytes hashed.
        assert (digest, int(np.argmax(vector))) == (hashlib.sha256(old).hexdigest(), A440)
    else:
        # The re-check saw the change and read the file again: the new bytes, hashed and embedded.
        assert (digest, int(np.argmax(vector))) == (hashlib.sha256(new).hexdigest(), A880)
    # Whatever is on disk now, the next build agrees with it; restoring the old bytes is a change again.
    monkeypatch.setattr(embed_module, "decode_audio", real_decode)
    victim.write_bytes(old)
    build_index(corpus, index_path, BuildOptions(model=str(tone_model), decode_workers=0))
    digest, vector = _vectors(index_path)["victim.wav"]
    assert (digest, int(np.argmax(vector))) == (hashlib.sha256(old).hexdigest(), A440)


# -- what cannot be seen is kept, not removed -----------------------------------------------------------
def test_an_unreadable_subtree_keeps_its_vectors_and_is_listed_as_failed(tmp_path: Path, tone_model: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any directory whatever its mode, so the refusal is simulated where the walk lists it.
    corpus = tmp_path / "corpus"
    _tone_file(corpus / "open" / "a.wav", 440)
    _tone_file(corpus / "locked" / "b.wav", 880)
    _tone_file(corpus / "locked" / "deeper" / "c.wav", 660)
    index_path = tmp_path / "index"
    options = BuildOptions(model=str(tone_model), decode_workers=0)
    assert build_index(corpus, index_path, options).added == 3
    before = _vectors(index_path)

    real_scandir = os.scandir

    def refusing_scandir(path):  # type: ignore[no-untyped-def]
        if Path(path) == corpus / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(index_path), "--model",
                                              str(tone_model), "--quiet"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "0 removed, 1 failed" in result.stdout
    assert (f"failed: {corpus / 'locked'}: cannot read directory (Permission denied); its 2 indexed files are kept"
            in result.stderr)
    after = _vectors(index_path)
    assert sorted(after) == sorted(before)
    assert all(np.array_equal(after[p][1], before[p][1]) for p in before)
    info = CliRunner().invoke(indexer_cli, ["info", "--index", str(index_path), "--failed"])
    assert f"failed: {corpus / 'locked'}: cannot read directory (Permission denied)" in info.stdout

    # Readable again: nothing re-embedded, the failure gone.
    monkeypatch.setattr(os, "scandir", real_scandir)
    report = build_index(corpus, index_path, options)
    assert (report.unchanged, report.added, report.removed, report.failed) == (3, 0, 0, [])
    assert Index(index_path).catalog.counts()["failures"] == 0
    # The whole corpus unreadable: refused, nothing removed.
    monkeypatch.setattr(os, "scandir", lambda path: refusing_scandir(corpus / "locked" if Path(path) == corpus else path))
    with pytest.raises(EmptyCorpusError, match=r"corpus: cannot read the corpus directory \(Permission denied\)"):
        build_index(corpus, index_path, options)
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert len(_vectors(index_path)) == 3
    # Truly gone: removed.
    import shutil

    shutil.rmtree(corpus / "locked")
    assert build_index(corpus, index_path, options).removed == 2


def test_an_unreadable_file_that_was_indexed_keeps_its_vectors(tmp_path: Path, tone_model: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    _tone_file(corpus / "a.wav", 440)
    _tone_file(corpus / "b.wav", 880)
    index_path = tmp_path / "index"
    options = BuildOptions(model=str(tone_model), decode_workers=0)
    build_index(corpus, index_path, options)
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).endswith("b.wav"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    report = build_index(corpus, index_path, options)
    assert (report.removed, [(Path(f.path).name, f.reason) for f in report.failed]) == (
        0, [("b.wav", "permission denied")])
    assert sorted(_vectors(index_path)) == ["a.wav", "b.wav"]


# -- verify names leftovers, repair clears them --------------------------------------------------------------
def test_verify_names_leftover_temporary_files_and_failures_of_vanished_files(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "corpus"
    _tone_file(corpus / "a.wav", 440)
    (corpus / "broken.wav").write_text("not audio")
    index_path = tmp_path / "index"
    build_index(corpus, index_path, BuildOptions(model=str(tone_model), decode_workers=0))
    (corpus / "broken.wav").unlink()  # its failure row stays until a build or a repair
    leftover = index_path / ".segments.1.faiss.99999999.tmp"  # a writer killed mid-save (no such pid)
    leftover.write_bytes(b"half a FAISS file")
    running = index_path / f".segments.2.faiss.{os.getppid()}.tmp"  # a live writer's: not a leftover
    running.write_bytes(b"being written")

    result = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "leftover temporary files: .segments.1.faiss.99999999.tmp",
        f"failure row of a file that is gone: {corpus / 'broken.wav'}",
        "consistent; `indexer verify --repair` clears the leftovers above",
    ]
    repaired = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path), "--repair"])
    assert repaired.exit_code == 0 and repaired.output.splitlines()[-1] == "consistent; leftovers cleared"
    assert not leftover.exists() and running.exists()
    assert Index(index_path).catalog.counts()["failures"] == 0
    after = CliRunner().invoke(indexer_cli, ["verify", "--index", str(index_path), "--json"])
    data = json.loads(after.output)
    assert (data["ok"], data["temporary_files"], data["vanished_failures"]) == (True, [], [])
    assert _vectors(index_path)["a.wav"][1].argmax() == A440  # the index itself untouched


def test_a_build_forgets_failures_of_files_that_are_gone(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "corpus"
    _tone_file(corpus / "a.wav", 440)
    (corpus / "broken.wav").write_text("not audio")
    index_path = tmp_path / "index"
    options = BuildOptions(model=str(tone_model), decode_workers=0)
    assert len(build_index(corpus, index_path, options).failed) == 1
    (corpus / "broken.wav").unlink()
    build_index(corpus, index_path, options)
    assert Index(index_path).catalog.counts()["failures"] == 0
