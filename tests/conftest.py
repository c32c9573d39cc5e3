"""Shared fixtures: a tokenizer, random-weight CLAP checkpoints, a small corpus of real files and the
session's PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests import postgres_server as postgres_server_module
from tests.postgres_server import PostgresServer

# Tests never reach the hub; anything that tries must fail at once, not after retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Caches a build keeps between runs (bf16 agreement, hubness corrections) start empty in every session: fake
# encoders share model ids and checkpoint hashes, so one test's cached result must not reach another run.
os.environ.setdefault("RESOUND_CACHE_DIR", tempfile.mkdtemp(prefix="resound-test-cache-"))


@pytest.fixture(scope="session")
def roberta_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = helpers.write_roberta_tokenizer(
        tmp_path_factory.mktemp("roberta"), merges=["Ġ a", "t h", "th e", "Ġ the", "o r", "Ġ s"]
    )
    os.environ["RESOUND_ROBERTA_TOKENIZER"] = str(directory)
    return directory


@pytest.fixture(scope="session")
def clap_checkpoint(tmp_path_factory: pytest.TempPathFactory, roberta_tokenizer_dir: Path) -> Path:
    """A random-weight LAION-CLAP checkpoint (HTSAT-tiny + RoBERTa, ~630 MB) in a temporary file."""
    return helpers.write_random_clap_checkpoint(tmp_path_factory.mktemp("ckpt") / "random-clap.pt", seed=0)


@pytest.fixture(scope="session")
def other_clap_checkpoint(tmp_path_factory: pytest.TempPathFactory, roberta_tokenizer_dir: Path) -> Path:
    return helpers.write_random_clap_checkpoint(tmp_path_factory.mktemp("ckpt2") / "other-clap.pt", seed=1)


def make_corpus(root: Path) -> Path:
    """Generated sounds in several formats: tones, a chirp, noises, clicks and espeak-ng speech."""
    h = helpers
    h.write_audio(root / "tones" / "a440.wav", h.tone(440, 3.0))
    h.write_audio(root / "tones" / "a880.m4a", h.tone(880, 2.0) + h.tone(1320, 2.0, amplitude=0.2))
    h.write_audio(root / "sweep.flac", h.chirp(100, 8000, 12.0))
    h.write_audio(root / "noise" / "white.ogg", h.noise(2.5, seed=1))
    h.write_audio(root / "noise" / "brown.mp3", h.noise(4.0, seed=2, color="brown"))
    h.write_audio(root / "clicks.opus", h.clicks(8, 3.0))
    h.espeak(root / "speech" / "hello.wav", "hello world, this is a test of the search engine")
    return root


@pytest.fixture(scope="session")
def corpus_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus_template"))


@pytest.fixture
def corpus(tmp_path: Path, corpus_template: Path) -> Path:
    """A fresh copy of the generated corpus that a test may change."""
    return Path(shutil.copytree(corpus_template, tmp_path / "corpus"))


# Which server the postgres tests used and how many databases they made, for the closing summary.
_POSTGRES_USE: dict[str, object] = {}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (tests/postgres_server.py): RESOUND_TEST_POSTGRES's, the local one on
    127.0.0.1:5432, or a private one started for the session and stopped after it."""
    try:
        server, private = postgres_server_module.acquire()
    except postgres_server_module.PostgresUnavailableError as e:
        pytest.exit(f"PostgreSQL for the postgres tests: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    _POSTGRES_USE["server"] = server
    try:
        yield server
    finally:
        if private is not None:
            private.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"resound_test_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.url()
    _POSTGRES_USE["databases"] = int(_POSTGRES_USE.get("databases", 0)) + 1
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # The URL always carries a password (the named server's own, or one that a trusting server ignores): the
    # tests prove it is never written out or printed.
    yield postgres_server.url(name, driver="postgresql+psycopg", password=postgres_server.password or "s3cret-pw")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    server = _POSTGRES_USE.get("server")
    if isinstance(server, PostgresServer):
        where = {"private": "a private server started by the suite", "named": "the server RESOUND_TEST_POSTGRES names",
                 "local": "the local server"}[server.origin]
        terminalreporter.write_line(f"postgres: {_POSTGRES_USE.get('databases', 0)} test database(s) on {where} "
                                    f"({server.host}:{server.port})")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that reaches PostgreSQL carries the marker, so that `-m postgres` / `-m "not postgres"` select
    # them: those asking for postgres_url, and the postgres half of those parametrised by catalog_url.
    for item in items:
        callspec = getattr(item, "callspec", None)
        uses_catalog = callspec is not None and callspec.params.get("catalog_url") == "postgres"
        if "postgres_url" in getattr(item, "fixturenames", ()) or uses_catalog:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """Each catalog backend in turn: None (SQLite inside the index) or a PostgreSQL URL."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


@pytest.fixture
def tone_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The transparent test encoder (tests/tone_plugin.py) as a plugin model: builds run the real
    pipeline, subprocesses included, in seconds rather than minutes."""
    monkeypatch.setenv("RESOUND_PLUGINS", "tests.tone_plugin")
    model = tmp_path / "model.tones"
    model.write_text("test encoder")
    return model
