"""Zero-shot accuracy on real recordings of everyday sounds from sources the starter model never trained on.

    python bench/real_recordings_zero_shot.py [--model starter|PATH] [--pooling mean|first]
                                              [--candidates eval|all] [--json]

The clips are `indexer.training.recordings.evaluation_recordings()`: recordings from Debian packages that
no training run may use (0 A.D.'s sound effects and Tux Paint's stamp sounds; install them with the
`apt-get install` line the error names when they are missing), labelled from their file names, at most
12 clips per label and at least 2. The model is loaded through resound's encoder registry, so `--model`
takes a registered name or a checkpoint path. Each clip is decoded as resound decodes (mono, soxr to the
model's rate), cut into the model's windows without overlap (at most `--max-windows`), and embedded; the
clip's vector is the renormalised mean of its window vectors (`--pooling first`: the first window only).

Each clip is classified against the label prompts of every candidate label (`eval`: the labels present
in the evaluation, `all`: every label the recordings vocabulary holds) with resound's prompt strategies
(search/prompts.py): the bare label ("a dog barking"), CLAP's template ("This is a sound of a dog
barking.") and the template ensemble. Prints chance, accuracy per strategy and a per-class table, and
text-to-audio R-precision: each label's prompt ranks every clip, and the share of its top n (n: the
label's clip count) that are of the label is averaged over labels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from indexer.encoders import l2_normalize, load_encoder
from indexer.errors import AudioDecodeError
from indexer.media.decode import decode_audio
from indexer.training.recordings import LABEL_CAPTIONS, evaluation_recordings
from indexer.windows import cut_windows
from search.prompts import LabelSet, label_embeddings, label_prompts

STRATEGIES = ("label", "clap", "templates")


def embed_clips(encoder, paths: list[Path], pooling: str, max_windows: int) -> tuple[np.ndarray, list[str]]:  # type: ignore[no-untyped-def]
    """(n, dim) unit clip vectors and the files that failed to decode (their rows are zero)."""
    rate = encoder.info.sample_rate
    window = round(encoder.info.window_seconds * rate)
    vectors = np.zeros((len(paths), encoder.info.dim), dtype=np.float32)
    failed = []
    for i, path in enumerate(paths):
        try:
            samples = decode_audio(path, rate).samples
        except AudioDecodeError as e:  # one bad file never aborts the bench; it counts as a miss
            failed.append(f"{path}: {e}")
            continue
        windows = [w.samples for w in cut_windows(samples, window, window)][: 1 if pooling == "first" else max_windows]
        vectors[i] = l2_normalize(encoder.embed_audio(windows).mean(axis=0, keepdims=True))[0]
    return vectors, failed


def run_benchmark(model: str, pooling: str, candidates: str, max_windows: int) -> dict:
    """Accuracy per prompt strategy, overall and per class (see module docstring)."""
    clips = evaluation_recordings()
    encoder = load_encoder(model)
    started = time.perf_counter()
    audio, failed = embed_clips(encoder, [c.path for c in clips], pooling, max_windows)
    embed_seconds = time.perf_counter() - started
    truth = [c.label for c in clips]
    labels = sorted(set(truth)) if candidates == "eval" else sorted(LABEL_CAPTIONS)
    label_set = LabelSet("recordings", tuple(labels))
    index = {label: i for i, label in enumerate(labels)}
    results: dict[str, dict] = {}
    for strategy in STRATEGIES:
        text = label_embeddings(encoder, label_prompts(label_set, strategy), cache=False)
        predicted = np.argmax(audio @ text.T, axis=1)
        hits = [int(predicted[i] == index[label]) for i, label in enumerate(truth)]
        per_class: dict[str, list[int]] = defaultdict(list)
        for label, hit in zip(truth, hits):
            per_class[label].append(hit)
        # Text to audio: each present label's prompt ranks every clip; R-precision is the share of its
        # top n clips (n: the label's clip count) that are of the label.
        counts = Counter(truth)
        r_precision = {}
        for label in sorted(counts):
            ranked = np.argsort(-(audio @ text[index[label]]), kind="stable")[: counts[label]]
            r_precision[label] = float(np.mean([truth[i] == label for i in ranked]))
        results[strategy] = {
            "accuracy": float(np.mean(hits)),
            "balanced_accuracy": float(np.mean([np.mean(v) for v in per_class.values()])),
            "per_class": {label: float(np.mean(v)) for label, v in sorted(per_class.items())},
            "text_to_audio_r_precision": float(np.mean(list(r_precision.values()))),
            "per_class_r_precision": r_precision,
        }
    return {
        "model": model,
        "model_id": encoder.info.model_id,
        "sha256": encoder.info.checkpoint_sha256,
        "sources": sorted({c.source for c in clips}),
        "clips": len(clips),
        "classes": len(set(truth)),
        "clips_per_class": dict(sorted(Counter(truth).items())),
        "candidates": len(labels),
        "chance": 1.0 / len(labels),
        "pooling": pooling,
        "max_windows": max_windows,
        "decode_failures": failed,
        "embed_seconds": round(embed_seconds, 1),
        "r_precision_chance": float(np.mean([n / len(truth) for n in Counter(truth).values()])),
        "strategies": results,
    }


def format_report(result: dict) -> str:
    """Summary lines, an accuracy table per strategy and the per-class table (markdown)."""
    lines = [
        f"model {result['model']} ({result['model_id']}, sha256 {result['sha256'][:12]})",
        (
            f"{result['clips']} held-out clips from {', '.join(result['sources'])}; {result['classes']} classes; "
            f"{result['candidates']} candidate labels; chance {result['chance']:.3f}; pooling {result['pooling']}"
        ),
        "",
        f"| prompts | accuracy | balanced accuracy | text-to-audio R-precision (chance {result['r_precision_chance']:.3f}) |",
        "|---|---|---|---|",
    ]
    for strategy, r in result["strategies"].items():
        lines.append(
            f"| {strategy} | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | {r['text_to_audio_r_precision']:.3f} |"
        )
    lines += ["", "| class | n | " + " | ".join(STRATEGIES) + " |", "|---|---|" + "---|" * len(STRATEGIES)]
    for label, n in result["clips_per_class"].items():
        cells = " | ".join(f"{result['strategies'][s]['per_class'][label]:.2f}" for s in STRATEGIES)
        lines.append(f"| {label} | {n} | {cells} |")
    if result["decode_failures"]:
        lines += ["", "decode failures (counted as misses):", *result["decode_failures"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="starter", help="registered model name or checkpoint path")
    parser.add_argument("--pooling", choices=("mean", "first"), default="mean")
    parser.add_argument("--candidates", choices=("eval", "all"), default="eval")
    parser.add_argument("--max-windows", type=int, default=8, help="windows per clip averaged (mean pooling)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_benchmark(args.model, args.pooling, args.candidates, args.max_windows)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
