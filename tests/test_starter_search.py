"""The bundled starter model answers descriptive queries on a demo corpus, offline, through the real
build and search code."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from indexer import BuildOptions, build_index
from indexer.demo import generate_demo_corpus
from search import Engine

CLASSES = ["church organ", "piano", "violin", "trumpet", "flute", "drum kit", "speech", "rain"]


SCENES = ["cathedral", "dry", "small room", "telephone"]


def small_corpus_index(root: Path, seed: int) -> tuple[Path, dict[str, tuple[str, str]]]:
    """48 clips, 6 of each class, in four scenes (never trained on: the starter's renders use seeds
    0-3), indexed with the defaults (the starter-aisfx model); returns the index and each file's (label, scene)."""
    generate_demo_corpus(root / "corpus", size=48, seed=seed, classes=CLASSES, scenes=SCENES)
    with open(root / "corpus" / "metadata.csv", newline="") as f:
        truth = {str(root / "corpus" / r["path"]): (r["label"], r["scene"]) for r in csv.DictReader(f)}
    build_index(root / "corpus", root / "index", BuildOptions())  # the defaults: the starter-aisfx model
    return root / "index", truth


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    return small_corpus_index(tmp_path_factory.mktemp("demo"), seed=7)


@pytest.mark.parametrize(("query", "label"), [
    ("rain", "rain"),
    ("a violin", "violin"),
])
def test_descriptions_find_their_sounds(demo_index, query: str, label: str) -> None:  # type: ignore[no-untyped-def]
    index, truth = demo_index
    engine = Engine(index)
    hits = engine.query(query, k=3)
    engine.close()
    assert truth[hits[0].path][0] == label and sum(truth[h.path][0] == label for h in hits) >= 2, \
        [truth[h.path] for h in hits]


def test_a_sound_and_a_place_find_that_sound_in_that_place(demo_index) -> None:  # type: ignore[no-untyped-def]
    # The corpus has 6 speech clips, 2 of them over the telephone, and 12 telephone clips in all: both
    # telephone speech clips must be in the top 3, and all 3 hits on the telephone. (The other hit, ranked
    # first, is a drum kit on the line: the place can outweigh the source; MODEL_CARD.md, Limitations.)
    index, truth = demo_index
    engine = Engine(index)
    hits = [truth[h.path] for h in engine.query("someone talking on the telephone", k=3)]
    engine.close()
    assert sum(hit == ("speech", "telephone") for hit in hits) >= 2 and all(s == "telephone" for _, s in hits), hits


def test_the_organ_in_a_cathedral_query_finds_the_organ_in_the_cathedral(tmp_path: Path) -> None:
    """Issue 3's example query: church organ clips with cathedral reverb in the top 3.

    Each corpus has 6 organ clips, about 2 of them in the cathedral, and cathedral clips of every other
    class, so the query must match the source and the room together. The shipped weights do so on all
    8 of these corpora (seeds 7-14; MODEL_CARD.md), and this guards 7 of 8. The top hit is an organ on
    all of them.
    """
    found = {}
    for seed in range(7, 15):
        index, truth = small_corpus_index(tmp_path / str(seed), seed)
        engine = Engine(index)
        hits = [truth[h.path] for h in engine.query("deep resonant organ in a cathedral", k=3)]
        engine.close()
        assert hits[0][0] == "church organ", (seed, hits)
        found[seed] = ("church organ", "cathedral") in hits
    assert sum(found.values()) >= 7, found


def test_the_starter_is_the_default_and_recorded(demo_index) -> None:  # type: ignore[no-untyped-def]
    from indexer import Index

    index, _ = demo_index
    provenance = Index(index).provenance()
    assert provenance.model_id == "starter-aisfx" and provenance.family == "starter"
    assert provenance.preprocessing["audio_tower"]["name"] == "aisfx-0.1.2"
    assert len(provenance.checkpoint_sha256) == 64


def test_more_like_this_ranks_every_file_itself_first(demo_index) -> None:  # type: ignore[no-untyped-def]
    """Every indexed file is its own best match, by file vector against file vectors even without being put
    first (the old window ranking let another take's window outscore a file's own mean), and with
    --exclude-self its closest other file leads."""
    from search.more_like_this import rank_files

    index, truth = demo_index
    engine = Engine(index)
    try:
        files = engine.stores()["files"]
        for path in truth:
            hits = engine.similar(path, k=2)
            assert hits[0].path == path and hits[0].score == pytest.approx(1.0, abs=1e-5)
            file_id = hits[0].file_id
            vector = files.reconstruct([file_id])[0]
            assert rank_files(files, vector, 1, None, None, frozenset())[0][0] == file_id
            left = engine.similar(path, k=1, exclude_self=True)
            assert left[0].path == hits[1].path and engine.notes[-1].startswith("left out")
    finally:
        engine.close()
