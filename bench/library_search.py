"""A mixed sound library from real recordings: precision@10 of word queries by sound alone (vector), by
words alone (keyword) and by both (hybrid, the default of `search query`).

    python bench/library_search.py [--work DIR] [--model starter | --clap] [--repeats 3] [--json]

The recordings are `indexer.training.recordings.evaluation_recordings()`: real recordings from Debian
packages that no starter training run used (0 A.D.'s sound effects, Tux Paint's stamp sounds), labelled from
their file names. Labels with at least MIN_CLIPS clips are kept. Within each label, every other clip is
named and described as a sound library would ("HORSE Neighing 03.wav" with a BWF description of what it
holds, in a folder of its category); the others are named as a field recorder names its takes
("field/2024-05-03/ZOOM0007.WAV", no description). Each label's text ("a horse neighing") is a query; its
relevant files are the label's clips, both halves. Printed: mean precision@10 per mode, how many of
the field recorder's files (which only their sound can find) each mode puts in the top 10, and each mode's
query latency in one run (the modes taking turns on every query), as a ratio to the vector mode's, with
the machine's load average.

`--clap` runs LAION-CLAP HTSAT-tiny with random weights (the released weights cannot be downloaded here):
its precision measures nothing but that vector, keyword and hybrid search run end to end with CLAP.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

MIN_CLIPS = 4
RATE = 44100
ARTICLES = {"a", "an", "the", "on", "of"}
MODES = ("vector", "keyword", "hybrid")


def _bwf(path: Path, samples: np.ndarray, description: str | None) -> None:
    """16-bit mono WAV, with a BWF bext chunk holding `description` when there is one."""
    def chunk(name: bytes, body: bytes) -> bytes:
        return name + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    body = b"WAVE" + chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16))
    if description:
        body += chunk(b"bext", description.encode("latin-1", "replace")[:256].ljust(256, b"\x00")
                      + b"resound bench".ljust(32, b"\x00") + b"\x00" * (602 - 288))
    body += chunk(b"data", pcm)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def library_name(label: str, n: int) -> str:
    """'a horse neighing' -> 'HORSE Neighing 03.wav', in a folder of the label's first word."""
    words = [w for w in label.split() if w.lower() not in ARTICLES]
    head, rest = words[0], words[1:]
    return f"Library/{head.capitalize()}/{head.upper()} {' '.join(w.capitalize() for w in rest)} {n:02d}.wav".replace(
        "  ", " ")


def make_library(root: Path) -> dict[str, str]:
    """Write the mixed library; returns relative path -> label."""
    from indexer.media.decode import decode_audio
    from indexer.training.recordings import evaluation_recordings

    clips = evaluation_recordings()
    by_label: dict[str, list] = defaultdict(list)
    for clip in clips:
        by_label[clip.label].append(clip)
    truth, take = {}, 0
    for label in sorted(by_label):
        if len(by_label[label]) < MIN_CLIPS:
            continue
        for n, clip in enumerate(by_label[label]):
            samples = decode_audio(clip.path, RATE).samples
            if n % 2 == 0:
                relative = library_name(label, n // 2 + 1)
                _bwf(root / relative, samples, f"{label[0].upper()}{label[1:]}, {clip.source} recording")
            else:
                take += 1
                relative = f"field/2024-05-{1 + take % 28:02d}/ZOOM{take:04d}.WAV"
                _bwf(root / relative, samples, None)
            truth[relative] = label
    return truth


def random_clap(directory: Path) -> str:
    """A LAION-CLAP HTSAT-tiny checkpoint with random weights (the real architecture) and a tiny RoBERTa
    tokenizer, as the tests build them: the released weights cannot be downloaded here. What it ranks
    says nothing of CLAP; that it ranks in every mode says the plumbing works."""
    from tests import helpers

    directory.mkdir(parents=True, exist_ok=True)
    os.environ["RESOUND_ROBERTA_TOKENIZER"] = str(helpers.write_roberta_tokenizer(directory / "roberta"))
    checkpoint = directory / "random-htsat-tiny.pt"
    if not checkpoint.is_file():
        helpers.write_random_clap_checkpoint(checkpoint, seed=0)
    return str(checkpoint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Keep library and index here (default: a temp dir).")
    parser.add_argument("--model", default="starter")
    parser.add_argument("--clap", action="store_true",
                        help="LAION-CLAP HTSAT-tiny with random weights: a plumbing check, not a measure of CLAP.")
    parser.add_argument("--repeats", type=int, default=3, help="Times each query is timed in each mode (default 3).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from indexer import BuildOptions, build_index
    from search.engine import Engine

    work = args.work or Path(tempfile.mkdtemp(prefix="resound-library-"))
    library = work / "library"
    if args.clap:
        model, index, model_name = random_clap(work / "clap"), work / "index-clap-random", "LAION-CLAP (random weights)"
    else:
        model, index, model_name = args.model, work / ("index" if args.model == "starter" else f"index-{Path(args.model).stem}"), args.model
    if not (work / "truth.json").is_file():
        (work / "truth.json").write_text(json.dumps(make_library(library), indent=1))
    truth: dict[str, str] = json.loads((work / "truth.json").read_text())
    started = time.monotonic()
    build_index(library, index, BuildOptions(model=model))
    built = time.monotonic() - started
    labels = sorted(set(truth.values()))
    engine = Engine(index, device="cpu")
    results: dict[str, dict[str, float]] = {}
    precision: dict[str, list[float]] = {m: [] for m in MODES}
    field_found = dict.fromkeys(MODES, 0)
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}  # this process's CPU time: what a busy machine inflates least
    load_before = os.getloadavg()
    try:
        root = library.resolve()
        for label in labels[:3]:  # warm up: the model's first calls, the catalog's pages, in every mode
            for mode in MODES:
                engine.query(label, k=10, mode=mode)
        # The modes take turns on each query, in an order that rotates, so that a busy moment of a shared
        # machine falls on all of them alike; each figure is the median over queries and repeats.
        for repeat in range(args.repeats):
            for n, label in enumerate(labels):
                turn = (n + repeat) % len(MODES)
                for mode in MODES[turn:] + MODES[:turn]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    hits = engine.query(label, k=10, mode=mode)
                    seconds[mode].append(time.perf_counter() - t0)
                    cpu[mode].append(time.process_time() - c0)
                    if repeat == 0:
                        names = [str(Path(h.path).relative_to(root)) for h in hits]
                        precision[mode].append(sum(truth.get(n) == label for n in names) / 10)
                        field_found[mode] += sum(truth.get(n) == label and n.startswith("field/") for n in names)
    finally:
        engine.close()
    load_after = os.getloadavg()
    vector_ms = 1000 * float(np.median(seconds["vector"]))
    vector_cpu_ms = 1000 * float(np.median(cpu["vector"]))
    for mode in MODES:
        ms, cpu_ms = 1000 * float(np.median(seconds[mode])), 1000 * float(np.median(cpu[mode]))
        results[mode] = {"P@10": float(np.mean(precision[mode])), "field_files_found": field_found[mode],
                         "ms_per_query": ms, "ms_p90": 1000 * float(np.percentile(seconds[mode], 90)),
                         "x_vector": ms / vector_ms, "cpu_ms_per_query": cpu_ms, "cpu_x_vector": cpu_ms / vector_cpu_ms}
    field_total = sum(min(sum(1 for p, lab in truth.items() if lab == label and p.startswith("field/")), 10)
                      for label in labels)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]}
    if args.json:
        print(json.dumps({"files": len(truth), "queries": len(labels), "model": model_name, "modes": results,
                          "repeats": args.repeats, "load_average": load}, indent=2))
        return
    print(f"{len(truth)} files ({sum(p.startswith('field/') for p in truth)} named by a field recorder), "
          f"{len(labels)} word queries, model {model_name}; index built in {built:.0f} s")
    print(f"latency: median of {args.repeats} x {len(labels)} queries a mode, the modes taking turns; load average "
          f"(1/5/15 min) {' / '.join(map(str, load['before']))} before, {' / '.join(map(str, load['after']))} after\n")
    print("| mode | P@10 | field recorder's files in the top 10 | wall ms per query (median) | p90 | x vector "
          "| CPU ms per query (median) | x vector |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, r in results.items():
        print(f"| {mode} | {r['P@10']:.3f} | {r['field_files_found']} of {field_total} | {r['ms_per_query']:.1f} | "
              f"{r['ms_p90']:.1f} | {r['x_vector']:.2f} | {r['cpu_ms_per_query']:.1f} | {r['cpu_x_vector']:.2f} |")


if __name__ == "__main__":
    main()
