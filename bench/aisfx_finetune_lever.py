"""Experiment: fine-tune aiSFX's last conv block with a trained "aisfx" head, on cached block-3 activations.

    nice -n 19 python bench/aisfx_finetune_lever.py --init HEAD.safetensors --out-dir DIR [--epochs 2]
        [--block4-lr 5e-5] [--variants control,block4]

Starts from a trained frozen-aiSFX checkpoint (`--init`, e.g. the a2a lever's) and trains for `--epochs`
more epochs on the recipe's data (four sample sets and the training recordings, as `indexer train
--audio-tower aisfx`), twice from the same start, the same batches and learning rates:

- `control`: block 4 frozen: the head and the text projection alone (what more epochs give);
- `block4`: block 4 of the tower trainable as well (its batch norms keep their statistics).

Blocks 1-3 are frozen, so each window's block-3 activations (two 100-frame blocks of 256 x 12 x 12,
float16) are computed once (bf16 autocast) and cached beside the corpora under their own key; the pooled
embeddings of the original tower stay the audio-neighbourhood term's teacher (`--a2a-weight`, 1 as the
a2a lever). Both heads are then measured as `bench/aisfx_levers.py` measures heads (held-out recordings
zero-shot and audio-to-audio, FreePats), on the evaluation clips' pooled embeddings through the original
block 4 (control) or the fine-tuned one (block4), from the same bf16 block-3 activations. Experiment
only: the encoder loads neither the fine-tuned block nor a checkpoint that needs it (`block4.pt` is kept
beside the head for the record).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.starter import aisfx
from indexer.starter.config import AISFX_CONFIG
from indexer.training import data as data_module
from indexer.training.train import (
    DEFAULT_CACHE,
    RECORDED_SCENE,
    SentenceTable,
    TrainConfig,
    audio_neighbourhood_loss,
    choose_captions,
    deterministic_torch,
    prepare_data,
    training_batch,
    training_loss,
    training_texts,
)

ACT_SHAPE = (2, 256, 12, 12)  # two blocks of block-3 activations a window


def block3_activations(tower: aisfx.AisfxTower, features: list[torch.Tensor]) -> torch.Tensor:
    """(windows, 2, 256, 12, 12) float16 block-3 activations of each window's blocks (bf16 autocast); a
    window of one block has NaN in its second (no real activation is NaN)."""
    out = torch.full((len(features), *ACT_SHAPE), float("nan"), dtype=torch.float16)
    blocks = [aisfx.window_blocks(f) for f in features]
    stacked = torch.cat(blocks)
    owners = [(i, j) for i, b in enumerate(blocks) for j in range(len(b))]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(stacked), 32):
            x = stacked[start : start + 32].unsqueeze(1)
            x = tower.conv_block3(tower.conv_block2(tower.conv_block1(x, 2), 2), 2)
            for (i, j), act in zip(owners[start : start + 32], x.float()):
                out[i, j] = act.to(torch.float16)
    return out


def pool_block4(block4: torch.nn.Module, acts: torch.Tensor) -> torch.Tensor:
    """(n, 512) pooled embeddings: block 4 on each window's valid blocks (tower pooling), mean over blocks."""
    n = len(acts)
    valid = ~torch.isnan(acts[:, :, 0, 0, 0])
    flat = acts.reshape(n * 2, *ACT_SHAPE[1:])[valid.reshape(-1)].float()
    emb = block4(flat, 1).mean(dim=3).amax(dim=2).float()
    owners = torch.arange(n).repeat_interleave(valid.sum(dim=1))
    sums = torch.zeros(n, emb.shape[1]).index_add(0, owners, emb)
    return sums / valid.sum(dim=1, keepdim=True).float()


def patch_featuriser(tower: aisfx.AisfxTower) -> None:
    """Make the trainer's data loading produce (and cache, under their own key) block-3 activations."""
    original_key = data_module._front_end_key

    def key(config):  # type: ignore[no-untyped-def]
        return hashlib.sha256(f"{original_key(config)}-block3-bf16".encode()).hexdigest()[:12]

    def call(self, windows):  # type: ignore[no-untyped-def]
        features = aisfx.window_features(self.front_end, windows, self.config.window_samples)
        return block3_activations(tower, features)

    data_module._front_end_key = key
    data_module.WindowFeaturiser.__call__ = call
    data_module.WindowFeaturiser.empty = lambda self: torch.zeros((0, *ACT_SHAPE), dtype=torch.float16)


class FineTuned(torch.nn.Module):
    """A starter head reading block 4's pooled output; `training_loss` sees it as a starter model."""

    def __init__(self, starter: torch.nn.Module, block4: torch.nn.Module):
        super().__init__()
        self.starter, self.block4 = starter, block4
        self.config = starter.config
        self.last_audio: torch.Tensor | None = None

    def embed_mel(self, acts: torch.Tensor) -> torch.Tensor:
        self.last_audio = self.starter.embed_mel(pool_block4(self.block4, acts))
        return self.last_audio

    def embed_sentences(self, sentences: torch.Tensor) -> torch.Tensor:
        return self.starter.embed_sentences(sentences)

    def temperature_scale(self) -> torch.Tensor:
        return self.starter.temperature_scale()


def evaluation_activations(cache_dir: Path, tower: aisfx.AisfxTower) -> dict[str, object]:
    """Block-3 activations of bench/aisfx_levers.py's evaluation windows (same windows, same order)."""
    import bench.aisfx_levers as levers
    from indexer.demo import read_demo_corpus
    from indexer.media.decode import decode_audio
    from indexer.training.data import CorpusSpec, ensure_corpus, read_clip
    from indexer.training.recordings import evaluation_recordings
    from indexer.training.train import held_out_classes
    from indexer.windows import cut_windows

    path = cache_dir / "aisfx-eval-block3-bf16.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    front_end, size = aisfx.AisfxFrontEnd(), AISFX_CONFIG.window_samples
    recordings = []
    for clip in evaluation_recordings():
        samples = decode_audio(clip.path, 44100).samples
        windows = [w.samples for w in cut_windows(samples, size, size)][: levers.MAX_WINDOWS]
        recordings.append(block3_activations(tower, aisfx.window_features(front_end, windows, size)))
    classes = held_out_classes("freepats")
    spec = CorpusSpec("freepats", levers.FREEPATS_PER_CLASS * len(classes), levers.FREEPATS_SEED, classes)
    directory = ensure_corpus(cache_dir, spec)
    windows = [read_clip(directory / c.path, 44100)[:size] for c in read_demo_corpus(directory)]
    freepats = [block3_activations(tower, aisfx.window_features(front_end, windows[s : s + 32], size)) for s in range(0, len(windows), 32)]
    out = {"recordings": torch.cat(recordings).numpy(), "freepats": torch.cat(freepats).numpy()}
    np.savez(path, **out)
    return out


def train_variant(name: str, trainable_block4: bool, args: argparse.Namespace, pooled, acts, sentences, all_labels, all_scenes, config) -> tuple[Path, dict]:  # type: ignore[no-untyped-def]
    """Train one variant from `--init`; returns the head checkpoint's path and the fine-tuned block 4's state."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from indexer.starter.checkpoint import load_starter

    starter, _, _ = load_starter(args.init)
    block4 = aisfx.load_aisfx_tower().conv_block4
    block4.eval()  # batch norms keep the tower's statistics
    for p in block4.parameters():
        p.requires_grad_(trainable_block4)
    model = FineTuned(starter, block4)
    starter.train()
    groups = [{"params": [p for p in starter.parameters() if p.requires_grad], "lr": args.lr, "weight_decay": 0.0}]
    if trainable_block4:
        groups.append({"params": list(block4.parameters()), "lr": args.block4_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)
    peaks = [g["lr"] for g in groups]
    rng = np.random.default_rng(args.seed)
    caption_index = sentences.index
    label_index = {label: i for i, label in enumerate(all_labels)}
    scene_index = {scene: i for i, scene in enumerate(all_scenes)}
    scene_index[RECORDED_SCENE] = -1
    train = acts
    steps_per_epoch = len(train) // config.batch_size
    total = steps_per_epoch * args.epochs
    no_a2a = replace(config, audio_neighbourhood_weight=0.0)
    started, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = rng.permutation(len(train))
        losses = []
        for batch_start in range(0, steps_per_epoch * config.batch_size, config.batch_size):
            indices = order[batch_start : batch_start + config.batch_size]
            captions = choose_captions(train, indices, rng, config.plain_caption_prob)
            index = torch.from_numpy(indices)
            batch = training_batch(train, indices, captions, train.features[index].float(), caption_index,
                                   label_index, scene_index)
            warm = min(1.0, (step + 1) / 20)
            for group, peak in zip(optimizer.param_groups, peaks):
                group["lr"] = peak * warm * 0.5 * (1 + np.cos(np.pi * step / total))
            loss = training_loss(model, sentences, batch, all_labels, all_scenes, no_a2a, rng)  # type: ignore[arg-type]
            if args.a2a_weight > 0:
                loss = loss + args.a2a_weight * audio_neighbourhood_loss(
                    model.last_audio, pooled.features[index].float(),
                    config.audio_neighbourhood_temperature, config.audio_neighbourhood_teacher_temperature,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 5.0)
            optimizer.step()
            losses.append(float(loss.item()))
            step += 1
        print(f"{name}: epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.3f} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    # The head's checkpoint: --init's file with the head, text projection and temperature replaced.
    starter.eval()
    with safe_open(str(args.init), framework="pt", device="cpu") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    for k, v in starter.state_dict().items():
        if k in tensors and v.is_floating_point():
            tensors[k] = v.detach().to(tensors[k].dtype).contiguous()
    out = args.out_dir / f"{name}.safetensors"
    save_file(tensors, str(out), metadata=metadata)
    torch.save(block4.state_dict(), args.out_dir / f"{name}-block4.pt")
    return out, {"seconds": round(seconds, 1), "block4": block4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", type=Path, required=True, help="a trained \"aisfx\" starter checkpoint")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of the head and text projection")
    parser.add_argument("--block4-lr", type=float, default=5e-5, help="peak learning rate of block 4")
    parser.add_argument("--a2a-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--variants", default="control,block4",
                        help="which of control,block4 to train (a long block4 run can skip its control)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if not variants or set(variants) - {"control", "block4"}:
        parser.error(f"--variants: control, block4 or both, not {args.variants!r}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)
    config = TrainConfig(out_path=args.out_dir / "unused.safetensors", model=AISFX_CONFIG, cache_dir=args.cache_dir,
                         threads=args.threads, audio_neighbourhood_weight=args.a2a_weight)
    report: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with deterministic_torch(args.threads):
        t0 = time.perf_counter()
        pooled = prepare_data(config, log).train  # the original tower's pooled embeddings (cached)
        tower = aisfx.load_aisfx_tower().to(memory_format=torch.channels_last)
        patch_featuriser(tower)
        acts_data = prepare_data(config, log)
        acts = acts_data.train
        assert acts.labels == pooled.labels and acts.captions == pooled.captions, "windows out of order"
        report["cache_train_seconds"] = round(time.perf_counter() - t0, 1)
        t1 = time.perf_counter()
        eval_acts = evaluation_activations(args.cache_dir, tower)
        report["cache_eval_seconds"] = round(time.perf_counter() - t1, 1)
        from indexer.starter.minilm import MiniLMTextEncoder

        sentences = SentenceTable.build(training_texts(config), MiniLMTextEncoder(config.text_model_dir), config.cache_dir, log)
        all_labels = sorted(set(acts.labels) | set(acts_data.validation_labels))
        all_scenes = sorted(set(acts.scenes) - {RECORDED_SCENE})
        import bench.aisfx_levers as levers

        base = {**levers.tower_cache(args.cache_dir), "cache_dir": str(args.cache_dir)}
        original_block4 = aisfx.load_aisfx_tower().conv_block4.eval()
        for name, trainable in (("control", False), ("block4", True)):
            if name not in variants:
                continue
            path, info = train_variant(name, trainable, args, pooled, acts, sentences, all_labels, all_scenes, config)
            block4 = info["block4"].eval() if trainable else original_block4
            with torch.inference_mode():
                pooled_eval = {k: np.concatenate([pool_block4(block4, torch.from_numpy(eval_acts[k][s : s + 64])).numpy()
                                                  for s in range(0, len(eval_acts[k]), 64)]) for k in ("recordings", "freepats")}
            figures = levers.measure(str(path), {**base, **pooled_eval})
            report[name] = {"train_seconds": info["seconds"], **figures}
            print(f"{name}: {json.dumps(report[name])}", flush=True)
    report["load_average"] = os.getloadavg()
    (args.out_dir / "finetune.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
