"""`indexer build` killed with SIGKILL at random moments (seeded): each resume leaves a consistent index,
no file is lost or embedded twice, and the final index equals one built without interruption.

Every file is a checkpoint (--checkpoint-seconds 0), so the kills land in sealed-file writes, deletion
listings and tier merges (indexer/segments.py) as well as in embedding."""

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

KILLS = 8


def _corpus(root: Path) -> Path:
    """Files of many windows, so that a kill lands mid-file as well as between files."""
    pitches = helpers.ToneEncoder.PITCHES
    for i in range(120):
        audio = np.concatenate([helpers.tone(pitches[(i + j) % len(pitches)], 2.0, rate=16000) for j in range(12)])
        helpers.write_audio(root / f"clip{i:02d}.flac", audio, rate=16000)
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
         str(checkpoint), "--batch-size", "4", "--checkpoint-seconds", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        start_new_session=True,  # its own process group: the kill takes its decoding workers too
    )
    embedding = threading.Event()
    process.log = bytearray()  # type: ignore[attr-defined]

    def watch() -> None:
        while chunk := process.stderr.read(1):
            process.log.extend(chunk)  # type: ignore[attr-defined]
            if b"indexing" in process.log[-64:]:
                embedding.set()

    threading.Thread(target=watch, daemon=True).start()
    return process, embedding


def test_sigkill_at_random_points_then_resume(tmp_path: Path, tone_model: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    reference_path = tmp_path / "reference"
    build_index(corpus, reference_path, BuildOptions(model=str(tone_model)))
    reference = _snapshot(reference_path)

    index_path = tmp_path / "index"
    rng = np.random.default_rng(1234)
    killed_while_embedding = 0
    for _ in range(KILLS):
        process, embedding = _start_build(corpus, index_path, tone_model)
        deadline = time.monotonic() + 120
        while not embedding.wait(timeout=0.05) and process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the build never started embedding: {bytes(process.log).decode(errors='replace')[-2000:]}")
        if process.poll() is not None:
            break  # an earlier resume already finished the corpus
        # Kill within 0.15 s of embedding starting: builds are fast enough that a longer wait lets the
        # first few resumes finish the corpus before all kills have landed.
        time.sleep(float(rng.uniform(0.0, 0.15)))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            killed_while_embedding += 1
        process.wait(timeout=60)
        try:
            report = verify_index(index_path)
        except IndexNotFoundError:
            continue  # killed before its first commit: nothing was written that could be inconsistent
        assert report.ok, report.problems
    assert killed_while_embedding >= KILLS - 1  # the kills really landed mid-build

    process, _ = _start_build(corpus, index_path, tone_model)
    assert process.wait(timeout=600) == 0
    assert verify_index(index_path).ok
    resumed = _snapshot(index_path)
    index = Index(index_path)
    _, files, _ = index.vector_files()
    index.close()
    assert max(f.level for f in files) >= 1  # sealed files were merged along the way
    assert sorted(p.name for p in index_path.glob("*.faiss")) == sorted(f.name for f in files)  # no leftovers
    assert sorted(resumed) == sorted(reference)  # every window once: nothing lost, nothing twice
    for key, vector in reference.items():
        np.testing.assert_allclose(resumed[key], vector, atol=1e-5)
