"""Train the starter model: contrastive audio-text learning on demo corpora rendered from several sample
sets, with ReCLAP caption augmentation, measured on a held-out sample set.

One run: render (or reuse) the training corpora and a held-out validation corpus, compute their
log-mels once, and train with three terms: symmetric InfoNCE with a learnable temperature (captions
name the sound and its scene; same-label pairs count as positives only within a scene), zero-shot
classification of each clip against every label, and scene terms (each clip against every scene, and
against its own label placed in every scene). Zero-shot metrics on the validation corpus are logged
after every epoch; the last epoch's weights (safetensors) and a metrics JSON are saved.
Seeded end to end: data order, caption choice, augmentation and initialisation all derive from
`TrainConfig.seed`, and torch runs deterministic kernels on a fixed number of threads.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from indexer.starter.augment import AugmentConfig, augment_batch, crop_only
from indexer.starter.checkpoint import load_starter, save_starter
from indexer.starter.config import StarterConfig
from indexer.starter.data import HELD_OUT_SAMPLE_SETS, CorpusSpec, LabelledClips, ensure_corpus, load_corpus
from indexer.starter.evaluate import evaluate_labelled_clips, scene_metrics
from indexer.starter.model import StarterModel, parameter_count
from indexer.starter.prompts import PROMPT_STYLES, label_prompts
from indexer.starter.tokenizer import FIRST_TOKEN_ID, PAD_ID, UNK_ID, CaptionTokenizer, training_vocabulary

DEFAULT_CACHE = Path(os.environ.get("RESOUND_CACHE", Path.home() / ".cache" / "resound")) / "starter-data"
# The metric that picks the saved epoch: zero-shot accuracy with descriptive prompts on held-out audio.
SELECTION_STYLE = "descriptive"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; the same config and seed give the same model."""

    out_path: Path
    metrics_path: Path | None = None
    cache_dir: Path = DEFAULT_CACHE
    seed: int = 0
    # Training data: `clips_per_set` clips of every class each set renders, set i rendered with seed + i.
    # Four independent sources of instrument sounds: three recorded sample sets and FM synthesis.
    # (MuseScore General derives from Fluid R3, so it adds little and is left out.)
    train_sample_sets: tuple[str, ...] = ("fluidr3", "timgm6mb", "csound", "opl3")
    clips_per_set: int = 2400
    train_classes: tuple[str, ...] | None = None
    # Held-out validation: this many clips of each class the held-out set plays with its own samples.
    validation_sample_set: str = "freepats"
    validation_clips_per_class: int = 10
    validation_seed: int = 1000
    validation_classes: tuple[str, ...] | None = None
    model: StarterConfig = StarterConfig()
    augment: AugmentConfig = crop_only()
    epochs: int = 17
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    plain_caption_prob: float = 0.4  # else one of the clip's descriptive (ReCLAP) captions
    unknown_token_prob: float = 0.05  # words replaced by the unknown token, so unseen words stay neutral
    label_positive_weight: float = 0.5  # share of each target spread over same-label pairs (see scenes)
    # Weight of a second loss that is zero-shot classification itself: each clip's audio against one
    # prompt of every training label (a random style and wording per step), cross-entropy on its label.
    # In-batch InfoNCE sees few labels per batch; this term contrasts every label every step.
    class_loss_weight: float = 1.0
    # Scenes: same-label pairs are positives only within a scene (or for a plain label caption), and a
    # third loss classifies each clip's scene against one phrase of every scene ("echoing through a vast
    # stone cathedral"), so the room, line or distance stays in the audio embedding beside the source.
    scene_aware_positives: bool = True
    scene_loss_weight: float = 0.5
    # Which room is this organ in: for the first `scene_pair_clips` clips of each batch (batches are
    # shuffled), the clip's audio against its own label described in every scene ("deep pipe organ
    # tones filling a vast stone cathedral", "... in a small room"), cross-entropy on its scene. This
    # is the ranking a query naming both a sound and a place asks for.
    scene_pair_clips: int = 8
    scene_pair_loss_weight: float = 0.5
    # Exponential moving average of the weights (0: off), evaluated and saved instead of the raw
    # weights: it smooths the noise of small, heavily augmented batches.
    ema_decay: float = 0.0
    # Which epoch's weights are saved: "last", or "best" by held-out accuracy. "best" selects on the
    # set the model is measured on, which flatters it; "last" keeps the held-out figures honest.
    select_epoch: str = "last"
    # Validate every this many epochs (and after the last): validation never changes the weights,
    # but costs several seconds an epoch on 2 cores.
    eval_every: int = 4
    threads: int = 2
    bf16: bool = True  # bfloat16 autocast for the forward pass (float32 weights and optimiser)
    weights_dtype: str = "float16"
    max_steps: int | None = None  # stop early (tests)


@dataclass
class TrainResult:
    """What a run produced and measured."""

    weights_path: Path
    metrics_path: Path | None
    best_epoch: int
    validation: dict[str, dict[str, float]]  # best epoch, re-measured from the saved weights
    history: list[dict[str, Any]]
    losses: list[float]  # every step's loss
    seconds: dict[str, float]
    parameters: dict[str, int]
    storage_min_cosine: float  # saved (e.g. float16) weights vs the float32 model, worst embedding


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Deterministic kernels on `threads` threads for the duration of a run, restored afterwards."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)


def contrastive_loss(
    audio: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    caption_ids: torch.Tensor,
    label_ids: torch.Tensor,
    label_positive_weight: float = 0.0,
    scene_ids: torch.Tensor | None = None,
    plain_captions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between unit audio and text vectors (audio->text and text->audio cross-entropy).

    A batch often holds the same caption twice (plain captions are bare labels), so every pair with an
    identical caption is a positive and the target spreads evenly over them; `label_positive_weight`
    moves that share of the target onto pairs of the same label. With `scene_ids` and `plain_captions`
    (bool per caption) a same-label pair counts only where the caption names no scene (a plain label)
    or both clips share the scene: "organ in a cathedral" is not a positive for an organ in a small
    room, which would teach the audio encoder to ignore the room.
    """
    logits = scale * audio.float() @ text.float().T
    same_caption = (caption_ids[:, None] == caption_ids[None, :]).float()
    audio_targets = same_caption / same_caption.sum(dim=1, keepdim=True)
    text_targets = audio_targets  # identical captions are a symmetric relation
    if label_positive_weight > 0:
        # related[a, t]: caption t also describes audio a.
        related = label_ids[:, None] == label_ids[None, :]
        if scene_ids is not None and plain_captions is not None:
            related = related & ((scene_ids[:, None] == scene_ids[None, :]) | plain_captions[None, :])
        related = related.float()
        w = label_positive_weight
        audio_targets = (1 - w) * audio_targets + w * related / related.sum(dim=1, keepdim=True)
        text_targets = (1 - w) * text_targets + w * related.T / related.T.sum(dim=1, keepdim=True)
    audio_to_text = -(audio_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_audio = -(text_targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (audio_to_text + text_to_audio) / 2


def update_average(averaged: StarterModel, model: StarterModel, decay: float) -> None:
    """averaged <- decay * averaged + (1 - decay) * model, for weights and BN statistics alike."""
    with torch.no_grad():
        for target, source in zip(averaged.state_dict().values(), model.state_dict().values()):
            if target.is_floating_point():
                target.mul_(decay).add_(source, alpha=1 - decay)
            else:
                target.copy_(source)


def class_prompts(labels: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One prompt per label for the class loss: bare, templated or descriptive, drawn at random."""
    prompts = []
    for label in labels:
        candidates = label_prompts(label, PROMPT_STYLES[int(rng.integers(len(PROMPT_STYLES)))])
        prompts.append(candidates[int(rng.integers(len(candidates)))])
    return prompts


def scene_prompts(scenes: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One phrase per scene for the scene loss, drawn at random from the scene's phrase table."""
    from indexer.demo import scene_phrases

    prompts = []
    for scene in scenes:
        phrases = scene_phrases(scene)
        prompts.append(phrases[int(rng.integers(len(phrases)))])
    return prompts


def label_in_scene_captions(labels: Sequence[str], scenes: Sequence[str], rng: np.random.Generator) -> list[str]:
    """For each label, one description of it placed in each of `scenes` (len(labels) * len(scenes) texts,
    label-major), the description and phrases drawn at random."""
    from indexer.demo import describe_label, scene_phrases

    texts = []
    for label in labels:
        descriptions = describe_label(label)
        description = descriptions[int(rng.integers(len(descriptions)))]
        for scene in scenes:
            phrases = scene_phrases(scene)
            texts.append(f"{description} {phrases[int(rng.integers(len(phrases)))]}")
    return texts


@dataclass
class TrainingBatch:
    """One step's clips: augmented log-mels, chosen captions' tokens, and ids of caption, label, scene."""

    mel: torch.Tensor
    tokens: torch.Tensor
    caption_ids: torch.Tensor
    label_ids: torch.Tensor  # index into the run's sorted labels
    scene_ids: torch.Tensor  # index into the run's sorted scenes
    plain_captions: torch.Tensor  # bool: the caption is the bare label (names no scene)
    labels: list[str]


def training_loss(
    model: StarterModel,
    tokenizer: CaptionTokenizer,
    batch: TrainingBatch,
    all_labels: Sequence[str],
    all_scenes: Sequence[str],
    config: TrainConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The step's loss: InfoNCE + class loss + scene loss + label-in-scene loss, weighted by `config`.

    Forward passes run under bf16 autocast (when `config.bf16`); the losses are computed in float32.
    The prompts of the class and scene terms are drawn from `rng` in that order.
    """
    pairs = min(config.scene_pair_clips, len(batch.labels)) if config.scene_pair_loss_weight > 0 else 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        audio = model.embed_mel(batch.mel)
        text = model.embed_tokens(batch.tokens)
        if config.class_loss_weight > 0:
            label_text = model.embed_tokens(tokenizer(class_prompts(all_labels, rng)))
        if config.scene_loss_weight > 0:
            scene_text = model.embed_tokens(tokenizer(scene_prompts(all_scenes, rng)))
        if pairs > 0:
            pair_text = model.embed_tokens(
                tokenizer(label_in_scene_captions(batch.labels[:pairs], all_scenes, rng))
            ).reshape(pairs, len(all_scenes), -1)
    scale = model.temperature_scale()
    scene_aware = config.scene_aware_positives
    loss = contrastive_loss(
        audio,
        text,
        scale,
        batch.caption_ids,
        batch.label_ids,
        config.label_positive_weight,
        batch.scene_ids if scene_aware else None,
        batch.plain_captions if scene_aware else None,
    )
    if config.class_loss_weight > 0:
        class_logits = scale * audio.float() @ label_text.float().T
        loss = loss + config.class_loss_weight * F.cross_entropy(class_logits, batch.label_ids)
    if config.scene_loss_weight > 0:
        scene_logits = scale * audio.float() @ scene_text.float().T
        loss = loss + config.scene_loss_weight * F.cross_entropy(scene_logits, batch.scene_ids)
    if pairs > 0:
        pair_logits = scale * torch.einsum("pd,psd->ps", audio[:pairs].float(), pair_text.float())
        loss = loss + config.scene_pair_loss_weight * F.cross_entropy(pair_logits, batch.scene_ids[:pairs])
    return loss


def learning_rate_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def held_out_classes(sample_set: str) -> tuple[str, ...]:
    """Classes `sample_set` plays with its own samples (instruments and drums, not the shared sources)."""
    from indexer.demo import SOUND_CLASSES, classes_available

    return tuple(
        label for label in classes_available(sample_set) if SOUND_CLASSES[label].kind in ("instrument", "drums")
    )


def choose_captions(clips: LabelledClips, indices: np.ndarray, rng: np.random.Generator, plain_prob: float) -> list[str]:
    """ReCLAP augmentation: each clip's plain caption with probability `plain_prob`, else a random rewrite."""
    chosen = []
    for i in indices:
        captions = clips.captions[i]
        if len(captions) == 1 or rng.random() < plain_prob:
            chosen.append(captions[0])
        else:
            chosen.append(captions[int(rng.integers(1, len(captions)))])
    return chosen


def mask_unknown(tokens: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Replace each word token (not the start/end markers, not padding) by UNK_ID with `probability`."""
    if probability <= 0:
        return tokens
    lengths = (tokens != PAD_ID).sum(dim=1, keepdim=True)
    positions = torch.arange(tokens.shape[1]).unsqueeze(0)
    words = (positions >= 1) & (positions < lengths - 1) & (tokens >= FIRST_TOKEN_ID)
    drop = words & (torch.rand(tokens.shape, generator=generator) < probability)
    return torch.where(drop, torch.full_like(tokens, UNK_ID), tokens)


def embed_clips(model: StarterModel, features: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Unit audio vectors of full-window log-mels, in eval mode and float32 (as the encoder runs)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            out.append(model.embed_mel(features[start : start + batch_size].float()).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.embed_dim), dtype=np.float32)


def text_embedder(model: StarterModel, tokenizer: CaptionTokenizer) -> Callable[[Sequence[str]], np.ndarray]:
    """A function texts -> unit vectors with `model` in eval mode."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return np.concatenate(
                [model.embed_tokens(tokenizer(list(texts[s : s + 256]))).numpy() for s in range(0, len(texts), 256)]
            )

    return embed


def memoized(embed: Callable[[Sequence[str]], np.ndarray]) -> Callable[[Sequence[str]], np.ndarray]:
    """`embed` that embeds each distinct text once and reuses its vector."""
    vectors: dict[str, np.ndarray] = {}

    def embed_once(texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in vectors]
        if missing:
            vectors.update(zip(missing, embed(missing)))
        return np.stack([vectors[t] for t in texts])

    return embed_once


def evaluate_model(
    model: StarterModel, tokenizer: CaptionTokenizer, clips: LabelledClips, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Zero-shot metrics of `model` on `clips` for every prompt style."""
    audio = embed_clips(model, clips.features)
    embed_text = memoized(text_embedder(model, tokenizer))  # the label+scene prompts are the descriptive ones
    metrics = evaluate_labelled_clips(audio, clips.labels, labels, embed_text)
    metrics["scenes"] = scene_metrics(audio, clips.labels, clips.scenes, embed_text)
    return metrics


def prepare_data(config: TrainConfig, log: Callable[[str], None]) -> tuple[LabelledClips, LabelledClips, tuple[str, ...], float, float]:
    """(training clips, validation clips, validation labels, render seconds, feature seconds)."""
    held_out = [s for s in config.train_sample_sets if s in HELD_OUT_SAMPLE_SETS or s == config.validation_sample_set]
    if held_out:
        raise ValueError(f"sample set(s) {held_out} are held out for evaluation and must not be trained on")
    validation_labels = config.validation_classes or held_out_classes(config.validation_sample_set)
    specs = [
        CorpusSpec(name, config.clips_per_set, config.seed + i, config.train_classes)
        for i, name in enumerate(config.train_sample_sets)
    ]
    validation_spec = CorpusSpec(
        config.validation_sample_set,
        config.validation_clips_per_class * len(validation_labels),
        config.validation_seed,
        tuple(validation_labels),
    )
    started = time.perf_counter()
    directories = [ensure_corpus(config.cache_dir, spec, log) for spec in [*specs, validation_spec]]
    rendered = time.perf_counter()
    parts = [load_corpus(directory, config.model) for directory in directories]
    featurised = time.perf_counter()
    log(f"data ready: render {rendered - started:.0f} s, log-mels {featurised - rendered:.0f} s")
    return (
        LabelledClips.concatenate(parts[:-1]),
        parts[-1],
        tuple(validation_labels),
        rendered - started,
        featurised - rendered,
    )


def _optimizer(model: StarterModel, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases, norms, the temperature and embeddings' 1-d parameters.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def _storage_min_cosine(model: StarterModel, saved: StarterModel, clips: LabelledClips, texts: Sequence[str], tokenizer: CaptionTokenizer) -> float:
    """Smallest cosine between the float32 model's and the saved weights' embeddings of the same inputs."""
    a = embed_clips(model, clips.features)
    b = embed_clips(saved, clips.features)
    ta = text_embedder(model, tokenizer)(texts)
    tb = text_embedder(saved, tokenizer)(texts)
    return float(min((a * b).sum(axis=1).min(), (ta * tb).sum(axis=1).min()))


def train_starter(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train, save the last (or the held-out-best) epoch's weights and metrics; see the module docstring."""
    total_started = time.perf_counter()
    with deterministic_torch(config.threads):
        train, validation, validation_labels, render_s, feature_s = prepare_data(config, log)
        all_labels = sorted(set(train.labels) | set(validation_labels))
        # The vocabulary: every word of the training captions and of the label prompts.
        vocabulary_texts = {c for captions in train.captions for c in captions}
        for label in all_labels:
            for style in PROMPT_STYLES:
                vocabulary_texts.update(label_prompts(label, style))
        kept = training_vocabulary(sorted(vocabulary_texts))
        model_config = replace(config.model, vocab_size=FIRST_TOKEN_ID + len(kept))
        tokenizer = CaptionTokenizer(kept, model_config.text_context)

        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = StarterModel(model_config)
        optimizer = _optimizer(model, config)
        averaged = copy.deepcopy(model) if config.ema_decay > 0 else model
        caption_index = {c: i for i, c in enumerate(sorted(vocabulary_texts))}
        label_index = {label: i for i, label in enumerate(all_labels)}
        all_scenes = sorted(set(train.scenes))
        scene_index = {scene: i for i, scene in enumerate(all_scenes)}

        steps_per_epoch = len(train) // config.batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"{len(train)} training clips do not fill one batch of {config.batch_size}")
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        log(
            f"training on {len(train)} clips ({', '.join(config.train_sample_sets)}), "
            f"{len(validation)} held-out {config.validation_sample_set} clips of {len(validation_labels)} classes; "
            f"{parameter_count(model):,} parameters, vocabulary {len(kept)} tokens, {total_steps} steps"
        )
        history: list[dict[str, Any]] = []
        losses: list[float] = []
        best_epoch, best_score, best_state = -1, -1.0, None
        train_started = time.perf_counter()
        step = 0
        for epoch in range(config.epochs):
            if step >= total_steps:
                break
            epoch_started = time.perf_counter()
            order = rng.permutation(len(train))
            model.train()
            epoch_losses = []
            for batch_start in range(0, steps_per_epoch * config.batch_size, config.batch_size):
                if step >= total_steps:
                    break
                indices = order[batch_start : batch_start + config.batch_size]
                captions = choose_captions(train, indices, rng, config.plain_caption_prob)
                tokens = mask_unknown(tokenizer(captions), config.unknown_token_prob, generator)
                mel = augment_batch(train.features[torch.from_numpy(indices)], config.augment, generator)
                batch = TrainingBatch(
                    mel=mel,
                    tokens=tokens,
                    caption_ids=torch.tensor([caption_index[c] for c in captions]),
                    label_ids=torch.tensor([label_index[train.labels[i]] for i in indices]),
                    scene_ids=torch.tensor([scene_index[train.scenes[i]] for i in indices]),
                    plain_captions=torch.tensor([c == train.captions[i][0] for c, i in zip(captions, indices)]),
                    labels=[train.labels[i] for i in indices],
                )
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(step, total_steps, config)
                loss = training_loss(model, tokenizer, batch, all_labels, all_scenes, config, rng)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                if averaged is not model:
                    update_average(averaged, model, config.ema_decay)
                losses.append(float(loss.item()))
                epoch_losses.append(losses[-1])
                step += 1
            if (epoch + 1) % config.eval_every and epoch + 1 < config.epochs and step < total_steps:
                history.append({"epoch": epoch + 1, "steps": step, "loss": float(np.mean(epoch_losses)),
                                "seconds": round(time.perf_counter() - epoch_started, 1)})
                log(f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]['loss']:.3f} ({history[-1]['seconds']:.0f} s)")
                continue
            metrics = evaluate_model(averaged, tokenizer, validation, validation_labels)
            score = metrics[SELECTION_STYLE]["accuracy"]
            history.append(
                {
                    "epoch": epoch + 1,
                    "steps": step,
                    "loss": float(np.mean(epoch_losses)),
                    "temperature_scale": float(averaged.temperature_scale().item()),
                    "seconds": round(time.perf_counter() - epoch_started, 1),
                    "validation": metrics,
                }
            )
            log(
                f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]['loss']:.3f}, "
                + ", ".join(f"{s} {metrics[s]['accuracy']:.1f}%" for s in PROMPT_STYLES)
                + f"; scene {metrics['scenes']['scene accuracy']:.1f}%"
                + f", label+scene R@1 {metrics['scenes']['label+scene R@1']:.1f}%"
                + f" ({history[-1]['seconds']:.0f} s)"
            )
            if config.select_epoch == "last" or score > best_score:
                best_epoch, best_score, best_state = epoch + 1, score, copy.deepcopy(averaged.state_dict())
        train_s = time.perf_counter() - train_started

        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        dtype = getattr(torch, config.weights_dtype)
        save_starter(
            model,
            tokenizer,
            config.out_path,
            dtype=dtype,
            metadata={
                "training": {
                    "seed": config.seed,
                    "train_sample_sets": list(config.train_sample_sets),
                    "clips_per_set": config.clips_per_set,
                    "epochs": config.epochs,
                    "best_epoch": best_epoch,
                    "validation_sample_set": config.validation_sample_set,
                }
            },
        )
        saved, _, _ = load_starter(config.out_path)
        validation_metrics = evaluate_model(saved, tokenizer, validation, validation_labels)
        probe_texts = [p for label in validation_labels for p in label_prompts(label, "descriptive")[:3]]
        min_cosine = _storage_min_cosine(model, saved, validation, probe_texts, tokenizer)

    seconds = {
        "render": round(render_s, 1),
        "features": round(feature_s, 1),
        "train": round(train_s, 1),
        "total": round(time.perf_counter() - total_started, 1),
    }
    parameters = {
        "audio": parameter_count(model.audio),
        "text": parameter_count(model.text),
        "total": parameter_count(model),
    }
    result = TrainResult(
        weights_path=Path(config.out_path),
        metrics_path=Path(config.metrics_path) if config.metrics_path else None,
        best_epoch=best_epoch,
        validation=validation_metrics,
        history=history,
        losses=losses,
        seconds=seconds,
        parameters=parameters,
        storage_min_cosine=min_cosine,
    )
    if config.metrics_path is not None:
        _write_metrics(config, result, len(train), len(validation), validation_labels)
    log(
        f"best epoch {best_epoch}: held-out accuracy "
        + ", ".join(f"{s} {validation_metrics[s]['accuracy']:.1f}%" for s in PROMPT_STYLES)
        + f"; {seconds['total']:.0f} s in all; weights -> {config.out_path}"
    )
    return result


def _write_metrics(
    config: TrainConfig, result: TrainResult, n_train: int, n_validation: int, validation_labels: Sequence[str]
) -> None:
    report = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "data": {
            "train_clips": n_train,
            "validation_clips": n_validation,
            "validation_labels": list(validation_labels),
        },
        "best_epoch": result.best_epoch,
        "validation": result.validation,
        "seconds": result.seconds,
        "parameters": result.parameters,
        "storage_min_cosine": result.storage_min_cosine,
        "torch": torch.__version__,
        "history": result.history,
    }
    path = Path(config.metrics_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, path)
