"""Hubness of text queries on a corpus padded with thousands of short noise clips, with and without the
index's hubness correction (indexer/hubness.py).

    python bench/hubness.py [--work /tmp/hubness] [--noise-clips 5000] [--clips 300] [--seed 4000]

Builds one index (the default model: the bundled starter) of a fresh demo corpus (`--clips` clips of every
class the default sample set renders, seed 4000, which no training run used) plus `--noise-clips` short
noise clips (0.2-1.5 s: white, pink, brown and band-passed noise, mains hum, clicks; random levels), then
asks one text query per demo class ("{label}", the bare class name) twice: through `Engine` with the
correction stored at build time, and with it off. Prints for each:

- noise share: the share of the queries' top-10 slots taken by noise clips (over the classes other than
  "noise" itself; the issue's symptom: 97 of the top 100 hits for "bagpipes" were noise clips);
- top-item share: the share of queries whose top 10 holds the single most frequent item;
- k-occurrence skew: skewness of N10(x), the number of queries whose top 10 holds x, over all items;
- precision@10: share of the top 10 of each class query that is a clip of that class (chance: 1/classes
  of the demo clips, less with the noise);
- query p50 ms: median wall time of a warm `Engine.query` (text model, correction, FAISS, catalog).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf

NOISE_RATE = 16000


def noise_clip(rng: np.random.Generator) -> np.ndarray:
    """One short noise-like clip of a random kind, length and level."""
    n = int(rng.uniform(0.2, 1.5) * NOISE_RATE)
    kind = rng.integers(6)
    white = rng.standard_normal(n)
    if kind == 0:
        x = white
    elif kind in (1, 2):  # pink (1/f) or brown (1/f^2) by shaping the spectrum
        spectrum = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(n, 1 / NOISE_RATE), 20.0)
        x = np.fft.irfft(spectrum / (f ** (0.5 if kind == 1 else 1.0)), n)
    elif kind == 3:  # band-passed noise around a random centre
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1 / NOISE_RATE)
        centre = rng.uniform(200, 6000)
        x = np.fft.irfft(spectrum * np.exp(-0.5 * ((f - centre) / (0.2 * centre)) ** 2), n)
    elif kind == 4:  # mains hum with harmonics and a little hiss
        t = np.arange(n) / NOISE_RATE
        base = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * base * h * t) / h for h in range(1, 6)) + 0.05 * white
    else:  # sparse clicks
        x = np.zeros(n)
        x[rng.integers(0, n, size=int(rng.integers(1, 8)))] = 1.0
        x += 0.01 * white
    x = x / (np.max(np.abs(x)) + 1e-9)
    return (x * 10 ** (rng.uniform(-30, -3) / 20)).astype(np.float32)


def make_corpus(work: Path, clips: int, noise_clips: int, seed: int) -> tuple[Path, dict[str, str]]:
    """The corpus (rendered once) and each file's label ("noise clip" for the padding)."""
    from indexer.demo import generate_demo_corpus

    corpus = work / "corpus"
    demo = corpus / "demo"
    if not (demo / "metadata.csv").is_file():
        generate_demo_corpus(demo, size=clips, seed=seed)
    noise = corpus / "noise"
    if len(list(noise.glob("*.wav"))) != noise_clips:
        noise.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for i in range(noise_clips):
            sf.write(noise / f"noise_{i:05d}.wav", noise_clip(rng), NOISE_RATE, subtype="PCM_16")
    with open(demo / "metadata.csv", newline="") as f:
        truth = {str((demo / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}
    for path in noise.glob("*.wav"):
        truth[str(path.resolve())] = "noise clip"
    return corpus, truth


def measure(engine, queries: list[str], truth: dict[str, str], k: int = 10) -> dict[str, float]:
    """The figures of the module docstring for one engine."""
    from collections import Counter

    occurrences: Counter[str] = Counter()
    noise_slots = slots = 0
    precisions = []
    engine.query("warm-up", k=k)  # loads the FAISS store and the text model
    times = []
    for label in queries:
        started = time.perf_counter()
        paths = [hit.path for hit in engine.query(label, k=k)]
        times.append(time.perf_counter() - started)
        occurrences.update(set(paths))
        precisions.append(sum(truth.get(p) == label for p in paths) / k)
        if label != "noise":
            noise_slots += sum(truth.get(p) == "noise clip" for p in paths)
            slots += len(paths)
    counts = np.array([occurrences.get(path, 0) for path in truth], dtype=np.float64)
    centred = counts - counts.mean()
    skew = float(np.mean(centred**3) / (np.mean(centred**2) ** 1.5 + 1e-12))
    return {
        "noise share": noise_slots / max(1, slots),
        "top-item share": occurrences.most_common(1)[0][1] / len(queries),
        "k-occurrence skew": skew,
        "precision@10": float(np.mean(precisions)),
        "query p50 ms": 1000 * float(np.median(times)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/resound-hubness"))
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--noise-clips", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=4000)
    parser.add_argument("--model", default=None, help="model to index with (default: the bundled starter)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from indexer import BuildOptions, build_index
    from search import Engine

    corpus, truth = make_corpus(args.work, args.clips, args.noise_clips, args.seed)
    index = args.work / f"index-{args.model or 'starter'}"
    started = time.perf_counter()
    options = BuildOptions() if args.model is None else BuildOptions(model=args.model)
    build_index(corpus, index, options)
    build_seconds = time.perf_counter() - started
    queries = sorted({label for label in truth.values() if label != "noise clip"})
    results = {}
    for name, corrected in (("uncorrected", False), ("corrected", True)):
        engine = Engine(index, device="cpu", hubness_correction=corrected)
        if corrected and engine.hubness is None:
            raise SystemExit(f"{index}: the index has no hubness correction")
        results[name] = measure(engine, queries, truth)
        engine.close()
    print(
        f"{len(truth) - args.noise_clips} demo clips of {len(queries)} classes + {args.noise_clips} noise clips; "
        f"{len(queries)} queries (bare class names); build {build_seconds:.0f} s"
    )
    columns = ["noise share", "top-item share", "k-occurrence skew", "precision@10", "query p50 ms"]
    print("| search | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, figures in results.items():
        print(f"| {name} | " + " | ".join(f"{figures[c]:.3f}" if c != "query p50 ms" else f"{figures[c]:.1f}" for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
