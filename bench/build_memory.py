"""Peak memory of `indexer build` for 1,000 and 10,000 files: it must grow by less than 10%.

Each build runs in its own process; its peak resident set size is read from the kernel's accounting of
that child (and its decoding workers). Run: python bench/build_memory.py [--model starter]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile


def make_corpus(root: Path, files: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(files):
        sub = root / f"d{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        n = int(16000 * rng.uniform(0.5, 1.5))
        soundfile.write(sub / f"f{i:05d}.wav", (0.2 * rng.standard_normal(n)).astype(np.float32), 16000)


def peak_rss_mib(corpus: Path, index: Path, model: str) -> float:
    """Peak RSS of the build process and its children (MiB), via a wrapper that reports its own."""
    code = (
        "import resource, sys; from indexer.cli import main;\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit: pass\n"
        "self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print('PEAK', self_kb, kids_kb, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, "build", str(corpus), "--index", str(index), "--model", model,
                             "--quiet"], capture_output=True, text=True, check=False)
    line = next(l for l in result.stderr.splitlines() if l.startswith("PEAK"))
    self_kb, kids_kb = map(int, line.split()[1:])
    return (self_kb + kids_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    args = parser.parse_args()
    figures = {}
    for files in (1_000, 10_000):
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            make_corpus(corpus, files)
            figures[files] = peak_rss_mib(corpus, Path(tmp) / "index", args.model)
        print(f"{files:>6} files: peak RSS {figures[files]:.0f} MiB (build process + largest worker)")
    growth = 100 * (figures[10_000] / figures[1_000] - 1)
    print(f"growth from 1,000 to 10,000 files: {growth:+.1f}%")


if __name__ == "__main__":
    main()
