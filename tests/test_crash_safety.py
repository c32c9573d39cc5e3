"""`indexer build` killed with SIGKILL at random moments (seeded): each resume leaves a consistent index,
no file is lost or embedded twice, and the final index equals one built without interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import BuildOptions, Index, build_index
from indexer.errors import IndexNotFoundError
from indexer.verify import verify_index
from tests import helpers

KILLS = 4


def _corpus(root: Path) -> Path:
    for i in range(10):
        helpers.write_audio(root / f"clip{i:02d}.wav", helpers.tone(150 + 60 * i, 1.0 + (i % 3)))
    helpers.write_audio(root / "long.flac", helpers.chirp(100, 6000, 25.0))  # three windows
    return root


def _snapshot(index_path: Path) -> dict[tuple[str, float, float], np.ndarray]:
    index = Index(index_path)
    store = index.load_stores()["segments"]
    ids = store.ids().tolist()
    assert len(ids) == len(set(ids))
    segments = index.catalog.segments(ids)
    out = {(Path(segments[i].path).name, segments[i].start, segments[i].end): v
           for i, v in zip(ids, store.reconstruct(ids))}
    index.close()
    return out


def _start_build(corpus: Path, index_path: Path, checkpoint: Path) -> tuple[subprocess.Popen, threading.Event]:
    """A build in its own process; the event is set once it starts embedding (the progress bar appears)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "build", str(corpus), "--index", str(index_path), "--model",
         str(checkpoint), "--batch-size", "2", "--checkpoint-seconds", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=True,  # its own process group: the kill takes its decoding workers too
    )
    embedding = threading.Event()

    def watch() -> None:
        seen = b""
        while chunk := process.stderr.read(1):
            seen = (seen + chunk)[-64:]
            if b"indexing" in seen:
                embedding.set()

    threading.Thread(target=watch, daemon=True).start()
    return process, embedding


def test_sigkill_at_random_points_then_resume(tmp_path: Path, clap_checkpoint: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    reference_path = tmp_path / "reference"
    build_index(corpus, reference_path, BuildOptions(model=str(clap_checkpoint)))
    reference = _snapshot(reference_path)

    index_path = tmp_path / "index"
    rng = np.random.default_rng(1234)
    killed_while_embedding = 0
    for _ in range(KILLS):
        process, embedding = _start_build(corpus, index_path, clap_checkpoint)
        if not embedding.wait(timeout=240):
            process.kill()
            pytest.fail("the build never started embedding")
        time.sleep(float(rng.uniform(0.0, 3.0)))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            killed_while_embedding += 1
        process.wait(timeout=60)
        try:
            report = verify_index(index_path)
        except IndexNotFoundError:
            continue  # killed before its first commit: nothing was written that could be inconsistent
        assert report.ok, report.problems
    assert killed_while_embedding >= 3  # the kills really landed mid-build

    process, _ = _start_build(corpus, index_path, clap_checkpoint)
    assert process.wait(timeout=600) == 0
    assert verify_index(index_path).ok
    resumed = _snapshot(index_path)
    assert sorted(resumed) == sorted(reference)  # every window once: nothing lost, nothing twice
    for key, vector in reference.items():
        np.testing.assert_allclose(resumed[key], vector, atol=1e-5)
