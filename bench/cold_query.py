"""How long a cold `search query` process takes, beside a bare `python -c "import torch"`.

    python bench/cold_query.py --index demo_idx [--runs 5] [--query rain]

Runs `runs` cold query processes (the `search` console script's code path) and `runs` processes that only
import torch, interleaved so that both see the same machine load, and prints their median wall times and
ratio. Then it runs the query `runs` more times instrumented, to say where the time goes: imports (the
interpreter, torch, faiss, resound), model (loading the encoder), catalog (opening the index and reading
its provenance), index (loading the FAISS files), query (embedding the text, searching, reading the hits'
rows, printing), and exit (from the last line printed to the process's end, as its parent sees it).

Build the demo index first: `indexer demo-corpus demo_corpus && indexer build demo_corpus --index demo_idx`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The console script's code path: `search` runs search.cli:run.
QUERY = "from search.cli import run; run()"
TORCH = "import torch"

# The same path, with clocks around the stages. Imports are done up front so that the stages after them
# measure work, not first imports; the sum is what an uninstrumented process spends.
INSTRUMENTED = r"""
import json, os, sys, time
marks = {"start": float(sys.argv[1])}
import torch, faiss, numpy
import search.cli, search.engine, search.output, indexer.starter.encoder
marks["imports"] = time.time()
from indexer import index as index_module
from indexer.encoders import resolver
from search import engine as engine_module

spent = {"catalog": 0.0, "model": 0.0, "index": 0.0}
def timed(owner, name, stage):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[stage] += time.time() - t
    setattr(owner, name, wrapper)
timed(index_module.Index, "__init__", "catalog")
timed(index_module.Index, "provenance", "catalog")
timed(resolver.EncoderSpec, "load", "model")
timed(index_module.Index, "load_stores", "index")
def report():
    marks["end"] = time.time()
    sys.stderr.write("BENCH " + json.dumps({"marks": marks, "spent": spent}) + "\n")
    sys.stderr.flush()
original_close = engine_module.Engine.close
def close(self):
    original_close(self)
    report()
engine_module.Engine.close = close
sys.argv = ["search"] + sys.argv[2:]
search.cli.run()
"""


def timed_run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds from spawning `args` to its exit, CPU seconds it used); raises if it fails.

    CPU time is reported beside wall time because on a shared machine the wall time of a process is
    mostly its wait for a core; the CPU time is what the process itself costs.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def breakdown(query_args: list[str], env: dict[str, str]) -> dict[str, float]:
    """One instrumented cold query: seconds per stage."""
    spawned = time.time()
    result = subprocess.run([sys.executable, "-c", INSTRUMENTED, repr(spawned), *query_args], env=env,
                            capture_output=True, text=True, check=True)
    ended = time.time()
    line = next(line for line in result.stderr.splitlines() if line.startswith("BENCH "))
    data = json.loads(line[len("BENCH "):])
    marks, spent = data["marks"], data["spent"]
    after_imports = marks["end"] - marks["imports"]
    return {
        "imports": marks["imports"] - spawned,
        "model": spent["model"],
        "catalog": spent["catalog"],
        "index": spent["index"],
        "query": after_imports - spent["model"] - spent["catalog"] - spent["index"],
        "exit": ended - marks["end"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory (the demo index)")
    parser.add_argument("--query", default="rain")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare-with", type=Path, default=None, metavar="CHECKOUT",
                        help="also time the query with another checkout's code (e.g. the commit before this work)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    query_args = ["query", args.query, "--index", args.index, "-k", "10"]

    subprocess.run([sys.executable, "-c", QUERY, *query_args], env=env, check=True, capture_output=True)  # page cache
    queries, imports, others = [], [], []
    other_env = {**env, "PYTHONPATH": str(args.compare_with)} if args.compare_with else None
    for _ in range(args.runs):  # interleaved: every side sees the same load
        imports.append(timed_run([sys.executable, "-c", TORCH], env))
        queries.append(timed_run([sys.executable, "-c", QUERY, *query_args], env))
        if other_env is not None:
            others.append(timed_run([sys.executable, "-c", "from search.cli import main; main()", *query_args],
                                    other_env))
    print(f"cold `search query {args.query!r}` on {args.index}: median of {args.runs}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| process | wall s (median) | wall s (runs) | CPU s (median) |")
    print("|---|---|---|---|")
    rows = [("`search query`", queries), ('`python -c "import torch"`', imports)]
    if others:
        rows.append((f"`search query` of {args.compare_with}", others))
    for name, runs in rows:
        print(f"| {name} | {statistics.median(w for w, _ in runs):.2f} | {' '.join(f'{w:.2f}' for w, _ in runs)} | "
              f"{statistics.median(c for _, c in runs):.2f} |")
    for i, kind in enumerate(("wall", "CPU")):
        q, t = statistics.median(r[i] for r in queries), statistics.median(r[i] for r in imports)
        print(f"ratio query / import torch, {kind} time: {q / t:.2f}x")

    stages = [breakdown(query_args, env) for _ in range(args.runs)]
    print(f"\nwhere a cold query's time goes (median of {args.runs} instrumented runs, s):")
    print("| " + " | ".join(stages[0]) + " | total |")
    print("|" + "---|" * (len(stages[0]) + 1))
    medians = {name: statistics.median(s[name] for s in stages) for name in stages[0]}
    total = statistics.median(sum(s.values()) for s in stages)
    print("| " + " | ".join(f"{v:.3f}" for v in medians.values()) + f" | {total:.2f} |")


if __name__ == "__main__":
    main()
