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


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, str]]]:
    root = tmp_path_factory.mktemp("demo")
    generate_demo_corpus(root / "corpus", size=48, seed=7, classes=CLASSES,
                         scenes=["cathedral", "dry", "small room", "telephone"])
    with open(root / "corpus" / "metadata.csv", newline="") as f:
        truth = {str(root / "corpus" / r["path"]): (r["label"], r["scene"]) for r in csv.DictReader(f)}
    build_index(root / "corpus", root / "index", BuildOptions())  # the defaults: the starter model
    return root / "index", truth


@pytest.mark.parametrize(("query", "label"), [
    ("rain", "rain"),
    ("someone talking on the telephone", "speech"),
    ("a violin", "violin"),
])
def test_descriptions_find_their_sounds(demo_index, query: str, label: str) -> None:  # type: ignore[no-untyped-def]
    index, truth = demo_index
    engine = Engine(index)
    hits = engine.query(query, k=3)
    engine.close()
    assert truth[hits[0].path][0] == label and sum(truth[h.path][0] == label for h in hits) >= 2, \
        [truth[h.path] for h in hits]


def test_the_organ_in_a_cathedral_query_finds_the_organ_in_the_cathedral(demo_index) -> None:  # type: ignore[no-untyped-def]
    """Issue 3's example query: church organ clips with cathedral reverb in the top 3. The corpus has
    6 organ clips (2 in the cathedral, 2 dry, one in a small room, one on the telephone) and cathedral
    clips of every other class, so the query must match the source and the room together."""
    index, truth = demo_index
    engine = Engine(index)
    hits = [truth[h.path] for h in engine.query("deep resonant organ in a cathedral", k=3)]
    engine.close()
    assert ("church organ", "cathedral") in hits, hits
    assert hits[0][0] == "church organ", hits


def test_the_starter_is_the_default_and_recorded(demo_index) -> None:  # type: ignore[no-untyped-def]
    from indexer import Index

    index, _ = demo_index
    provenance = Index(index).provenance()
    assert provenance.model_id == "starter" and provenance.family == "starter"
    assert len(provenance.checkpoint_sha256) == 64
