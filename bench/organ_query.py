"""The demo's organ query with any starter checkpoint, on the corpora tests/test_starter_search.py uses.

    nice -n 15 python bench/organ_query.py --model PATH [--model starter] [--seeds 7-14] [--json]

For each seed, the 48-clip corpus of `tests.test_starter_search.small_corpus_index` (8 classes, 4 scenes,
never trained on) is rendered, built with the checkpoint through the real build code and queried with
"deep resonant organ in a cathedral" (k=3), as the test does with the shipped weights. Reported per model:
on how many corpora a church organ is first (the test asserts all), a cathedral organ is in the top 3 (the
test asserts 7 of 8) and a cathedral organ is first.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERY = "deep resonant organ in a cathedral"


def organ_hits(model: str, seed: int, root: Path) -> list[tuple[str, str]]:
    """(label, scene) of the query's top 3 on the seed's corpus, indexed with `model`."""
    from indexer import BuildOptions, build_index
    from indexer.demo import generate_demo_corpus
    from search import Engine
    from tests.test_starter_search import CLASSES, SCENES

    corpus = root / "corpus"
    if not (corpus / "metadata.csv").is_file():
        generate_demo_corpus(corpus, size=48, seed=seed, classes=CLASSES, scenes=SCENES)
    with open(corpus / "metadata.csv", newline="") as f:
        truth = {str(corpus / r["path"]): (r["label"], r["scene"]) for r in csv.DictReader(f)}
    index = root / f"index-{abs(hash(model))}"
    build_index(corpus, index, BuildOptions(model=model))
    engine = Engine(index)
    try:
        return [truth[h.path] for h in engine.query(QUERY, k=3)]
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="starter (the shipped weights) or a checkpoint path")
    parser.add_argument("--seeds", default="7-14", help="first-last seed (the test's 7-14)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model or ["starter"]:
            per_seed = {seed: organ_hits(model, seed, Path(tmp) / str(seed)) for seed in range(first, last + 1)}
            organ = ("church organ", "cathedral")
            results[model] = {
                "corpora": len(per_seed),
                "organ_first": sum(h[0][0] == "church organ" for h in per_seed.values()),
                "cathedral_organ_top3": sum(organ in h for h in per_seed.values()),
                "cathedral_organ_first": sum(h[0] == organ for h in per_seed.values()),
                "hits": {str(seed): h for seed, h in per_seed.items()},
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for model, r in results.items():
        print(f"{model}: organ first on {r['organ_first']} of {r['corpora']}, cathedral organ in the top 3 on "
              f"{r['cathedral_organ_top3']}, first on {r['cathedral_organ_first']}")


if __name__ == "__main__":
    main()
