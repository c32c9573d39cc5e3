"""Issue 25, finding by finding: every input gets an answer or a one-line reason (no traceback, no 500),
commands over many files go on past bad ones (exit status 3), and nothing finished is lost.

The index is built with the default starter model from tones, a unicode name, a name that is not UTF-8,
and three broken files; every command line run here goes through `cli()`, which also asserts that no
input reached the "internal error" line (docs/errors.md).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from indexer.cli import main as indexer_cli
from indexer.exit_status import EXIT_INTERNAL, EXIT_PARTIAL, EXIT_USAGE
from indexer.starter.lexicon import WordNet, find_wordnet
from search.cli import main as search_cli
from tests import helpers
from tests.service_support import announced_server
from tests.test_lexicon import write_wordnet

ROOT = Path(__file__).resolve().parent.parent
GOOD = ("a440.wav", "sweep.flac", "noise.ogg", "日本語 ünï 🎵.wav")
RAW_NAME = os.fsdecode(b"latin1-caf\xe9.wav")  # not UTF-8
BROKEN = {"empty.wav": "empty file", "text.wav": "not an audio file", "truncated.ogg": ""}
SCRIPTS = ["日本語", "кошка", "Ω", "你好", "مرحبا بالعالم", "שלום", "नमस्ते", "e\u0301te\u0301", "a\u200bb\u200d",
           "\u202eevil", "tab\there", "🎵🥁", "ｆｕｌｌ ｗｉｄｔｈ"]


def cli(main, args: list[str], status: int = 0) -> Result:  # type: ignore[no-untyped-def]
    """Run a command in-process; assert its exit status and that it ended in no traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == status, (args, result.exit_code, result.output)
    return result


def error_line(result: Result) -> str:
    """The one line a failed command printed (asserting it is one line)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    corpus = tmp_path_factory.mktemp("corpus")
    helpers.write_audio(corpus / "a440.wav", helpers.tone(440, 2.0))
    helpers.write_audio(corpus / "sweep.flac", helpers.chirp(100, 8000, 4.0))
    helpers.write_audio(corpus / "noise.ogg", helpers.noise(2.0, seed=1))
    helpers.write_audio(corpus / GOOD[3], helpers.tone(660, 1.5))
    helpers.write_audio(corpus / RAW_NAME, helpers.tone(770, 1.5))
    (corpus / "empty.wav").write_bytes(b"")
    (corpus / "text.wav").write_text("this is a text file renamed .wav\n" * 20)
    (corpus / "truncated.ogg").write_bytes((corpus / "noise.ogg").read_bytes()[:200])
    index = tmp_path_factory.mktemp("idx") / "index"
    cli(indexer_cli, ["build", corpus, "--index", index, "--quiet"], EXIT_PARTIAL)
    return corpus, index


# -- 1. a query in a non-Latin script --------------------------------------------------------------
def test_finding1_wordnet_lookups_of_any_script_never_reach_the_licence_header(tmp_path: Path) -> None:
    wordnets = [WordNet(write_wordnet(tmp_path / "wordnet"))]
    if find_wordnet() is not None:  # Debian's, whose licence header runs 29 lines
        wordnets.append(WordNet(find_wordnet()))
    for wordnet in wordnets:
        for word in [*SCRIPTS, "", " ", "  1", "\udce9", "caf\u00e9"]:
            assert wordnet.senses(word) == ("", []), word
        assert wordnet.senses("violin")[1]  # the lookups themselves still work


@pytest.mark.parametrize("text", SCRIPTS)
def test_finding1_queries_in_any_script_are_answered(corpus_index: tuple[Path, Path], text: str) -> None:
    _, index = corpus_index
    hits = json.loads(cli(search_cli, ["query", text, "--index", index, "--json", "-k", "3"]).stdout)
    assert len(hits) == 3 and all(-1.0 <= h["score"] <= 1.0 for h in hits)


def test_a_query_without_latin_letters_is_answered_with_a_note(corpus_index: tuple[Path, Path]) -> None:
    _, index = corpus_index
    note = ("note: the query has no Latin letters: the model's text side was trained on English, so the sound "
            "ranking may be unrelated (file names and tags still match its words in hybrid mode)")
    for text in ("日本語", "кошка мяукает", "🎵 音楽"):
        result = cli(search_cli, ["query", text, "--index", index, "-k", "2"])
        assert result.stdout.splitlines()[0].startswith("rank") and note in result.stderr.splitlines(), text
    for text, mode in (("a tone", "hybrid"), ("e\u0301te\u0301 日本", "hybrid"), ("440", "hybrid"), ("🎵🎵", "hybrid"),
                       ("Ærø", "hybrid"), ("日本語", "keyword")):
        result = cli(search_cli, ["query", text, "--index", index, "-k", "2", "--mode", mode])
        assert "no Latin letters" not in result.stderr, text


def test_finding1_the_api_answers_any_script_with_200(corpus_index: tuple[Path, Path]) -> None:
    from fastapi.testclient import TestClient

    from search.service import create_app

    corpus, index = corpus_index
    with TestClient(create_app(index), base_url="http://127.0.0.1") as client:
        for text in SCRIPTS:
            response = client.get("/api/query", params={"q": text, "k": 2})
            assert response.status_code == 200 and len(response.json()["hits"]) == 2, (text, response.text)
        clip = {"file": ("a.wav", (corpus / "a440.wav").read_bytes())}
        response = client.post("/api/classify", files=clip, data={"labels": "\n".join(SCRIPTS[:6]), "prompts": "label"})
        assert response.status_code == 200, response.text
        labels = [s["label"] for s in response.json()["labels"]]
        assert len(labels) == 5 and set(labels) <= set(SCRIPTS[:6])  # the default k of 5


# -- 2. classify goes on past broken files ---------------------------------------------------------
def test_finding2_classify_of_a_folder_goes_on_past_broken_files(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, _ = corpus_index
    result = cli(search_cli, ["classify", corpus, "--label-set", "starter", "-k", "1", "--index", tmp_path / "none"],
                 EXIT_PARTIAL)
    rows = result.stdout.splitlines()
    assert rows[0] == "path,label_1,probability_1"
    # The name that is not UTF-8 is printed with its odd byte escaped.
    assert sorted(Path(row.split(",")[0]).name for row in rows[1:]) == sorted([*GOOD, "latin1-caf\\xe9.wav"])
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert sorted(line.split(": ", 2)[1].rsplit("/", 1)[1] for line in failed) == sorted(BROKEN)
    for line in failed:
        name = line.split(": ", 2)[1].rsplit("/", 1)[1]
        assert BROKEN[name] in line.split(": ", 2)[2]
    assert f"3 of {len(GOOD) + 1 + 3} files failed" in result.stderr


# -- 3. one-line errors instead of tracebacks --------------------------------------------------------
def test_finding3_a_catalog_that_is_not_a_database_is_one_line(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    _, index = corpus_index
    bogus = tmp_path / "bogus.sqlite"
    bogus.write_text("not a database\n" * 100)
    for main, args in ((search_cli, ["query", "a tone"]), (indexer_cli, ["info"])):
        line = error_line(cli(main, [*args, "--index", index, "--db", f"sqlite:///{bogus}"], 1))
        assert line == f"Error: sqlite:///{bogus}: file is not a database"


@pytest.mark.parametrize(("url", "words"), [
    ("sqlite:////missing/dir/x.sqlite", "/missing/dir/x.sqlite: no catalog database there"),
    ("postgresql://nobody@127.0.0.1:1/x", "postgresql://nobody@127.0.0.1:1/x: connection failed"),
    ("bogus://x", "bogus://x: not a database URL resound can open (unknown kind 'bogus'"),
])
def test_finding3_catalog_urls_that_cannot_be_opened_are_one_line(corpus_index: tuple[Path, Path], url: str,
                                                                   words: str) -> None:
    _, index = corpus_index
    assert error_line(cli(search_cli, ["query", "a tone", "--index", index, "--db", url], 1)).startswith(f"Error: {words}")


@pytest.mark.parametrize(("index_type", "words"), [
    ("garbage", "index type 'garbage': not a FAISS factory string"),
    ("PQ7", "index type 'PQ7': the model's 256-d vectors do not split into its product-quantizer's sub-vectors"),
])
def test_finding3_an_index_type_is_refused_before_any_embedding(corpus_index: tuple[Path, Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, index_type: str,
                                                                 words: str) -> None:
    corpus, index = corpus_index

    def no_embedding(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("embedded before the index type was checked")

    monkeypatch.setattr("indexer.encoders.resolver.load_encoder", no_embedding)
    line = error_line(cli(indexer_cli, ["build", corpus, "--index", tmp_path / "new", "--index-type", index_type,
                                        "--quiet"], 1))
    assert line.startswith(f"Error: {words}")
    assert not (tmp_path / "new").exists()
    assert error_line(cli(indexer_cli, ["compact", "--index", index, "--index-type", index_type], 1)).startswith(
        f"Error: {words}")


def test_finding3_caption_texts_that_are_binary_are_one_line(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, _ = corpus_index
    binary = tmp_path / "texts.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9\n".encode("latin-1"))
    for path, reason in ((binary, "not a text file (it holds binary data)"), (latin, "not UTF-8 text (byte 3)")):
        line = error_line(cli(search_cli, ["caption", corpus / "a440.wav", "--texts", path], 1))
        assert line == f"Error: {path}: {reason}"


def test_finding3_parquet_export_keeps_a_name_that_is_not_utf8(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq  # the export extra; the dev install brings it
    corpus, index = corpus_index
    out = tmp_path / "out.parquet"
    cli(indexer_cli, ["export", "--index", index, "--out", out])
    table = pq.read_table(out)
    raw = os.fsencode(corpus / RAW_NAME)
    assert raw in table.column("path_bytes").to_pylist()
    assert str(corpus / "latin1-caf\\xe9.wav") in table.column("path").to_pylist()


# -- 4. another model is refused from the provenance, offline ----------------------------------------
def test_finding4_another_model_is_refused_without_the_hub(corpus_index: tuple[Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, index = corpus_index

    def no_hub(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the hub was asked")

    monkeypatch.setattr("indexer.encoders.resolver.resolve_hub_file", no_hub)
    line = error_line(cli(search_cli, ["query", "drum", "--index", index, "--model", "630k-audioset-best"], 1))
    assert line == (f"Error: {index}: index was built with model starter-aisfx, not 630k-audioset-best; "
                    f"search it with --model starter-aisfx or rebuild it")


def test_finding4_a_query_never_creates_a_catalog(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    _, index = corpus_index
    other = tmp_path / "other.sqlite"
    line = error_line(cli(search_cli, ["query", "drum", "--index", index, "--db", f"sqlite:///{other}"], 1))
    assert line == f"Error: {other}: no catalog database there (check --db, or build the index)"
    assert not other.exists()


# -- 5. exit statuses and silence --------------------------------------------------------------------
def test_finding5_a_rerun_with_files_still_failing_exits_3(corpus_index: tuple[Path, Path]) -> None:
    corpus, index = corpus_index
    result = cli(indexer_cli, ["build", corpus, "--index", index, "--quiet"], EXIT_PARTIAL)
    # The summary counts the files that still fail, as the exit status does (new-user trial: "0 failed", exit 3).
    assert "0 added" in result.stdout and "0 failed (3 still failing, not retried)" in result.stdout
    assert "3 unchanged files failed before and were not retried" in result.stderr


def test_finding5_caption_with_no_texts_says_so(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, _ = corpus_index
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    line = error_line(cli(search_cli, ["caption", corpus / "a440.wav", "--texts", empty], 1))
    assert line == f"Error: {empty}: no texts (one caption or label per line)"


def test_finding5_an_export_name_that_contradicts_its_format_is_refused(corpus_index: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    _, index = corpus_index
    out = tmp_path / "out.parquet"
    line = error_line(cli(indexer_cli, ["export", "--index", index, "--out", out, "--format", "npz"], 1))
    assert line == f"Error: {out}: the name says parquet, the format asked for is npz: name the file .npz or drop --format"
    assert not out.exists()


# -- 6. the server and the command line agree ---------------------------------------------------------
@pytest.fixture(scope="module")
def server(corpus_index: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """`search serve` in its own process, announced in the index directory."""
    with announced_server(corpus_index[1], ROOT) as process:
        yield process


def test_finding6_filtered_and_non_latin_queries_go_through_the_server(corpus_index: tuple[Path, Path],
                                                                        server) -> None:  # type: ignore[no-untyped-def]
    _, index = corpus_index
    for args in (["日本語"], ["a tone", "--ext", "wav"], ["a tone", "--glob", "*.flac", "--min-duration", "1"]):
        served = cli(search_cli, ["query", *args, "--index", index, "--json", "--verbose"])
        assert served.stderr.startswith("note: answered by search serve at 127.0.0.1"), served.stderr
        local = cli(search_cli, ["query", *args, "--index", index, "--json", "--device", "cpu"])
        assert [h["path"] for h in json.loads(served.stdout)] == [h["path"] for h in json.loads(local.stdout)]
    flac = json.loads(cli(search_cli, ["query", "a tone", "--glob", "*.flac", "--index", index, "--json"]).stdout)
    assert [Path(h["path"]).name for h in flac] == ["sweep.flac"]
    refused = cli(search_cli, ["query", "\u200b\u200d", "--index", index, "--verbose"], 1)
    assert "query text holds only invisible characters" in refused.stderr


def test_finding6_classify_through_the_server_lists_failures_and_no_starter_note(
        corpus_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    corpus, index = corpus_index
    result = cli(search_cli, ["classify", corpus, "-k", "1", "--index", index, "--verbose"], EXIT_PARTIAL)
    assert result.stderr.startswith("note: answered by search serve at 127.0.0.1"), result.stderr
    assert "using the bundled" not in result.stderr
    assert len(result.stdout.splitlines()) == 1 + len(GOOD) + 1
    reasons = {line.split(": ", 2)[1].rsplit("/", 1)[1]: line.split(": ", 2)[2]
               for line in result.stderr.splitlines() if line.startswith("failed: ")}
    assert reasons["empty.wav"] == "empty file" and reasons["text.wav"].startswith("not an audio file")
    assert set(reasons) == set(BROKEN)


def test_finding6_the_api_refuses_what_the_command_line_refuses(corpus_index: tuple[Path, Path]) -> None:
    from fastapi.testclient import TestClient

    from search.service import create_app

    corpus, index = corpus_index
    clip = {"file": ("a.wav", (corpus / "a440.wav").read_bytes())}
    labels = Path(index.parent / "labels.txt")
    cases = [({"labels": "dog\ncat", "label_set": "starter"}, "give labels or label_set, not both",
              ["--labels", labels, "--label-set", "starter"], "give --labels or --label-set, not both", EXIT_USAGE),
             ({"labels": "dog\ncat\ndog"}, "labels: duplicate labels ['dog']", ["--labels", labels],
              f"{labels}: duplicate labels ['dog']", 1),
             ({"labels": " \n "}, "labels: no labels", ["--labels", labels], f"{labels}: no labels", 1)]
    with TestClient(create_app(index), base_url="http://127.0.0.1") as client:
        for form, api_words, args, cli_words, status in cases:
            labels.write_text(form["labels"])
            response = client.post("/api/classify", files=clip, data=form)
            assert (response.status_code, response.json()["detail"]) == (400, api_words)
            line = error_line(cli(search_cli, ["classify", corpus / "a440.wav", *args, "--index", index], status))
            assert line.endswith(cli_words)


def test_finding6_sigterm_removes_the_announcement(corpus_index: tuple[Path, Path], server) -> None:  # type: ignore[no-untyped-def]
    _, index = corpus_index
    assert (index / "serve.json").exists()
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    assert not (index / "serve.json").exists()


# -- 7. output -----------------------------------------------------------------------------------------
def test_finding7_hits_from_two_corpus_folders_show_which(tmp_path: Path) -> None:
    from search.engine import Hit
    from search.output import hits_table

    hits = [Hit(1, "/a/one/x.wav", 0.0, 2.0, 0.9, 1, 1, root="/a/one"),
            Hit(2, "/b/two/x.wav", 0.0, 2.0, 0.8, 2, 2, root="/b/two")]
    lines = hits_table(hits)
    assert lines[0].endswith("file (absolute: hits from 2 corpus folders)")
    assert lines[1].endswith("/a/one/x.wav") and lines[2].endswith("/b/two/x.wav")
    one_root = hits_table(hits[:1])
    assert one_root[0].endswith("file (in /a/one)") and one_root[1].endswith("  x.wav")


def test_finding7_windows_with_a_filter_are_those_at_least_as_high_as_the_last_hit(
        corpus_index: tuple[Path, Path]) -> None:
    _, index = corpus_index
    hits = json.loads(cli(search_cli, ["query", "a rising sweep", "--index", index, "--json", "-k", "5",
                                       "--ext", "flac", "--ext", "ogg"]).stdout)
    # The weakest hit's score: the last hit's in vector mode; hybrid ranks by words too (search/engine.py).
    weakest = min(h["score"] for h in hits)
    assert len(hits) == 2 and all(w["score"] >= weakest - 1e-6 for h in hits for w in h["windows"])


def test_finding7_build_of_a_file_says_it_is_a_file(corpus_index: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, _ = corpus_index
    line = error_line(cli(indexer_cli, ["build", corpus / "a440.wav", "--index", tmp_path / "i", "--quiet"], 1))
    assert line == f"Error: {corpus / 'a440.wav'}: a file, not a corpus directory (give the folder that holds it)"


def test_finding7_models_list_keeps_its_columns_apart() -> None:
    lines = cli(indexer_cli, ["models", "list"]).stdout.splitlines()
    where = lines[0].index("where")
    assert all(line[where - 2:where] == "  " and line[where] != " " for line in lines)


# -- the contract's last resort ------------------------------------------------------------------------
def test_an_unexpected_exception_is_one_line_naming_its_traceback(corpus_index: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, index = corpus_index
    monkeypatch.setenv("RESOUND_LOG_DIR", str(tmp_path / "logs"))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyError("a bug")

    monkeypatch.setattr("search.engine.Engine.query", broken)
    result = CliRunner().invoke(search_cli, ["query", "a tone", "--index", str(index), "--device", "cpu"])
    assert result.exit_code == EXIT_INTERNAL
    (written,) = (tmp_path / "logs").iterdir()
    assert result.stderr == f"internal error (KeyError): please report it; traceback in {written}\n"
    assert "Traceback (most recent call last)" in written.read_text() and "KeyError: 'a bug'" in written.read_text()


def test_normalized_text_keeps_every_script_and_drops_what_nobody_sees() -> None:
    from indexer.text import normalize_text

    assert normalize_text("cafe\u0301 \u200bdog\u202e\x00 ｆｉｌｍ\n\n日本語 \udce9") == "café dog film 日本語 \ufffd"
    assert [normalize_text(t) for t in ("кошка", "Ω", "مرحبا")] == ["кошка", "Ω", "مرحبا"]
    assert np.all([normalize_text(c) == "" for c in ("\u200b", "\x07", "\u2066", "\ufeff")])


def test_bench_a_limit_past_any_decoder_is_no_sample_limit() -> None:
    """bench/hostile_cli.py: `--max-seconds 1e308` ended in OverflowError (seconds x samples per second is
    infinite); it is a limit in seconds with no bound on samples."""
    from indexer.media.decode import MAX_SAMPLES_PER_SECOND, DecodeLimits

    assert DecodeLimits.for_seconds(1e308) == DecodeLimits(max_seconds=1e308, max_samples=None)
    assert DecodeLimits.for_seconds(60.0).max_samples == int(60.0 * MAX_SAMPLES_PER_SECOND)
