"""Train the starter model from the command line (until `indexer train` wraps train_starter).

    python bench/starter_train.py --out indexer/starter/weights/starter.safetensors \
        --metrics indexer/starter/weights/train_metrics.json --seed 0

Every option maps to one TrainConfig field; the defaults are those the shipped weights were trained with.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

# Passive OpenMP waiting (set before torch loads): on a busy machine, threads spinning at barriers
# while other processes hold the cores made training steps 3x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from indexer.training.augment import AugmentConfig, crop_only
from indexer.training.train import DEFAULT_CACHE, TrainConfig, train_starter


def augment_config(base: AugmentConfig, overrides: str) -> AugmentConfig:
    """`base` with 'field=value,...' overrides; 'off': crops only (augment.crop_only)."""
    if overrides == "off":
        return crop_only(base)
    changes = {}
    for item in filter(None, overrides.split(",")):
        name, _, value = item.partition("=")
        kind = type(getattr(base, name))
        changes[name] = kind(float(value)) if kind in (int, float) else value
    return replace(base, **changes)


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """TrainConfig from command-line options."""
    defaults = TrainConfig(out_path=Path("starter.safetensors"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    parser.add_argument("--metrics", type=Path, default=None, help="metrics JSON to write")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="rendered corpora and log-mels")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--train-sets", default=",".join(defaults.train_sample_sets), help="comma-separated")
    parser.add_argument("--clips-per-set", type=int, default=defaults.clips_per_set)
    parser.add_argument("--validation-clips-per-class", type=int, default=defaults.validation_clips_per_class)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    parser.add_argument("--plain-caption-prob", type=float, default=defaults.plain_caption_prob)
    parser.add_argument("--label-positive-weight", type=float, default=defaults.label_positive_weight)
    parser.add_argument("--class-loss-weight", type=float, default=defaults.class_loss_weight)
    parser.add_argument("--scene-loss-weight", type=float, default=defaults.scene_loss_weight)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="validate every N epochs")
    parser.add_argument("--scene-pair-clips", type=int, default=defaults.scene_pair_clips)
    parser.add_argument("--scene-pair-loss-weight", type=float, default=defaults.scene_pair_loss_weight)
    parser.add_argument(
        "--scene-blind-positives",
        action="store_true",
        help="spread the label share over same-label pairs of any scene (the earlier recipe)",
    )
    parser.add_argument("--select-epoch", choices=["last", "best"], default=defaults.select_epoch)
    parser.add_argument(
        "--audio-channels",
        default=",".join(map(str, defaults.model.audio_channels)),
        help="widths of the CNN blocks, comma-separated",
    )
    parser.add_argument("--text-hidden", type=int, default=defaults.model.text_hidden, help="projection MLP width")
    parser.add_argument("--text-geometry-weight", type=float, default=defaults.text_geometry_weight)
    parser.add_argument("--no-recordings", action="store_true", help="train on the rendered corpora only")
    parser.add_argument("--init-audio-from", type=Path, default=None, help="starter checkpoint whose audio tower to start from")
    parser.add_argument("--recording-windows", type=int, default=defaults.recording_windows)
    parser.add_argument("--recording-repeats", type=int, default=defaults.recording_repeats)
    parser.add_argument("--recording-label-cap", type=int, default=defaults.recording_label_cap)
    parser.add_argument("--recording-label-target", type=int, default=defaults.recording_label_target)
    parser.add_argument("--crop-frames", type=int, default=defaults.augment.crop_frames)
    parser.add_argument(
        "--augment",
        default="",
        help="AugmentConfig overrides, e.g. 'noise_prob=0,mix_prob=0.5' ('off': crops only)",
    )
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--no-bf16", action="store_true", help="train in float32")
    parser.add_argument("--weights-dtype", default=defaults.weights_dtype, choices=["float16", "float32"])
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)
    return replace(
        defaults,
        out_path=args.out,
        metrics_path=args.metrics,
        cache_dir=args.cache_dir,
        seed=args.seed,
        train_sample_sets=tuple(s for s in args.train_sets.split(",") if s),
        clips_per_set=args.clips_per_set,
        validation_clips_per_class=args.validation_clips_per_class,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        plain_caption_prob=args.plain_caption_prob,
        ema_decay=args.ema_decay,
        label_positive_weight=args.label_positive_weight,
        class_loss_weight=args.class_loss_weight,
        scene_loss_weight=args.scene_loss_weight,
        scene_aware_positives=not args.scene_blind_positives,
        scene_pair_clips=args.scene_pair_clips,
        eval_every=args.eval_every,
        scene_pair_loss_weight=args.scene_pair_loss_weight,
        select_epoch=args.select_epoch,
        model=replace(
            defaults.model,
            audio_channels=tuple(int(c) for c in args.audio_channels.split(",")),
            text_hidden=args.text_hidden,
        ),
        text_geometry_weight=args.text_geometry_weight,
        use_recordings=not args.no_recordings,
        init_audio_from=args.init_audio_from,
        recording_windows=args.recording_windows,
        recording_repeats=args.recording_repeats,
        recording_label_cap=args.recording_label_cap,
        recording_label_target=args.recording_label_target,
        augment=augment_config(replace(defaults.augment, crop_frames=args.crop_frames), args.augment),
        warmup_steps=args.warmup_steps,
        threads=args.threads,
        bf16=not args.no_bf16,
        weights_dtype=args.weights_dtype,
        max_steps=args.max_steps,
    )


def main(argv: list[str] | None = None) -> None:
    result = train_starter(parse_config(argv), log=lambda line: print(line, flush=True))
    print(json.dumps({"seconds": result.seconds, "best_epoch": result.best_epoch, "validation": result.validation}, indent=2))


if __name__ == "__main__":
    main()
