"""A mixed sound library from real recordings: precision@10 of word queries by sound alone (vector), by
words alone (keyword) and by both (hybrid, the default of `search query`).

    python bench/library_search.py [--work DIR] [--model starter] [--json]

The recordings are `indexer.starter.recordings.evaluation_recordings()`: real recordings from Debian
packages that no starter training run used (0 A.D.'s sound effects, Tux Paint's stamp sounds), labelled from
their file names. Labels with at least MIN_CLIPS clips are kept. Within each label, every other clip is
named and described as a sound library would ("HORSE Neighing 03.wav" with a BWF description of what it
holds, in a folder of its category); the others are named as a field recorder names its takes
("field/2024-05-03/ZOOM0007.WAV", no description). Each label's text ("a horse neighing") is a query; its
relevant files are the label's clips, both halves. Printed: mean precision@10 per mode, and how many of
the field recorder's files (which only their sound can find) each mode puts in the top 10.
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

MIN_CLIPS = 4
RATE = 44100
ARTICLES = {"a", "an", "the", "on", "of"}


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
    from indexer.starter.recordings import evaluation_recordings

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Keep library and index here (default: a temp dir).")
    parser.add_argument("--model", default="starter")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from indexer import BuildOptions, build_index
    from search.engine import Engine

    work = args.work or Path(tempfile.mkdtemp(prefix="resound-library-"))
    library, index = work / "library", work / "index"
    if not (work / "truth.json").is_file():
        (work / "truth.json").write_text(json.dumps(make_library(library), indent=1))
    truth: dict[str, str] = json.loads((work / "truth.json").read_text())
    started = time.monotonic()
    build_index(library, index, BuildOptions(model=args.model))
    built = time.monotonic() - started
    labels = sorted(set(truth.values()))
    engine = Engine(index, device="cpu")
    results: dict[str, dict[str, float]] = {}
    try:
        root = library.resolve()
        for mode in ("vector", "keyword", "hybrid"):
            precision, field_found, seconds = [], 0, 0.0
            for label in labels:
                t0 = time.monotonic()
                hits = engine.query(label, k=10, mode=mode)
                seconds += time.monotonic() - t0
                names = [str(Path(h.path).relative_to(root)) for h in hits]
                precision.append(sum(truth.get(n) == label for n in names) / 10)
                field_found += sum(truth.get(n) == label and n.startswith("field/") for n in names)
            results[mode] = {"P@10": float(np.mean(precision)), "field_files_found": field_found,
                             "ms_per_query": 1000 * seconds / len(labels)}
    finally:
        engine.close()
    field_total = sum(min(sum(1 for p, lab in truth.items() if lab == label and p.startswith("field/")), 10)
                      for label in labels)
    if args.json:
        print(json.dumps({"files": len(truth), "queries": len(labels), "model": args.model, "modes": results}, indent=2))
        return
    print(f"{len(truth)} files ({sum(p.startswith('field/') for p in truth)} named by a field recorder), "
          f"{len(labels)} word queries, model {args.model}; index built in {built:.0f} s\n")
    print("| mode | P@10 | field recorder's files in the top 10 | ms per query |")
    print("|---|---:|---:|---:|")
    for mode, r in results.items():
        print(f"| {mode} | {r['P@10']:.3f} | {r['field_files_found']} of {field_total} | {r['ms_per_query']:.1f} |")


if __name__ == "__main__":
    main()
