"""A corpus of every kind of broken or odd file beside good ones: good files are searchable, broken ones
reported with their reason, and the run says how many of each."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import BuildOptions, build_index
from indexer.cli import EXIT_PARTIAL
from indexer.cli import main as indexer_cli
from indexer.exit_status import EXIT_USAGE, one_line
from indexer.text import normalize_text
from search import Engine
from search.cli import main as search_cli
from search.validation import MAX_QUERY_CHARS
from tests import helpers
from tests.hostile_text import file_bytes, hostile_lines, hostile_text, odd_file_name


def _wav_with_format_code(path: Path, code: int) -> None:
    """A RIFF/WAVE file whose fmt chunk names a codec nobody decodes."""
    data = b"\x01\x02" * 4000
    fmt = struct.pack("<HHIIHH", code, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def make_hostile_corpus(root: Path) -> tuple[set[str], dict[str, str]]:
    """Returns (names expected indexed, {name expected to fail: words its reason must contain})."""
    root.mkdir(parents=True)
    good: set[str] = set()
    t = helpers.tone
    for name, samples, rate in [
        ("plain.wav", t(440, 2.0), 48000),
        ("silent.wav", np.zeros(48000, dtype=np.float32), 48000),
        ("very short.wav", t(440, 0.0005), 48000),  # 24 samples
        ("rate8k.wav", t(440, 2.0, rate=8000), 8000),
        ("rate11025.flac", t(440, 2.0, rate=11025), 11025),
        ("rate96k.wav", t(440, 1.0, rate=96000), 96000),
        ("café – ünïcode 🎵.wav", t(660, 1.0), 48000),
        ("-leading-dash.wav", t(550, 1.0), 48000),
    ]:
        helpers.write_audio(root / name, samples, rate)
        good.add(name)
    six = np.stack([t(200 * (c + 1), 1.5) for c in range(6)], axis=1)
    soundfile.write(str(root / "six-channels.wav"), six, 48000)
    good.add("six-channels.wav")
    raw_name = os.fsdecode(b"latin1-caf\xe9.wav")  # not UTF-8
    helpers.write_audio(root / raw_name, t(770, 1.0))
    good.add(raw_name)
    full = (root / "plain.wav").read_bytes()
    (root / "truncated.wav").write_bytes(full[: len(full) // 2])  # header promises more than is there
    good.add("truncated.wav")

    bad = {"empty.wav": "empty file", "not-audio.mp3": "not an audio file", "nan.wav": "NaN",
           "unknown-codec.wav": "unknown codec (WAV format tag 0x9999)", "loop-a.wav": "symbolic links"}
    (root / "empty.wav").write_bytes(b"")
    (root / "not-audio.mp3").write_text("this is a text file, not an mp3\n" * 20)
    soundfile.write(str(root / "nan.wav"), np.full(4800, np.nan, dtype=np.float32), 48000, subtype="FLOAT")
    _wav_with_format_code(root / "unknown-codec.wav", 0x9999)
    os.symlink("loop-b.wav", root / "loop-a.wav")
    os.symlink("loop-a.wav", root / "loop-b.wav")
    bad["loop-b.wav"] = "symbolic links"
    (root / "sub").mkdir()
    os.symlink("..", root / "sub" / "up")  # a directory loop: must not be walked forever
    return good, bad


def test_hostile_corpus(tmp_path: Path, clap_checkpoint: Path) -> None:
    corpus = tmp_path / "corpus"
    good, bad = make_hostile_corpus(corpus)
    index_path = tmp_path / "index"
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(index_path), "--model",
                                              str(clap_checkpoint), "--quiet"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert f"{len(good)} added" in result.stdout and f"{len(bad)} failed" in result.stdout
    failures = {line.split(": ", 2)[1].rsplit("/", 1)[-1]: line for line in result.stderr.splitlines()
                if line.startswith("failed: ")}
    assert set(failures) == set(bad)
    for name, words in bad.items():
        assert words in failures[name]

    info = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(index_path), "--failed", "--json"]).stdout)
    assert sorted(Path(f["path"]).name for f in info["failed"]) == sorted(bad)
    assert info["counts"]["files"] == len(good)

    engine = Engine(index_path)
    try:
        found = {Path(h.path).name for h in engine.query("a tone", k=50)}
        assert found == good  # every good file is searchable, the non-UTF-8 name with its exact bytes
        raw = next(n for n in good if n.startswith("latin1"))
        assert engine.similar(corpus / raw, k=1)[0].path == str(corpus / raw)
    finally:
        engine.close()

    # Unchanged broken files are not retried; a fixed one is.
    helpers.write_audio(corpus / "empty.wav", helpers.tone(300, 1.0))
    report = build_index(corpus, index_path, BuildOptions(model=str(clap_checkpoint)))
    assert (report.added, report.still_failed, report.unchanged) == (1, len(bad) - 1 - 2, len(good))


def test_unreadable_file_is_reported(tmp_path: Path, clap_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file whatever its mode, so the refusal is simulated at the open call.
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "ok.wav", helpers.tone(440, 1.0))
    helpers.write_audio(corpus / "locked.wav", helpers.tone(440, 1.0))
    real_open = os.open

    def guarded_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file).endswith("locked.wav"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)  # media files are opened with os.open (media/source.py)
    report = build_index(corpus, tmp_path / "index", BuildOptions(model=str(clap_checkpoint)))
    assert report.added == 1
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [("locked.wav", "permission denied")]


def test_an_hours_long_file_is_windowed_and_searchable(tmp_path: Path, tone_model: Path) -> None:
    """Two hours at 8 kHz: 3,600 two-second windows, and the one place the pitch changes is found by time."""
    model = tone_model  # the transparent test encoder, so the real build pipeline runs fast

    rate, seconds = 8000, 2 * 3600
    t = np.arange(rate * 2) / rate
    low, high = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), (0.3 * np.sin(2 * np.pi * 880 * t)).astype(np.float32)
    with soundfile.SoundFile(str(tmp_path / "long.wav"), "w", rate, 1, subtype="PCM_16") as f:
        for block in range(seconds // 2):  # written in 2 s blocks: the test itself stays small in memory
            f.write(high if block == 2700 else low)  # 880 Hz only from 5400 s to 5402 s
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (tmp_path / "long.wav").rename(corpus / "long.wav")

    report = build_index(corpus, tmp_path / "index", BuildOptions(model=str(model), batch_size=256))
    assert (report.added, report.segments_added) == (1, 3600)
    engine = Engine(tmp_path / "index")
    (hit,) = engine.query("a 880 tone", k=1)
    assert (hit.start, hit.end, hit.score) == (5400.0, 5402.0, pytest.approx(1.0))
    engine.close()


# -- the command lines, fuzzed with the starter model (issue 25) ---------------------------------------


# Seeded and bounded: the same cases every run, a few seconds each test on the starter model.
FUZZ = settings(max_examples=15, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return helpers.starter_index(tmp_path_factory.mktemp("starter"))


def _run(args: list[str]) -> Result:
    result = CliRunner().invoke(search_cli, args)
    output = result.output
    assert "internal error" not in output and "Traceback" not in output, (args, output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    if result.exit_code:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "\n" not in errors[0], (args, result.stderr)  # one line, whatever the input
    return result


@FUZZ
@given(text=hostile_text())
def test_fuzzed_queries_are_answered_or_refused_in_one_line(starter: tuple[Path, Path], text: str) -> None:
    _, index = starter
    result = _run(["query", text, "--index", str(index), "--json", "-k", "2"])
    stripped = text.strip()
    if not normalize_text(stripped) or len(stripped) > MAX_QUERY_CHARS:
        assert result.exit_code == EXIT_USAGE
    else:
        assert result.exit_code == 0 and len(json.loads(result.stdout)) == 2


@FUZZ
@given(lines=hostile_lines(), captions=st.booleans())
def test_fuzzed_labels_and_captions_are_ranked_or_refused_in_one_line(starter: tuple[Path, Path], tmp_path: Path,
                                                                       lines: list[str], captions: bool) -> None:
    corpus, _ = starter
    texts = tmp_path / "texts.txt"
    data = file_bytes("\n".join(lines))
    texts.write_bytes(data)
    command = ["caption", str(corpus / "a440.wav"), "--texts", str(texts), "--json"] if captions else \
        ["classify", str(corpus / "a440.wav"), "--labels", str(texts), "--prompts", "label", "--json",
         "--index", str(tmp_path / "no-index")]
    result = _run(command)
    try:  # what the command must find: UTF-8 text, one label or caption per line, blank lines skipped
        kept = [line.strip() for line in data.decode("utf-8-sig").splitlines() if line.strip()]
        readable = b"\0" not in data
    except UnicodeDecodeError:
        kept, readable = [], False
    if not captions:
        kept = [line for line in kept if not line.startswith("#")]  # a label file's comments
    distinct = len(set(kept)) == len(kept) or captions
    if kept and readable and distinct:
        assert result.exit_code == 0, result.output
        ranked = json.loads(result.stdout)
        assert len(ranked if captions else ranked[0]["labels"]) == min(len(kept), 10 if captions else 5)
    else:
        assert result.exit_code == 1


@FUZZ
@given(name=odd_file_name())
def test_fuzzed_file_names_are_searched_and_classified(starter: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    corpus, index = starter
    clip = tmp_path / name
    clip.write_bytes((corpus / "a440.wav").read_bytes())
    similar = _run(["similar", str(clip), "--index", str(index), "--json", "-k", "1"])
    assert similar.exit_code == 0 and json.loads(similar.stdout)[0]["path"].endswith("a440.wav")
    labelled = _run(["classify", str(clip), "--label-set", "starter", "-k", "1", "--index", str(tmp_path / "none")])
    assert labelled.exit_code == 0 and labelled.stdout.splitlines()[0] == one_line(str(clip))  # escaped, one line
