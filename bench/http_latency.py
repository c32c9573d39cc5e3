"""Latency of `search query` over HTTP on a warm `search serve`: p50 and p99 of 1,000 text queries on a
100k-segment index.

The index is written without embedding 100k real windows: unit vectors around 4,096 centres (the shape
real embeddings have, as in bench/search_1m.py) go through the library's own writers (CatalogWriter rows, VectorStore, the index
type and recall tuning a build would choose, Index.commit_generation). Queries are embedded by
`--encoder hash` (default): a text encoder that costs microseconds and maps each text near one of the same
centres, so the figures are the service's own cost (HTTP, validation, FAISS, catalog, JSON); or by
`--encoder starter`, the bundled model's text tower, which adds a real forward pass per query.

The server is `search serve` in its own process; the client sends queries one after another on one
keep-alive connection, after a warm-up. Run: python bench/http_latency.py [--segments 100000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from indexer.encoders.base import EncoderInfo, l2_normalize

HERE = Path(__file__).resolve().parent
CENTRES = 4096
REPO = HERE.parent
WORDS = ("rain", "organ", "dog", "bark", "glass", "crowd", "engine", "piano", "violin", "thunder", "wind", "bell",
         "footsteps", "door", "bird", "water", "cathedral", "street", "siren", "drum", "speech", "telephone")


class HashTextEncoder:
    """Texts to unit vectors near one of the checkpoint's centres (chosen by a hash of the text): a
    stand-in for a text tower that costs nothing, so that timings are the service's own."""

    def __init__(self, checkpoint: Path, model_id: str):
        from indexer.encoders.checkpoints import file_sha256

        self.centres = np.load(checkpoint, allow_pickle=False)
        self.info = EncoderInfo(model_id=model_id, family="bench_hash", dim=int(self.centres.shape[1]),
                                sample_rate=16000, window_seconds=10.0, checkpoint_sha256=file_sha256(checkpoint))

    def embed_text(self, texts) -> np.ndarray:  # type: ignore[no-untyped-def]
        out = []
        for text in texts:
            seed = zlib.crc32(text.encode("utf-8"))
            rng = np.random.default_rng(seed)
            centre = self.centres[seed % len(self.centres)]
            out.append(centre + rng.standard_normal(centre.shape).astype(np.float32))
        return l2_normalize(np.stack(out))

    def embed_audio(self, windows) -> np.ndarray:  # type: ignore[no-untyped-def]
        raise NotImplementedError("the benchmark encoder embeds text only")


def register() -> None:
    """Make `*.benchtext` checkpoints load HashTextEncoder (the server process imports this module through
    $RESOUND_PLUGINS)."""
    from indexer.encoders.resolver import register_family

    register_family("bench_hash", lambda checkpoint, model_id, *_: HashTextEncoder(checkpoint, model_id),
                    (".benchtext",))


register()


def write_index(directory: Path, encoder_name: str, segments: int, files: int, index_type: str,
                seed: int = 0) -> dict[str, object]:
    """A `segments`-window index of `files` files with clustered random vectors, written through the
    library's catalog writer and stores; returns what was built."""
    from indexer import Index, Provenance
    from indexer.encoders import load_encoder
    from indexer.store import DEFAULT_FACTORY, choose_factory
    from indexer.tuning import tune_search_params

    rng = np.random.default_rng(seed)
    if encoder_name == "hash":
        checkpoint = directory / "bench-text.benchtext"
        with open(checkpoint, "wb") as f:  # np.save on a path would append .npy
            np.save(f, rng.standard_normal((CENTRES, 512)).astype(np.float32))
        encoder = load_encoder(str(checkpoint))
        centres = encoder.centres
    else:
        encoder = load_encoder(encoder_name)
        checkpoint = Path(encoder_name)
        centres = rng.standard_normal((CENTRES, encoder.info.dim)).astype(np.float32)
    info = encoder.info
    started = time.perf_counter()
    index = Index(directory / "index", create=True)
    per_file = segments // files
    window, hop = info.window_seconds, info.window_seconds
    with index.writer_lock():
        writer = index.catalog.writer()
        try:
            from indexer.encoders.resolver import resolve_model

            writer.ensure_info(**vars(Provenance.of(info, str(resolve_model(str(checkpoint)).checkpoint), hop)))
            corpus_id = writer.corpus_id(str(directory / "corpus"))
            stores = index.directory.load_stores(0, info.dim, DEFAULT_FACTORY)
            for f in range(files):
                n = per_file + (1 if f < segments - per_file * files else 0)
                spans = [(i * hop, i * hop + window) for i in range(n)]
                file_id, segment_ids = writer.add_file(corpus_id, f"sounds/clip{f:05d}.wav", f"{f:064x}", 0, 0.0,
                                                       n * hop, 48000, 1, spans)
                vectors = l2_normalize(centres[rng.integers(0, len(centres), n)]
                                       + rng.standard_normal((n, info.dim)).astype(np.float32))
                stores["segments"].add(segment_ids, vectors)
                stores["files"].add([file_id], l2_normalize(vectors.mean(axis=0, keepdims=True)))
            # What a build does last: the index type for this many vectors, tuned to 0.95 recall@10.
            store = stores["segments"]
            target = choose_factory(store.ntotal) if index_type == "auto" else index_type
            if target != store.factory:
                store = store.converted(target)
            tuning = tune_search_params(store, 0.95)
            writer.update_info(faiss_factory=store.factory, search_params={
                **tuning.params, "recall_at_10": round(tuning.recall_at_10, 4), "target_recall": 0.95})
            stores["segments"] = store
            index.commit_generation(stores, writer)
        finally:
            writer.close()
    counts = index.catalog.counts()
    index.close()
    return {"segments": counts["segments"], "files": counts["files"], "factory": store.factory,
            "search_params": tuning.params, "recall_at_10": round(tuning.recall_at_10, 4),
            "build_seconds": round(time.perf_counter() - started, 1), "model": info.model_id, "dim": info.dim}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "RESOUND_PLUGINS": "http_latency",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(index), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until_up(client, process: subprocess.Popen, timeout: float = 300.0) -> None:  # type: ignore[no-untyped-def]
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"search serve exited: {process.stderr.read()}")
        try:
            if client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("search serve did not answer")


def query_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) + f" {i}" for i in range(n)]


def measure(base_url: str, texts: list[str], warmup: int, k: int) -> dict[str, float]:
    """Sequential queries on one keep-alive connection: client-side latency, and the server's own time."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=60) as client:
        for text in texts[:warmup]:
            client.get("/api/query", params={"q": text, "k": k}).raise_for_status()
        wall, server = [], []
        for text in texts[warmup:]:
            started = time.perf_counter()
            response = client.get("/api/query", params={"q": text, "k": k})
            wall.append(time.perf_counter() - started)
            response.raise_for_status()
            body = response.json()
            assert len(body["hits"]) == k
            server.append(body["took_ms"])
    ms = 1000 * np.asarray(wall)
    return {"queries": len(wall), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max()),
            "server_p50_ms": float(np.percentile(server, 50)), "server_p99_ms": float(np.percentile(server, 99)),
            "queries_per_second": float(len(wall) / np.sum(wall))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--encoder", default="hash", help="hash (default), or a model name such as starter")
    parser.add_argument("--index-type", default="auto", help="auto (what a build picks) or a FAISS factory string")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the index here (default: a temporary one).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="resound-http-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        built = write_index(workdir, args.encoder, args.segments, args.files, args.index_type)
        import httpx

        port = free_port()
        process = start_server(workdir / "index", port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                wait_until_up(client, process)
            result = measure(f"http://127.0.0.1:{port}", query_texts(args.queries + args.warmup, seed=1),
                             args.warmup, args.k)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {**built, **result, "k": args.k, "cpus": os.cpu_count(), "python": platform.python_version()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"index: {built['segments']:,} segments of {built['files']:,} files, {built['factory']} "
          f"{built['search_params']} (recall@10 {built['recall_at_10']}), model {built['model']} ({built['dim']}-d); "
          f"written in {built['build_seconds']} s")
    print(f"{result['queries']} sequential GET /api/query (k={args.k}) on a warm server, {os.cpu_count()} CPUs:")
    print(f"  client  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  mean {result['mean_ms']:.2f} ms  "
          f"max {result['max_ms']:.2f} ms  ({result['queries_per_second']:.0f} queries/s)")
    print(f"  server  p50 {result['server_p50_ms']:.2f} ms  p99 {result['server_p99_ms']:.2f} ms  (took_ms: engine "
          f"and catalog, without HTTP)")


if __name__ == "__main__":
    main()
