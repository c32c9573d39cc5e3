"""Cold `search query` with a LAION-CLAP index: in-process against a running `search serve`.

A LAION-CLAP checkpoint with random weights and the real architecture (HTSAT-tiny + RoBERTa, as the tests
make it) is placed in a temporary Hugging Face cache as `630k-audioset-best.pt`, with a RoBERTa tokenizer;
`indexer build` (default `--model auto`, which picks it) indexes a few generated tones and leaves the
safetensors copy beside the checkpoint. Each measurement is a fresh process running the CLI, the way a
person types it; the variants run interleaved, 5 rounds, and the median is reported:

- `python -c "import torch"`: the floor of anything that loads a model in-process;
- in-process, the pickle only (the safetensors copy moved away);
- in-process, with the safetensors copy;
- through `search serve` running on the same index (found through <index>/serve.json);
- `python -c "import search.cli"`: what the command line imports before it decides anything;
- in-process with the bundled starter model, for reference.

Also printed: building the CLAP model with and without its random initialisation (which resound skips,
since every weight is then loaded), in this process. Run: python bench/cold_query_server.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
QUERY = "a dog barking in the rain"


def place_in_hf_cache(cache: Path, repo_id: str, filename: str, source: Path) -> None:
    """huggingface_hub's layout: the blob named by its sha256 (the LFS ETag), a snapshot link, refs/main."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(source.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, blob)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    link = repo / "snapshots" / revision / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from tests import helpers

    work = Path(tempfile.mkdtemp(prefix="resound-cold-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_CACHE": str(work / "hf"), "HF_HUB_OFFLINE": "1",
           "RESOUND_MODEL_DIR": str(work / "models"), "RESOUND_CACHE": str(work / "cache"), "RESOUND_DB": ""}
    env.pop("RESOUND_ROBERTA_TOKENIZER", None)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})

    print("writing a random-weight LAION-CLAP checkpoint (HTSAT-tiny + RoBERTa) ...", file=sys.stderr)
    checkpoint = helpers.write_random_clap_checkpoint(work / "random.pt", seed=0)
    size_mb = checkpoint.stat().st_size / 1e6
    place_in_hf_cache(work / "hf", "lukewys/laion_clap", "630k-audioset-best.pt", checkpoint)
    tokenizer = helpers.write_roberta_tokenizer(work / "tok", merges=["Ġ a", "t h", "th e", "Ġ the"])
    for name in ("vocab.json", "merges.txt"):
        place_in_hf_cache(work / "hf", "roberta-base", name, tokenizer / name)
    corpus = work / "corpus"
    for i, freq in enumerate((220, 440, 880, 1760, 3520, 7040)):
        helpers.write_audio(corpus / f"tone{i}.wav", helpers.tone(freq, 4.0))

    python = sys.executable
    clap_index, starter_index = work / "clap.idx", work / "starter.idx"
    print("indexing (--model auto, then starter) ...", file=sys.stderr)
    subprocess.run([python, "-m", "indexer.cli", "build", str(corpus), "--index", str(clap_index), "--quiet"],
                   env=env, check=True)
    subprocess.run([python, "-m", "indexer.cli", "build", str(corpus), "--index", str(starter_index), "--quiet",
                    "--model", "starter"], env=env, check=True)
    snapshot = next((work / "hf").glob("models--lukewys--laion_clap/snapshots/*/630k-audioset-best.pt"))
    copy = snapshot.with_name(snapshot.name + ".safetensors")
    assert copy.is_file(), "the build did not leave a safetensors copy"

    server = subprocess.Popen([python, "-m", "search.cli", "serve", "--index", str(clap_index),
                               "--port", str(free_port())], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    serve_file = clap_index / "serve.json"
    deadline = time.monotonic() + 300
    while not serve_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("search serve did not start")
        time.sleep(0.2)
    hidden = clap_index / "serve.hidden"

    def query(index: Path) -> list[str]:
        return [python, "-m", "search.cli", "query", QUERY, "--index", str(index), "--json"]

    def in_process(pickle_only: bool):  # type: ignore[no-untyped-def]
        def run() -> float:
            serve_file.rename(hidden)  # no server for this one
            if pickle_only:
                copy.rename(copy.with_name(copy.name + ".away"))
            try:
                return timed(query(clap_index), env)
            finally:
                hidden.rename(serve_file)
                if pickle_only:
                    copy.with_name(copy.name + ".away").rename(copy)
        return run

    variants = {
        '`python -c "import torch"`': lambda: timed([python, "-c", "import torch"], env),
        "LAION-CLAP, in-process, pickle only": in_process(pickle_only=True),
        "LAION-CLAP, in-process, safetensors copy": in_process(pickle_only=False),
        "LAION-CLAP, through `search serve`": lambda: timed(query(clap_index), env),
        '`python -c "import search.cli"` (the CLI\'s own imports)': lambda: timed([python, "-c", "import search.cli"], env),
        "starter, in-process": lambda: timed(query(starter_index), env),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_ in range(args.rounds):
            for name, run in variants.items():
                times[name].append(run())
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)

    import torch

    from indexer.encoders.laion_clap import build_clap_model

    build = {}
    for initialise in (True, False, True, False):
        started = time.perf_counter()
        build_clap_model("HTSAT-tiny", False, initialise=initialise)
        build.setdefault(initialise, []).append(time.perf_counter() - started)

    torch_floor = statistics.median(times['`python -c "import torch"`'])
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"checkpoint {size_mb:.0f} MB; median of {args.rounds}, interleaved\n")
    print("| cold `search query` | median | min | / import torch |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s | "
              f"{statistics.median(values) / torch_floor:.2f}x |")
    print(f"\nbuilding the CLAP model: {min(build[True]):.2f} s with random initialisation, "
          f"{min(build[False]):.2f} s without (best of 2)")


if __name__ == "__main__":
    main()
