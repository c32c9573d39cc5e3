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


def _corpus(root: Path, files: range = range(120)) -> Path:
    """Files of many windows, so that a kill lands mid-file as well as between files."""
    pitches = helpers.ToneEncoder.PITCHES
    for i in files:
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


def _start_build(corpus: Path, index_path: Path, checkpoint: Path,
                 index_type: str = "auto") -> tuple[subprocess.Popen, threading.Event]:
    """A build in its own process; the event is set once it starts embedding (the progress bar appears)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "build", str(corpus), "--index", str(index_path), "--model",
         str(checkpoint), "--batch-size", "4", "--checkpoint-seconds", "0", "--index-type", index_type],
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


# A product-quantised type: its sealed files carry float16 re-ranking copies, written and merged beside them.
PQ_TYPE = "IVF4,PQ2"
# An IVF type without re-ranking copies: its merges stream list by list into the new file (indexer/ivf_files.py).
IVF_TYPE = "IVF4,Flat"


@pytest.mark.parametrize("index_type", ["auto", PQ_TYPE, IVF_TYPE])
def test_sigkill_at_random_points_then_resume(tmp_path: Path, tone_model: Path, index_type: str) -> None:
    corpus = tmp_path / "corpus"
    index_path = tmp_path / "index"
    reference_path = tmp_path / "reference"
    options = BuildOptions(model=str(tone_model), index_type=index_type)
    if index_type != "auto":
        # A trained index to grow: the first half built (and trained) whole, the kills land in the second.
        _corpus(corpus, range(60))
        build_index(corpus, reference_path, options)
        build_index(corpus, index_path, options)
        _corpus(corpus, range(60, 120))
    else:
        _corpus(corpus)
    build_index(corpus, reference_path, options)
    reference = _snapshot(reference_path)

    rng = np.random.default_rng(1234)
    killed_while_embedding = 0
    for _ in range(KILLS):
        process, embedding = _start_build(corpus, index_path, tone_model, index_type)
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

    process, _ = _start_build(corpus, index_path, tone_model, index_type)
    assert process.wait(timeout=600) == 0
    assert verify_index(index_path).ok
    resumed = _snapshot(index_path)
    index = Index(index_path)
    _, files, _ = index.vector_files()
    index.close()
    assert max(f.level for f in files) >= 1  # sealed files were merged along the way
    assert sorted(p.name for p in index_path.glob("*.faiss")) == sorted(f.name for f in files)  # no leftovers
    stems = sorted(f.name[: -len(".faiss")] for f in files if f.store == "segments")
    expected_copies = [f"{s}.{kind}.npy" for s in stems for kind in ("f16", "ids")] if index_type == PQ_TYPE else []
    assert sorted(p.name for p in index_path.glob("*.npy")) == sorted(expected_copies)
    assert sorted(resumed) == sorted(reference)  # every window once: nothing lost, nothing twice
    for key, vector in reference.items():
        np.testing.assert_allclose(resumed[key], vector, atol=1e-5)
