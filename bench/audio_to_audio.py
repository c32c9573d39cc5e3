"""Audio-to-audio retrieval on the held-out real recordings (0 A.D. + Tux Paint, never trained on):
leave-one-out nearest neighbour accuracy and mean average precision, for a resound model's clip vectors
and for aiSFX's frozen tower alone (the mean of its block embeddings, what the frozen-aiSFX generation's
learned head reads).

    nice -n 15 python bench/audio_to_audio.py [--model starter|PATH ...] [--tower] [--max-windows 8]

Clips: `indexer.training.recordings.evaluation_recordings()` (236 clips, 36 labels). A model's clip vector
is the renormalised mean of its window vectors (bench/real_recordings_zero_shot.embed_clips); the tower's
is the mean of its 100-frame blocks without overlap over the clip's first `--max-windows` 4.62 s windows.
Every clip queries all others by cosine: NN accuracy is the share whose nearest other clip has its label;
AP averages precision at each same-label clip's rank, mAP over queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.real_recordings_zero_shot import embed_clips
from indexer.encoders import l2_normalize, load_encoder
from indexer.errors import AudioDecodeError
from indexer.media.decode import decode_audio
from indexer.training.recordings import evaluation_recordings


def leave_one_out(vectors: np.ndarray, labels: list[str]) -> dict[str, float]:
    """NN accuracy and mAP (percent) of every clip querying the others by cosine."""
    unit = l2_normalize(vectors)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    truth = np.array(labels)
    hits, precisions = [], []
    for i in range(len(truth)):
        order = np.argsort(-similarity[i])[:-1]  # the query itself sorts last
        relevant = truth[order] == truth[i]
        hits.append(bool(relevant[0]))
        if relevant.any():
            ranks = np.flatnonzero(relevant) + 1
            precisions.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return {"nn_accuracy": 100 * float(np.mean(hits)), "map": 100 * float(np.mean(precisions))}


def tower_vectors(paths: list[Path], max_windows: int) -> np.ndarray:
    """(n, 512) mean of each clip's aiSFX block embeddings (bf16 autocast, as a build runs it)."""
    from indexer.starter.aisfx import AisfxFrontEnd, load_aisfx_tower, pooled_embeddings, window_features
    from indexer.starter.config import AISFX_CONFIG

    front_end, tower = AisfxFrontEnd(), load_aisfx_tower().to(memory_format=torch.channels_last)
    size = AISFX_CONFIG.window_samples
    out = np.zeros((len(paths), 512), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            samples = decode_audio(path, 44100).samples
        except AudioDecodeError as e:
            print(f"{path}: skipped ({e})", file=sys.stderr)
            continue
        windows = [samples[s : s + size] for s in range(0, len(samples), size)][:max_windows]
        # A tail shorter than half a block would be one block of mostly zero padding: left out.
        windows = [w for k, w in enumerate(windows) if k == 0 or len(w) >= 50 * 1024]
        features = window_features(front_end, windows, size)
        # The clip's blocks, weighted alike: a mean over every block of every window.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pooled = pooled_embeddings(tower, features)
        weights = torch.tensor([max(1, f.shape[0] // 100) for f in features], dtype=torch.float32)
        out[i] = ((pooled * weights[:, None]).sum(0) / weights.sum()).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="registered name or checkpoint path")
    parser.add_argument("--tower", action="store_true", help="also the frozen aiSFX tower alone")
    parser.add_argument("--max-windows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = evaluation_recordings()
    paths, labels = [c.path for c in clips], [c.label for c in clips]
    results = {}
    for model in args.model:
        started = time.perf_counter()
        vectors, failed = embed_clips(load_encoder(model), paths, "mean", args.max_windows)
        results[model] = {
            **leave_one_out(vectors, labels),
            "seconds": round(time.perf_counter() - started, 1),
            "failed": len(failed),
        }
    if args.tower:
        started = time.perf_counter()
        results["aisfx tower (mean of blocks)"] = {
            **leave_one_out(tower_vectors(paths, args.max_windows), labels),
            "seconds": round(time.perf_counter() - started, 1),
        }
    report = {
        "clips": len(clips),
        "labels": len(set(labels)),
        "load_average": os.getloadavg(),
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['clips']} clips, {report['labels']} labels; load average {report['load_average']}")
    for name, r in results.items():
        print(f"{name:40s} NN {r['nn_accuracy']:5.1f}%  mAP {r['map']:5.1f}%  ({r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
