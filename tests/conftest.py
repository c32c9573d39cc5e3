"""Shared fixtures: a tokenizer, random-weight CLAP checkpoints and a small corpus of real files."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests import helpers

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


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_url() -> str:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg

    name = f"resound_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # The server trusts local connections; the password is there to prove it is never written out.
    yield f"postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:5432/{name}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
