"""CLI queries through a running `search serve` on the same index give what in-process gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.build import BuildOptions, build_index
from search import remote
from search.cli import main as search_cli
from tests import helpers
from tests.service_support import announced_server

pytest.importorskip("uvicorn", reason="the serve extra (fastapi, uvicorn) is part of the dev install")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def starter_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    corpus = tmp_path_factory.mktemp("corpus")
    helpers.write_audio(corpus / "a440.wav", helpers.tone(440, 3.0))
    helpers.write_audio(corpus / "sweep.flac", helpers.chirp(100, 8000, 12.0))
    helpers.write_audio(corpus / "noise.ogg", helpers.noise(2.5, seed=1))
    helpers.write_audio(corpus / "clicks.wav", helpers.clicks(8, 3.0))
    index = tmp_path_factory.mktemp("idx") / "index"
    build_index(corpus, index, BuildOptions(model="starter"))
    return corpus, index


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RESOUND_DB": ""}


@pytest.fixture(scope="module")
def server(starter_index: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """`search serve` in its own process, announced in the index directory."""
    with announced_server(starter_index[1], ROOT) as process:
        yield process


def _cli(args: list[str]) -> tuple[str, str]:
    result = CliRunner().invoke(search_cli, args)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def test_queries_through_the_server_give_the_in_process_answers(starter_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    corpus, index = starter_index
    record = remote.read_record(index)
    assert record is not None and record.pid == server.pid and record.host == "127.0.0.1"
    assert record.model_id == "starter" and (index / "serve.json").stat().st_mode & 0o077 == 0
    commands = [
        ["query", "a pure sine tone", "--index", str(index), "-k", "3", "--json"],
        ["query", "clicks", "--index", str(index), "-k", "4"],
        ["similar", str(corpus / "sweep.flac"), "--index", str(index), "-k", "3", "--json"],
        ["classify", str(corpus / "sweep.flac"), "--label-set", "starter", "--model", "starter", "--index",
         str(index), "-k", "3", "--json"],
    ]
    for args in commands:
        served, note = _cli(args + ["--verbose"])
        assert note.startswith(f"note: answered by search serve at 127.0.0.1:{record.port}"), (args, note)
        # In-process: the same command with the announcement hidden.
        (index / "serve.json").rename(index / "serve.hidden")
        try:
            local, note = _cli(args + ["--verbose"])
        finally:
            (index / "serve.hidden").rename(index / "serve.json")
        assert note.startswith("note: answering in-process: no search serve announced")
        if "--json" in args:
            served_data, local_data = json.loads(served), json.loads(local)
            assert len(served_data) > 0
            if args[0] == "classify":
                assert [l["label"] for l in served_data[0]["labels"]] == [l["label"] for l in local_data[0]["labels"]]
                assert served_data[0]["labels"][0]["probability"] == pytest.approx(local_data[0]["labels"][0]["probability"], abs=1e-5)
                assert len(served_data[0]["timeline"]) == len(local_data[0]["timeline"]) > 1
            else:
                assert [(h["path"], h["start"], h["end"]) for h in served_data] == \
                       [(h["path"], h["start"], h["end"]) for h in local_data]
                assert [h["score"] for h in served_data] == pytest.approx([h["score"] for h in local_data], abs=1e-5)
        else:
            assert [line.split()[0::2] for line in served.splitlines()] == \
                   [line.split()[0::2] for line in local.splitlines()]


def test_the_server_s_notes_reach_the_command_line(starter_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    """What the server says of its answer is printed as the in-process run prints it (new-user trial: the
    --exclude-self note and an empty filter's explanation were lost when a server answered)."""
    corpus, index = starter_index
    commands = [["similar", str(corpus / "sweep.flac"), "--index", str(index), "-k", "3", "--exclude-self"],
                ["query", "a pure sine tone", "--index", str(index), "--ext", "mp3"]]
    for args in commands:
        _, served = _cli(args)
        (index / "serve.json").rename(index / "serve.hidden")
        try:
            _, local = _cli(args)
        finally:
            (index / "serve.hidden").rename(index / "serve.json")
        # The server knows an uploaded clip by its file name, the in-process run by the path given.
        expected = [line.replace(str(corpus) + os.sep, "") for line in local.splitlines()
                    if line.startswith("note: ") and "starter" not in line]
        assert expected and all(line in served.splitlines() for line in expected), (args, served, local)


def test_a_served_query_does_not_load_torch(starter_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    _, index = starter_index
    code = ("import sys; from search.cli import main\n"
            f"main(['query', 'a tone', '--index', {str(index)!r}, '--json'], standalone_mode=False)\n"
            "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], check=False, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "no torch"
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and len(hits) >= 4


def test_a_stale_or_foreign_announcement_is_ignored(starter_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    _, index = starter_index
    record = remote.read_record(index)
    assert record is not None
    original = (index / "serve.json").read_text()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cases = {
        "is gone": replace(record, pid=dead.pid),
        "is not the announced server": replace(record, token="0" * 32),  # the port answers, not with this token
        "the index's model changed": replace(record, model_id="630k-audioset-best"),
    }
    try:
        for reason, stale in cases.items():
            (index / "serve.json").write_text(json.dumps(asdict(stale)))
            _, note = _cli(["query", "a tone", "--index", str(index), "--verbose"])
            assert note.startswith("note: answering in-process:") and reason in note, (reason, note)
    finally:
        (index / "serve.json").write_text(original)


def test_the_announcement_goes_when_the_server_stops(starter_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    _, index = starter_index
    server.send_signal(signal.SIGINT)
    server.wait(30)
    assert not (index / "serve.json").exists()
