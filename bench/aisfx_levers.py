"""Frozen-aiSFX starter checkpoints measured on cached tower embeddings: the held-out real recordings
(zero-shot and audio-to-audio) and FreePats zero-shot, for many heads at the cost of one tower pass.

    nice -n 15 python bench/aisfx_levers.py --model A.safetensors [--model B.safetensors ...] [--json]

The frozen tower is the costly part of an "aisfx" starter and the same for every head, so each evaluation
clip's windows go through it once (float32, as `StarterEncoder.embed_audio` runs it outside a build) and
their pooled 512-d embeddings are cached in `--cache-dir`. A checkpoint's head then turns them into window
vectors exactly as the encoder does; a clip's vector is the renormalised mean of its windows' (as the
benches do). Figures equal those of the full benches up to float rounding:

- held-out real recordings (0 A.D. + Tux Paint, `bench/real_recordings_zero_shot.py`: windows of the
  model's length without overlap, at most 8 a clip): zero-shot accuracy with the bare label, CLAP's
  template and the template ensemble; leave-one-out NN accuracy and mAP (`bench/audio_to_audio.py`);
- FreePats (`bench/starter_zero_shot.py --clips-per-class 30 --seed 3000`, 870 clips, 29 classes):
  zero-shot accuracy with the bare label, the template and descriptive prompts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.audio_to_audio import leave_one_out
from indexer.encoders import l2_normalize
from indexer.encoders.checkpoints import file_sha256
from indexer.media.decode import decode_audio
from indexer.starter.aisfx import (
    TOWER_PATH,
    AisfxFrontEnd,
    load_aisfx_tower,
    pooled_embeddings,
    window_features,
)
from indexer.starter.config import AISFX_CONFIG
from indexer.starter.encoder import StarterEncoder
from indexer.training.data import CorpusSpec, ensure_corpus, read_clip
from indexer.training.evaluate import evaluate_labelled_clips
from indexer.training.recordings import evaluation_recordings
from indexer.training.train import DEFAULT_CACHE, held_out_classes
from indexer.windows import cut_windows
from search.prompts import LabelSet, label_embeddings, label_prompts

STRATEGIES = ("label", "clap", "templates")
FREEPATS_SEED, FREEPATS_PER_CLASS, MAX_WINDOWS = 3000, 30, 8


def _pooled(windows: list[np.ndarray], front_end: AisfxFrontEnd, tower: torch.nn.Module) -> np.ndarray:
    features = window_features(front_end, windows, AISFX_CONFIG.window_samples)
    return pooled_embeddings(tower, features).numpy()


def tower_cache(cache_dir: Path) -> dict[str, object]:
    """Per-window pooled tower embeddings of both evaluation sets, computed once and cached."""
    key = hashlib.sha256(f"{file_sha256(TOWER_PATH)}-{MAX_WINDOWS}-{FREEPATS_SEED}-{FREEPATS_PER_CLASS}".encode()).hexdigest()[:12]
    path = cache_dir / f"aisfx-eval-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    front_end, tower = AisfxFrontEnd(), load_aisfx_tower().to(memory_format=torch.channels_last)
    size = AISFX_CONFIG.window_samples
    rec_vectors, rec_owner, rec_labels = [], [], []
    for i, clip in enumerate(evaluation_recordings()):
        samples = decode_audio(clip.path, 44100).samples
        windows = [w.samples for w in cut_windows(samples, size, size)][:MAX_WINDOWS]
        rec_vectors.append(_pooled(windows, front_end, tower))
        rec_owner += [i] * len(windows)
        rec_labels.append(clip.label)
    classes = held_out_classes("freepats")
    directory = ensure_corpus(cache_dir, CorpusSpec("freepats", FREEPATS_PER_CLASS * len(classes), FREEPATS_SEED, classes))
    from indexer.demo import read_demo_corpus

    clips = read_demo_corpus(directory)
    fp_vectors = [_pooled([read_clip(directory / c.path, 44100)[:size]], front_end, tower) for c in clips]
    data = {
        "recordings": np.concatenate(rec_vectors).astype(np.float32),
        "recording_owner": np.array(rec_owner),
        "recording_labels": np.array(rec_labels),
        "freepats": np.concatenate(fp_vectors).astype(np.float32),
        "freepats_labels": np.array([c.label for c in clips]),
        "freepats_scenes": np.array([c.scene for c in clips]),
    }
    np.savez(path, **data)
    return data


def companion_cache(cache_dir: Path) -> dict[str, np.ndarray]:
    """The shipped starter's vectors of the same windows (for "aisfx+starter" heads), computed once."""
    from indexer.starter.companion import COMPANION_PATH, StarterCompanion

    key = hashlib.sha256(f"{file_sha256(COMPANION_PATH)}-{MAX_WINDOWS}-{FREEPATS_SEED}-{FREEPATS_PER_CLASS}".encode()).hexdigest()[:12]
    path = cache_dir / f"aisfx-eval-companion-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    companion, size = StarterCompanion(), AISFX_CONFIG.window_samples
    recordings = []
    for clip in evaluation_recordings():
        samples = decode_audio(clip.path, 44100).samples
        windows = [w.samples for w in cut_windows(samples, size, size)][:MAX_WINDOWS]
        recordings.append(companion.embed(companion.windows(windows, 44100)).numpy())
    classes = held_out_classes("freepats")
    directory = ensure_corpus(cache_dir, CorpusSpec("freepats", FREEPATS_PER_CLASS * len(classes), FREEPATS_SEED, classes))
    from indexer.demo import read_demo_corpus

    windows = [read_clip(directory / c.path, 44100)[:size] for c in read_demo_corpus(directory)]
    freepats = [companion.embed(companion.windows(windows[s : s + 64], 44100)).numpy() for s in range(0, len(windows), 64)]
    data = {"recordings": np.concatenate(recordings), "freepats": np.concatenate(freepats)}
    np.savez(path, **data)
    return data


def head_vectors(encoder: StarterEncoder, pooled: np.ndarray) -> np.ndarray:
    """Unit window vectors of pooled tower embeddings through `encoder`'s head (as embed_prepared)."""
    with torch.inference_mode():
        return encoder.model.embed_mel(torch.from_numpy(pooled)).float().numpy()


def measure(model: str, data: dict[str, object]) -> dict[str, float]:
    """Every figure of the module docstring for one checkpoint."""
    encoder = StarterEncoder(Path(model))
    if encoder.companion is not None:  # an "aisfx+starter" head reads the starter's vectors after aiSFX's
        extra = companion_cache(Path(str(data["cache_dir"])))
        data = {**data, **{k: np.concatenate([data[k], extra[k]], axis=1) for k in ("recordings", "freepats")}}
    windows = head_vectors(encoder, data["recordings"])
    owner = data["recording_owner"]
    truth = [str(x) for x in data["recording_labels"]]
    clips = l2_normalize(np.stack([windows[owner == i].mean(axis=0) for i in range(len(truth))]))
    labels = sorted(set(truth))
    index = {label: i for i, label in enumerate(labels)}
    out: dict[str, float] = {}
    for strategy in STRATEGIES:
        text = label_embeddings(encoder, label_prompts(LabelSet("recordings", tuple(labels)), strategy), cache=False)
        predicted = np.argmax(clips @ text.T, axis=1)
        out[f"heldout_{strategy}"] = 100 * float(np.mean([predicted[i] == index[t] for i, t in enumerate(truth)]))
    loo = leave_one_out(clips, truth)
    out["a2a_nn"], out["a2a_map"] = loo["nn_accuracy"], loo["map"]
    fp = head_vectors(encoder, data["freepats"])
    metrics = evaluate_labelled_clips(fp, [str(x) for x in data["freepats_labels"]], list(held_out_classes("freepats")), encoder.embed_text)
    for style, figures in metrics.items():
        if isinstance(figures, dict) and "accuracy" in figures:
            out[f"freepats_{style}"] = figures["accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="an \"aisfx\" starter checkpoint")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = {**tower_cache(args.cache_dir), "cache_dir": str(args.cache_dir)}
    results = {model: measure(model, data) for model in args.model}
    if args.json:
        print(json.dumps({"load_average": os.getloadavg(), "results": results}, indent=2))
        return
    for model, r in results.items():
        print(
            f"{model}: held-out ZS {r['heldout_label']:.1f} / {r['heldout_clap']:.1f} / {r['heldout_templates']:.1f}% "
            f"(label / CLAP / ensemble); audio-to-audio NN {r['a2a_nn']:.1f}% mAP {r['a2a_map']:.1f}%; FreePats "
            + " / ".join(f"{k.split('_', 1)[1]} {v:.1f}%" for k, v in r.items() if k.startswith("freepats_"))
        )


if __name__ == "__main__":
    main()
