"""A first run as the README describes it, and answers a person can read (issue 14).

Ranking tests use a transparent "loudness" encoder registered here: a window's score for the query "loud"
grows with its peak amplitude, so every window of the corpus below has its own known score.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from indexer.build import BuildOptions, build_index
from indexer.cli import main as indexer_cli
from indexer.encoders.base import EncoderInfo
from indexer.encoders.resolver import register_family
from indexer.errors import AudioDecodeError
from indexer.media.decode import decode_audio
from indexer.media.reasons import plain_reason
from search.cli import main as search_cli
from search.engine import Engine
from search.grouping import group_by_file, next_fetch
from search.output import clock, hits_table
from tests import helpers

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


class LoudnessEncoder:
    """Audio window -> (sin t, cos t) with t = peak amplitude x pi/2; "loud" -> (1, 0): score = sin t."""

    def __init__(self, model_id: str, checkpoint: Path):
        from indexer.encoders.checkpoints import file_sha256

        self.info = EncoderInfo(model_id=model_id, family="test_loudness", dim=2, sample_rate=RATE,
                                window_seconds=1.0, checkpoint_sha256=file_sha256(checkpoint))

    def embed_audio(self, windows) -> np.ndarray:  # type: ignore[no-untyped-def]
        angles = [min(float(np.max(np.abs(w))), 1.0) * math.pi / 2 for w in windows]
        return np.array([[math.sin(a), math.cos(a)] for a in angles], dtype=np.float32)

    def embed_text(self, texts) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.array([[1.0, 0.0] if "loud" in t else [0.0, 1.0] for t in texts], dtype=np.float32)


register_family("test_loudness", lambda checkpoint, model_id, *_: LoudnessEncoder(model_id, checkpoint), (".loudness",))

# File -> peak amplitude of each one-second window. long.wav has four windows, of which the second and the
# fourth outscore every other file but b.wav's.
CORPUS = {"long.wav": (0.2, 0.9, 0.5, 0.8), "b.wav": (0.85,), "sub/c.wav": (0.6,), "d.wav": (0.3,)}


def score(amplitude: float) -> float:
    return math.sin(amplitude * math.pi / 2)


@pytest.fixture(scope="module")
def loud_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(corpus, index) of CORPUS, built through the real pipeline with the loudness encoder."""
    root = tmp_path_factory.mktemp("loud")
    corpus = root / "corpus"
    for name, amplitudes in CORPUS.items():
        t = np.arange(RATE) / RATE
        samples = np.concatenate([a * np.sin(2 * np.pi * 440 * t) for a in amplitudes]).astype(np.float32)
        helpers.write_audio(corpus / name, samples, RATE)
    model = root / "model.loudness"
    model.write_text("loudness encoder")
    build_index(corpus, root / "index", BuildOptions(model=str(model), device="cpu"))
    return corpus, root / "index"


# -- one hit per file ---------------------------------------------------------------------------------
def test_grouping_keeps_each_files_best_window_and_counts_files() -> None:
    # Window ranking by file: 7 7 8 7 9 8 -> files 7, 8, 9 by their best window.
    groups = group_by_file([7, 7, 8, 7, 9, 8], k=2)
    assert [(g.file_id, g.best, g.positions) for g in groups] == [(7, 0, (0, 1)), (8, 2, (2,))]
    # Windows that rank below the k-th file's best are left out.
    assert [g.positions for g in group_by_file([7, 7, 8, 7, 9, 8], k=3)] == [(0, 1, 3), (2,), (4,)]
    # Fewer files than k (a filter, a small index): still only windows at least as high as the last hit.
    assert [g.positions for g in group_by_file([7, 7, 8, 7], k=5)] == [(0, 1), (2,)]
    # Widening: stop when k files are found or the index is exhausted; else ask for more.
    assert next_fetch(k=3, fetched=3, found_files=3, total=100) is None
    assert next_fetch(k=3, fetched=10, found_files=2, total=10) is None
    assert next_fetch(k=3, fetched=3, found_files=1, total=100) == 14  # 3 windows per file seen: 3 x 3 x 1.5 + 1


def test_a_file_with_many_matching_windows_appears_once_with_its_best(loud_index: tuple[Path, Path]) -> None:
    corpus, index = loud_index
    engine = Engine(index, device="cpu")
    try:
        hits = engine.query("loud", k=3)
        assert [(Path(h.path).relative_to(corpus).as_posix(), h.start) for h in hits] == [
            ("long.wav", 1.0), ("b.wav", 0.0), ("sub/c.wav", 0.0)]  # k counts files
        assert [h.score for h in hits] == pytest.approx([score(0.9), score(0.85), score(0.6)], abs=1e-5)
        # long.wav's other window that outscores the last hit comes with it; its 0.5 and 0.2 windows do not.
        assert [(w.start, w.end) for w in hits[0].windows] == [(1.0, 2.0), (3.0, 4.0)]
        assert [w.score for w in hits[0].windows] == pytest.approx([score(0.9), score(0.8)], abs=1e-5)
        assert hits[0].relative_path == "long.wav" and hits[2].relative_path == "sub/c.wav"

        # k larger than the first FAISS request can satisfy: the search widens until every file is found.
        assert [Path(h.path).name for h in engine.query("loud", k=10)] == ["long.wav", "b.wav", "c.wav", "d.wav"]

        raw = engine.query("loud", k=3, per_file=False)  # the raw window ranking
        assert [(Path(h.path).name, h.start) for h in raw] == [("long.wav", 1.0), ("b.wav", 0.0), ("long.wav", 3.0)]
        similar = engine.similar(corpus / "b.wav", k=2)
        assert [Path(h.path).name for h in similar] == ["b.wav", "long.wav"]  # b itself, then its nearest file
    finally:
        engine.close()


def test_the_table_has_a_header_relative_paths_and_mss_times(loud_index: tuple[Path, Path]) -> None:
    corpus, index = loud_index
    runner = CliRunner()
    result = runner.invoke(search_cli, ["query", "loud", "--index", str(index), "-k", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "time", "file", "(in", f"{corpus})"]
    assert [line.split() for line in lines[1:]] == [
        ["1", f"{score(0.9):.3f}", "0:01-0:02", "long.wav", "+1", "window"],
        ["2", f"{score(0.85):.3f}", "0:00-0:01", "b.wav"],
        ["3", f"{score(0.6):.3f}", "0:00-0:01", "sub/c.wav"],
    ]
    assert all(len(line) <= 100 for line in lines)

    listed = runner.invoke(search_cli, ["query", "loud", "--index", str(index), "-k", "3", "--windows",
                                        "--device", "cpu"]).stdout.splitlines()
    assert [line.split() for line in listed[1:3]] == [["1", f"{score(0.9):.3f}", "0:01-0:02", "long.wav", "+1", "window"],
                                                      [f"{score(0.8):.3f}", "0:03-0:04"]]
    assert len(listed) == 5

    raw = runner.invoke(search_cli, ["query", "loud", "--index", str(index), "-k", "3", "--per-window",
                                     "--device", "cpu"]).stdout.splitlines()
    assert [line.split()[-1] for line in raw[1:]] == ["long.wav", "b.wav", "long.wav"]

    hits = json.loads(runner.invoke(search_cli, ["query", "loud", "--index", str(index), "-k", "3", "--json",
                                                 "--device", "cpu"]).stdout)
    assert hits[0] == {"rank": 1, "path": str(corpus / "long.wav"), "start": 1.0, "end": 2.0,
                       "score": pytest.approx(score(0.9), abs=1e-5),
                       "windows": [{"start": 1.0, "end": 2.0, "score": pytest.approx(score(0.9), abs=1e-5)},
                                   {"start": 3.0, "end": 4.0, "score": pytest.approx(score(0.8), abs=1e-5)}],
                       # hybrid by default: no word of "loud" in these names, the fused rank of the sound alone
                       "tags": {}, "matched_words": [], "keyword_score": None, "fused_score": pytest.approx(1 / 61)}
    assert hits[1]["path"] == str(corpus / "b.wav")


def test_long_paths_and_times_fit_100_columns() -> None:
    from search.engine import Hit, Window

    root = "/data/sounds"
    path = f"{root}/" + "/".join(["a-very-long-folder-name"] * 6) + "/final-name.wav"
    hit = Hit(1, path, 3725.0, 3735.5, 0.5, 1, 1, (Window(3725.0, 3735.5, 0.5, 1),), root)
    (_, line) = hits_table([hit])
    assert len(line) <= 100 and line.endswith("final-name.wav") and "…" in line
    assert "1:02:05-1:02:16" in line
    assert (clock(59.99), clock(60.0), clock(4.0, up=True), clock(3.2, up=True)) == ("0:59", "1:00", "0:04", "0:04")
    assert hits_table([]) == ["no results"]


def test_a_cli_query_process_flushes_its_output_before_the_fast_exit(loud_index: tuple[Path, Path]) -> None:
    corpus, index = loud_index
    code = "import tests.test_first_run; from search.cli import run; run()"  # registers the loudness encoder
    result = subprocess.run([sys.executable, "-c", code, "query", "loud", "--index", str(index), "-k", "2",
                             "--json", "--device", "cpu"], cwd=REPO, capture_output=True, text=True, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert [h["path"] for h in json.loads(result.stdout)] == [str(corpus / "long.wav"), str(corpus / "b.wav")]


def test_a_search_reads_a_current_catalog_without_sqlalchemy(loud_index: tuple[Path, Path]) -> None:
    _, index = loud_index
    code = ("import sys; from indexer.index import Index; i = Index(sys.argv[1]); "
            "print(i.provenance().model_id, i.generation(), len(i.segments([1, 2, 3])), "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic'))[:1])")
    result = subprocess.run([sys.executable, "-c", code, str(index)], cwd=REPO, capture_output=True, text=True, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["1", "3", "[]"]


# -- classification with your own labels -------------------------------------------------------------
def test_classify_with_a_plain_label_file_and_default_prompts(tmp_path: Path, tone_model: Path) -> None:
    clip = helpers.write_audio(tmp_path / "clip.wav", helpers.tone(440, 2.0, rate=RATE), RATE)
    labels = tmp_path / "mine.txt"
    labels.write_text("a 220 hum\na 440 beep\nan 880 whistle\n")
    result = CliRunner().invoke(search_cli, ["classify", str(clip), "--labels", str(labels), "--model",
                                             str(tone_model), "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    assert entry["labels"][0]["label"] == "a 440 beep"
    assert result.stderr == ("note: no ReCLAP prompt bank for the labels of 'mine': using the 'templates' prompts "
                             "(7 templates per label; --bank FILE gives ReCLAP prompts, see `search prompts "
                             "generate`)\n")

    # An explicit strategy is used as given, without a note.
    explicit = CliRunner().invoke(search_cli, ["classify", str(clip), "--labels", str(labels), "--prompts", "clap",
                                               "--model", str(tone_model), "--json"])
    assert explicit.exit_code == 0 and explicit.stderr == ""

    # No labels and a model without classes of its own: say what to pass.
    missing = CliRunner().invoke(search_cli, ["classify", str(clip), "--model", str(tone_model)])
    assert missing.exit_code == 2
    assert "has no label set of its own: give --labels FILE" in missing.stderr


def test_without_labels_the_starter_model_uses_its_own_classes() -> None:
    from search.cli import _label_set
    from search.prompts import choose_strategy, load_label_set

    own = _label_set(None, None, "starter")
    assert own == load_label_set("starter") and len(own.labels) == 40
    assert choose_strategy(own, None) == ("reclap", None)  # its bank ships: ReCLAP, no note


# -- readable decode errors -------------------------------------------------------------------------
def _wav_with_format_tag(path: Path, tag: int) -> Path:
    data = b"\x01\x02" * 4000
    fmt = struct.pack("<HHIIHH", tag, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_decode_failures_name_the_file_and_a_plain_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("these are my notes, not a recording\n" * 10)
    (tmp_path / "noise.ogg").write_bytes(np.random.default_rng(0).integers(1, 255, 4000, dtype=np.uint8).tobytes())
    soundfile.write(str(tmp_path / "full.flac"), helpers.tone(440, 3.0, rate=RATE), RATE)
    full = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(full[: len(full) // 3])
    _wav_with_format_tag(tmp_path / "odd-codec.wav", 0x9999)
    expected = {
        "empty.wav": "empty file",
        "notes.wav": "not an audio file (it holds text)",
        "noise.ogg": "not an audio file",
        "cut.flac": "truncated FLAC",
        "odd-codec.wav": "unknown codec (WAV format tag 0x9999)",
    }
    for name, reason in expected.items():
        with pytest.raises(AudioDecodeError) as err:
            decode_audio(tmp_path / name, RATE)
        assert str(err.value) == f"{tmp_path / name}: {reason}"
        assert not re.search(r"b'|Errno|\[\d+\]", str(err.value))  # no bytes reprs, no errno numbers
        assert err.value.detail  # the decoders' own words stay available
    # Root reads any file whatever its mode; a decoder's refusal is what a user without rights sees.
    assert plain_reason(tmp_path / "empty.wav", ["pyav: [Errno 13] Permission denied: 'x.wav'"]) == "permission denied"
    assert plain_reason(tmp_path / "gone.wav", ["soundfile: Error opening b'gone.wav'"]) == "file not found"


def test_build_reports_plain_reasons_and_keeps_the_detail(tmp_path: Path, tone_model: Path) -> None:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "ok.wav", helpers.tone(440, 2.0, rate=RATE), RATE)
    (corpus / "notes.wav").write_text("not audio\n" * 20)
    index = tmp_path / "index"
    args = ["build", str(corpus), "--index", str(index), "--model", str(tone_model), "--quiet", "--device", "cpu"]
    result = CliRunner().invoke(indexer_cli, args)
    assert result.exit_code == 3
    assert f"failed: {corpus / 'notes.wav'}: not an audio file (it holds text)\n" in result.stderr
    (failure,) = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(index), "--failed",
                                                             "--json"]).stdout)["failed"]
    assert failure["reason"].startswith("not an audio file (it holds text) (soundfile: ")
    verbose = CliRunner().invoke(indexer_cli, args + ["--verbose"])  # unchanged file: not retried, not listed
    assert "failed: " not in verbose.stderr
    (corpus / "notes.wav").write_text("still not audio\n" * 20)
    verbose = CliRunner().invoke(indexer_cli, args + ["--verbose"])
    assert re.search(r"notes\.wav: not an audio file \(it holds text\) \[soundfile: .*pyav: ", verbose.stderr)


# -- serve -------------------------------------------------------------------------------------------
def test_serve_on_a_busy_port_is_one_line_naming_the_port_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(search_cli, ["serve", "--index", str(tmp_path / "nowhere"), "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: port {port} on 127.0.0.1 is already in use: choose another with --port\n"


# -- set-up as written -------------------------------------------------------------------------------
def _readme_setup_blocks(readme: str) -> list[str]:
    section = readme.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```bash\n(.*?)\n```$", section, flags=re.MULTILINE | re.DOTALL)


def test_ci_runs_the_readme_setup_commands_verbatim(tmp_path: Path) -> None:
    blocks = _readme_setup_blocks((REPO / "README.md").read_text())
    printed = subprocess.run([str(REPO / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True)
    assert printed.stdout == "".join(block + "\n" for block in blocks)
    main_job, tests = blocks
    for command in blocks:  # root on a fresh Debian: no sudo, and the package lists are fetched first
        assert "sudo" not in command and command.startswith("apt-get update && apt-get install -y ")
    # The main job installs what `indexer demo-corpus` renders with itself, not relying on the test command.
    main_packages = set(main_job.split(" && ")[1].split()[3:])
    assert {"fluidsynth", "fluid-soundfont-gm", "espeak-ng", "sound-theme-freedesktop", "python3-venv"} <= main_packages
    assert main_job.endswith('search query "deep resonant organ in a cathedral"')
    assert tests.endswith("python -m pytest -q")

    # A README whose Set-up drifts (a third block) stops CI before anything runs.
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text("## Set-up\n\n```bash\ntrue\n```\n\n```bash\ntrue\n```\n\n```bash\ntrue\n```\n")
    drifted = subprocess.run([str(tmp_path / ".ci" / "run")], capture_output=True, text=True, check=False)
    assert drifted.returncode == 2 and "has 3 bash blocks; expected 2" in drifted.stderr
    # Each block runs in its own shell, in order, and the first failure is CI's exit status.
    (tmp_path / "README.md").write_text("## Set-up\n\n```bash\necho main > ran\n```\n\n```bash\nfalse && echo no\n"
                                        "exit 7\n```\n\n## Usage\n\n```bash\nexit 9\n```\n")
    failed = subprocess.run([str(tmp_path / ".ci" / "run")], capture_output=True, text=True, cwd=tmp_path,
                            check=False)
    assert failed.returncode == 7 and (tmp_path / "ran").read_text() == "main\n"


# -- help ----------------------------------------------------------------------------------------------
def _commands(group, path=()):  # type: ignore[no-untyped-def]
    import click

    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))


@pytest.mark.parametrize("cli", [indexer_cli, search_cli], ids=["indexer", "search"])
def test_help_is_whole_and_describes_every_option(cli) -> None:  # type: ignore[no-untyped-def]
    import click

    groups = [((), cli)] + [(p, c) for p, c in _commands(cli) if isinstance(c, click.Group)]
    for path, _ in groups:  # command summaries are never cut off ("...") at the default 80 columns
        listing = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80).output.split("Commands:\n", 1)[1]
        assert not [line for line in listing.splitlines() if line.rstrip().endswith("...")], listing
    for path, command in _commands(cli):
        undescribed = [p.opts for p in command.params if isinstance(p, click.Option) and not p.help]
        assert undescribed == [], (path, undescribed)
        text = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80).output
        assert not re.search(r"\b(indexer|search)\.[a-z_]+\.[A-Z_]{3,}", text), text  # values, not constant names
    demo = CliRunner().invoke(indexer_cli, ["demo-corpus", "--help"]).output
    assert re.search(r"\[default:\s+100\]", demo)  # the demo seed, as a value
