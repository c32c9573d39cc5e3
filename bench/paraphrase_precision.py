"""Precision@10 of paraphrase queries (words no training caption uses) on a fresh demo render.

    python bench/paraphrase_precision.py [--model starter|PATH] [--clips-per-class 12] [--seed 4242]
                                         [--sample-set fluidr3] [--json]

Renders (or reuses from the starter cache) `clips-per-class` clips of every demo class with a seed no
training, validation, test or other bench render uses (training: 0-3, validation: 1000, the FreePats
bench: 2024, the demo default: 100, tests: 7-14), builds a resound index of it with the model through
the real build code (`indexer.build_index`), and runs through `search.Engine.query` (so any query-time
correction the index stores applies):

- every paraphrase query of indexer/starter/paraphrase_queries.json ("a fiddle", "a downpour"), whose
  key words share no stem with any training text (bench/paraphrase_proof.py proves it);
- for comparison, each class's own label ("violin", "rain"), a word the captions use.

A query's precision@10 is the share of its top 10 files that are clips of its class; the table gives
each class's mean over its queries, and the summary the mean over classes, for all queries and for each
kind alone (synonyms: other names of the sound; references: works, players, brands, genres). Chance is one over the
number of classes (each class has the same number of clips).

The text-tower ceiling: no audio side can rank a query's class first where the text side already puts
the query nearer another class's description. For each query, the classes are ranked by the cosine of
the query to each class's descriptive prompts (averaged, prompts.py), once in the frozen sentence
encoder's own space (MiniLM alone: what the pretrained text tower knows) and once in the model's joint
space (after the learned projection); the share of queries whose own class comes first is reported. A
model whose every clip sat exactly on its class's description would reach about that precision@10.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from indexer import BuildOptions, build_index
from indexer.starter.paraphrases import (
    CONFIRMATION_QUERIES_PATH,
    PARAPHRASE_QUERIES_PATH,
    QUERY_KINDS,
    paraphrase_queries,
)
from indexer.training.data import CorpusSpec, ensure_corpus
from indexer.training.train import DEFAULT_CACHE
from search import Engine

K = 10
FRESH_SEED = 4242


def run_benchmark(model: str, sample_set: str, clips_per_class: int, seed: int, cache_dir: Path,
                  queries_path: Path = PARAPHRASE_QUERIES_PATH) -> dict:
    """Precision@10 of paraphrase and label queries per class (see module docstring)."""
    from indexer.demo import classes_available

    queries = paraphrase_queries(queries_path)
    classes = sorted({q.label for q in queries} & set(classes_available(sample_set)))
    spec = CorpusSpec(sample_set, clips_per_class * len(classes), seed, tuple(classes))
    corpus = ensure_corpus(cache_dir, spec)
    with open(corpus / "metadata.csv", newline="") as f:
        truth = {str((corpus / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}
    with tempfile.TemporaryDirectory(prefix="paraphrase-index-") as tmp:
        started = time.perf_counter()
        build_index(corpus, Path(tmp) / "index", BuildOptions(model=model))
        build_seconds = time.perf_counter() - started
        engine = Engine(Path(tmp) / "index")
        try:
            paraphrase: dict[str, list[dict]] = defaultdict(list)
            for q in queries:
                if q.label in classes:
                    paraphrase[q.label].append(
                        {"query": q.query, "kind": q.kind, "precision": _precision(engine, q.query, q.label, truth)}
                    )
            own_words = {label: _precision(engine, label, label, truth) for label in classes}
            ceiling = text_tower_ceiling(engine.encoder, [q for q in queries if q.label in classes], classes)
            model_id = f"{engine.provenance.model_id} (sha256 {engine.provenance.checkpoint_sha256[:12]})"
        finally:
            engine.close()
    per_class = {label: float(np.mean([r["precision"] for r in paraphrase[label]])) for label in classes}
    by_kind = {}
    for kind in QUERY_KINDS:
        means = [np.mean([r["precision"] for r in paraphrase[c] if r["kind"] == kind]) for c in classes
                 if any(r["kind"] == kind for r in paraphrase[c])]
        by_kind[kind] = {"classes": len(means), "precision_at_10": float(np.mean(means))}
    return {
        "model": model,
        "model_id": model_id,
        "queries": Path(queries_path).name,
        "corpus": str(corpus),
        "sample_set": sample_set,
        "seed": seed,
        "clips": len(truth),
        "classes": len(classes),
        "chance": 1.0 / len(classes),
        "build_seconds": round(build_seconds, 1),
        "paraphrase_precision_at_10": float(np.mean(list(per_class.values()))),
        "own_words_precision_at_10": float(np.mean(list(own_words.values()))),
        "by_kind": by_kind,
        "text_tower_ceiling": ceiling,
        "per_class": {
            label: {"paraphrase": per_class[label], "own_words": own_words[label], "queries": paraphrase[label]}
            for label in classes
        },
    }


def text_tower_ceiling(encoder, queries: list, classes: list[str]) -> dict[str, float]:
    """Share of `queries` whose own class's descriptive prompts are the nearest of all `classes`' (see the
    module docstring), in the sentence encoder's space ("sentence_encoder", starter models only) and in
    the model's joint space ("joint"), overall and per query kind."""
    from indexer.starter.prompts import label_prompts, mean_prompt_embeddings

    prompts = [label_prompts(label, "descriptive") for label in classes]
    truth = np.array([classes.index(q.label) for q in queries])
    kinds = np.array([q.kind for q in queries])
    spaces = {"joint": encoder.embed_text}
    if hasattr(encoder, "sentence_encoder"):
        spaces["sentence_encoder"] = lambda texts: encoder.sentence_encoder().embed(list(texts)).numpy()
    result = {}
    for space, embed in spaces.items():
        centroids = mean_prompt_embeddings(prompts, embed)
        vectors = embed([q.query for q in queries])
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        first = np.argmax(vectors @ centroids.T, axis=1) == truth
        result[space] = float(first.mean())
        for kind in sorted(set(kinds)):
            result[f"{space}_{kind}"] = float(first[kinds == kind].mean())
    return result


def _precision(engine: Engine, query: str, label: str, truth: dict[str, str]) -> float:
    """Share of the top K distinct files for `query` whose class is `label`."""
    files: list[str] = []
    for hit in engine.query(query, k=4 * K):
        path = str(Path(hit.path).resolve())
        if path not in files:
            files.append(path)
    return sum(truth.get(path) == label for path in files[:K]) / K


def format_report(result: dict) -> str:
    """Summary and the per-class table (markdown)."""
    lines = [
        (
            f"model {result['model']} ({result['model_id']}); fresh {result['sample_set']} render, "
            f"seed {result['seed']}: {result['clips']} clips, {result['classes']} classes; chance {result['chance']:.3f}"
        ),
        (
            f"mean precision@{K}: paraphrase queries {result['paraphrase_precision_at_10']:.3f}, "
            f"the captions' own words (labels) {result['own_words_precision_at_10']:.3f}"
        ),
        "by kind: " + "; ".join(
            f"{kind} queries {r['precision_at_10']:.3f} ({r['classes']} classes)" for kind, r in result["by_kind"].items()
        ),
        "text-tower ceiling (share of queries whose nearest class description is their own): " + "; ".join(
            f"{space} {share:.3f}" for space, share in result["text_tower_ceiling"].items()
        ),
        "",
        f"| class | paraphrase P@{K} | own words P@{K} | queries (P@{K}; * a reference) |",
        "|---|---|---|---|",
    ]
    for label, row in result["per_class"].items():
        detail = "; ".join(
            f"{q['query']}{'*' if q['kind'] == 'reference' else ''} ({q['precision']:.1f})" for q in row["queries"]
        )
        lines.append(f"| {label} | {row['paraphrase']:.2f} | {row['own_words']:.2f} | {detail} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="starter", help="registered model name or checkpoint path")
    parser.add_argument("--sample-set", default="fluidr3")
    parser.add_argument("--clips-per-class", type=int, default=12)
    parser.add_argument("--seed", type=int, default=FRESH_SEED)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--queries", type=Path, default=PARAPHRASE_QUERIES_PATH,
                        help=f"query file (default the development set; {CONFIRMATION_QUERIES_PATH.name}: the "
                             "confirmation set)")
    parser.add_argument("--confirm", action="store_const", dest="queries", const=CONFIRMATION_QUERIES_PATH,
                        help="the confirmation set")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_benchmark(args.model, args.sample_set, args.clips_per_class, args.seed, args.cache_dir, args.queries)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
