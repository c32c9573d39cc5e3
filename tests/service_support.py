"""Shared by the service tests: a small corpus of tones indexed with the transparent ToneEncoder, and a real
server for it on a free port (uvicorn on a thread), so that every test talks HTTP to a running service."""

from __future__ import annotations

import contextlib
import http.client
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from indexer import BuildOptions, build_index
from tests import helpers

RATE = 16000  # the ToneEncoder's rate; its windows are 2 s


def tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    return helpers.tone(freq, seconds, rate=RATE)


def steps(*freqs: float) -> np.ndarray:
    """2 s of each pitch in turn: one window per pitch."""
    return np.concatenate([tone(f) for f in freqs])


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@dataclass
class ToneIndex:
    """A corpus, its index, the test model, and a file outside the corpus that must never be served."""

    root: Path
    corpus: Path
    index: Path
    model: Path
    secret: Path

    def build(self) -> None:
        build_index(self.corpus, self.index, BuildOptions(model=str(self.model), decode_workers=0))


def make_tone_index(root: Path) -> ToneIndex:
    """tones/a220.wav, tones/a440.flac, tones/a660.ogg (2 s each), mixed/steps.wav (220, 330, 880 Hz: three
    windows), swap/victim.wav (330 Hz, for tests that tamper with it) and linked.wav, a symlink to
    outside/secret.wav (330 Hz) that the build follows but the service must refuse to serve."""
    corpus = root / "corpus"
    helpers.write_audio(corpus / "tones" / "a220.wav", tone(220), rate=RATE)
    helpers.write_audio(corpus / "tones" / "a440.flac", tone(440), rate=RATE)
    helpers.write_audio(corpus / "tones" / "a660.ogg", tone(660), rate=RATE)
    helpers.write_audio(corpus / "mixed" / "steps.wav", steps(220, 330, 880), rate=RATE)
    helpers.write_audio(corpus / "swap" / "victim.wav", tone(330), rate=RATE)
    secret = helpers.write_audio(root / "outside" / "secret.wav", tone(330, 1.0), rate=RATE)
    (corpus / "linked.wav").symlink_to(secret)
    model = root / "model.tones"
    model.write_text("test encoder")
    tones = ToneIndex(root, corpus, root / "index", model, secret)
    tones.build()
    return tones


@contextlib.contextmanager
def tone_environment(cache: Path) -> Iterator[None]:
    """The ToneEncoder plugin registered (as `indexer` processes find it), and a private label cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESOUND_PLUGINS", "tests.tone_plugin")
        mp.setenv("RESOUND_CACHE", str(cache))
        yield


@contextlib.contextmanager
def running_service(index: Path, **config: object) -> Iterator[str]:
    """A real server for `index` on a free loopback port; yields its base URL."""
    from search.service import BackgroundServer, ServiceConfig, create_app

    app = create_app(index, ServiceConfig(**config))  # type: ignore[arg-type]
    with BackgroundServer(app) as server:
        yield server.url


def raw_request(base_url: str, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request whose target goes out byte for byte: http.client, unlike httpx, never normalises `..`."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None and "Content-Length" not in (headers or {}):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def file_ids(index: Path) -> dict[str, int]:
    """Catalog file ids by path relative to the corpus."""
    from indexer import Index

    catalog = Index(index).catalog
    try:
        with catalog.session() as s:
            from sqlalchemy import select

            from db import FileRow

            return {path: file_id for path, file_id in s.execute(select(FileRow.path, FileRow.id))}
    finally:
        catalog.close()


SCHEMATHESIS_CONFIG = Path(__file__).with_name("data") / "schemathesis.toml"


def run_schemathesis(base_url: str, max_examples: int, seed: int, report: Path) -> dict:
    """Fuzz the served OpenAPI document with Schemathesis (every check, coverage and fuzzing phases, one
    worker, fixed seed, no example database: the same cases each run); returns its JSON report."""
    import json
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("schemathesis")
    command = [str(cli), "--config-file", str(SCHEMATHESIS_CONFIG), "run", f"{base_url}/api/openapi.json",
               "--checks", "all", "--phases", "examples,coverage,fuzzing", "-n", str(max_examples),
               "--seed", str(seed), "-w", "1", "--generation-database", "none", "--no-color",
               "--report", "json", "--report-json-path", str(report)]
    # Run where the report goes: Schemathesis keeps a cache (.schemathesis/) in its working directory.
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=report.parent)
    if not report.is_file():
        raise RuntimeError(f"schemathesis wrote no report (exit {done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads(report.read_text())
    result["output"] = done.stdout
    return result


def fuzz_failures(result: dict) -> dict[str, int]:
    """Failures of a Schemathesis report by kind: server errors (5xx, check ST101), and mismatches between
    what the schema promises and what the server answered (every other check); and run errors."""
    server = sum(f["count"] for f in result["failures"] if f["code"] == "ST101")
    return {"server_errors": server, "schema_mismatches": sum(f["count"] for f in result["failures"]) - server,
            "errors": len(result["errors"])}


@contextlib.contextmanager
def announced_server(index: Path, root: Path) -> Iterator[object]:
    """`search serve` on `index` in its own process (code from `root`, a free port), yielded once it has
    announced itself in the index directory; stopped with SIGINT, as a user's Ctrl-C stops it."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from search import remote

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root), "RESOUND_DB": ""}
    process = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(index),
                                "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while remote.read_record(index) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"search serve did not announce itself: {process.stderr.read()}")
        time.sleep(0.2)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(30)
