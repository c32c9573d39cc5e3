"""Indexing throughput on Ray: the same generated corpus and model embedded by 1 and by 2 encoder actors, and
the merge of the shards into the index timed on its own (a build that finds every shard finished).

Run: python bench/ray_throughput.py [--model starter] [--files 96] [--seconds 8] [--address auto]
Without --address it starts a local Ray instance of --cpus logical CPUs; each actor takes --cpus-per-actor
of them (torch then runs that many threads) and decoding tasks one each. Prints files/s and windows/s of the
Ray stage (start of the Ray job to its last shard) and end to end, the merge time, and a local build's
figures on the same machine for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from indexing_throughput import make_corpus  # bench/ is the script's directory

from indexer import BuildOptions, build_index
from indexer.distributed import RayOptions, build_index_on_ray
from indexer.distributed.shards import SHARD_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="starter")
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-files", type=int, default=8)
    parser.add_argument("--address", default=None, help="An existing cluster (auto, host:port); default: local.")
    parser.add_argument("--cpus", type=int, default=3, help="Logical CPUs of the local Ray instance.")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--gpus-per-actor", type=float, default=None)
    args = parser.parse_args()

    import ray

    options = BuildOptions(model=args.model, batch_size=args.batch_size, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        make_corpus(corpus, args.files, args.seconds)

        t = time.perf_counter()
        local = build_index(corpus, Path(tmp) / "local", options)
        local_seconds = time.perf_counter() - t
        print(f"local build: {local.added} files, {local.segments_added} windows in {local_seconds:.1f} s: "
              f"{local.added / local_seconds:.1f} files/s, {local.segments_added / local_seconds:.0f} windows/s")

        if args.address:
            ray.init(address=args.address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        print(f"ray cluster: {ray.cluster_resources()}")
        try:
            for actors in (1, 2):
                index = Path(tmp) / f"ray{actors}"
                ray_options = RayOptions(actors=actors, block_files=args.block_files, keep_shards=True,
                                         cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor)
                t = time.perf_counter()
                report = build_index_on_ray(corpus, index, options, ray_options)
                total = time.perf_counter() - t
                print(f"ray, {actors} encoder actor{'s' if actors > 1 else ''}: {report.blocks_embedded} blocks; "
                      f"Ray stage {report.embed_seconds:.1f} s: {report.added / report.embed_seconds:.1f} files/s, "
                      f"{report.windows_embedded / report.embed_seconds:.0f} windows/s; end to end {total:.1f} s: "
                      f"{report.added / total:.1f} files/s")
        finally:
            ray.shutdown()

        # The merge alone: a fresh index whose shards are all finished (no Ray job runs).
        merged = Path(tmp) / "merged"
        shutil.copytree(Path(tmp) / "ray2" / SHARD_DIR, merged / SHARD_DIR)
        t = time.perf_counter()
        report = build_index_on_ray(corpus, merged, options, RayOptions(block_files=args.block_files))
        merge = time.perf_counter() - t
        assert report.files_reused == report.added + len(report.failed) and report.blocks_embedded == 0
        print(f"merge of {report.files_reused} files' shards ({report.segments_added} windows) into the index "
              f"and the catalog: {merge:.2f} s")


if __name__ == "__main__":
    main()
