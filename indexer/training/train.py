"""Train the starter model: contrastive audio-text learning on demo corpora rendered from several sample
sets and on real recordings, with ReCLAP caption augmentation, measured on a held-out sample set.

The text side is a frozen pretrained sentence encoder (all-MiniLM-L6-v2, minilm.py) and a learned
projection: every distinct text the trainer can use (`training_texts`) is embedded by MiniLM once and
cached on disk, so a step costs the projection only. Words no caption uses then still land near their
meaning, which is what the projection inherits.

One run: render (or reuse) the training corpora and a held-out validation corpus, cut windows of the real
recordings, compute their log-mels once, and train with three terms: symmetric InfoNCE with a learnable temperature (captions
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

from indexer.starter.checkpoint import load_starter, save_starter
from indexer.starter.config import StarterConfig
from indexer.starter.lexicon import caption_vocabulary
from indexer.starter.model import StarterModel, parameter_count
from indexer.starter.prompts import PROMPT_STYLES, label_embeddings, label_prompts
from indexer.training.augment import AugmentConfig, augment_batch, crop_only
from indexer.training.data import (
    HELD_OUT_SAMPLE_SETS,
    RECORDED_SCENE,
    CorpusSpec,
    LabelledClips,
    ensure_corpus,
    load_corpus,
    load_recordings,
)
from indexer.training.evaluate import evaluate_labelled_clips, scene_metrics, zero_shot_accuracy

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
    # Seed of the initialisation, batch order, captions and anchors alone (None: `seed`); the renders keep
    # `seed`, so runs that differ only here reuse the cached corpora and embeddings (a lever's spread).
    order_seed: int | None = None
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
    model: StarterConfig = StarterConfig()  # noqa: RUF009 (frozen: one shared instance is safe)
    augment: AugmentConfig = crop_only()  # noqa: RUF009 (frozen)
    epochs: int = 17
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    plain_caption_prob: float = 0.4  # else one of the clip's descriptive (ReCLAP) captions
    # Real recordings (indexer/training/recordings.py: training_recordings): up to this many 4 s windows
    # of each file, each window shown `recording_repeats` times an epoch. `recording_validation_share` of
    # the files (by a hash of their path) are kept out of training to measure real-sound accuracy.
    use_recordings: bool = True
    recording_windows: int = 3
    recording_repeats: int = 1
    # Labels of real recordings are very uneven (hundreds of speech files, two of a rooster): each
    # label's windows are capped at `recording_label_cap` (evenly spread) and repeated up to
    # `recording_label_max_repeat` times towards `recording_label_target` windows an epoch.
    recording_label_cap: int = 120
    recording_label_target: int = 24
    recording_label_max_repeat: int = 6
    recording_validation_share: float = 0.1
    # Keep the projection faithful to the pretrained text space: mean squared difference between the
    # step's texts' cosines after projection and in MiniLM, so that paraphrases no caption uses stay
    # near the captions they paraphrase.
    text_geometry_weight: float = 0.5
    # Keep a frozen tower's own audio neighbourhoods (an "aisfx" head only; 0: off): KL divergence between
    # each clip's softmax over the batch's other clips by the tower's cosines and by the head's
    # (`audio_neighbourhood_loss`). A head trained for text matching alone gives up the tower's
    # audio-to-audio neighbours (docs/starter-model.md, lever table). aiSFX's ReLU embeddings are close
    # together (in-batch cosines 0.71-0.94, a row's spread 0.045 against ~0.25 for a trained head), so the
    # teacher's softmax is sharper than the head's: the head keeps who is near whom, not how near.
    audio_neighbourhood_weight: float = 0.0
    audio_neighbourhood_temperature: float = 0.1  # the head's
    audio_neighbourhood_teacher_temperature: float = 0.02  # the tower's
    text_model_dir: Path | None = None  # None: minilm.find_minilm's search
    # Text anchors kept with the weights (model.TextAnchors): this many training texts, drawn at random
    # (seeded) from `training_texts`, their sentence vectors stored; 0: none. A random draw spreads the
    # anchors as the texts spread (labels, captions, prompts in scenes); k-means centroids measured no better.
    text_anchors: int = 4096
    # Start the audio tower (and the temperature) from an earlier starter checkpoint instead of random
    # weights: any format, only its `audio.*` tensors and `logit_scale` are read, and they must fit.
    init_audio_from: Path | None = None
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


def recipe(audio_tower: str) -> dict[str, object]:
    """TrainConfig overrides of the recipe behind the shipped weights of each audio tower: "cnn" is
    TrainConfig's defaults (weights/starter.safetensors); "aisfx" a head on the frozen aiSFX tower with the
    audio-neighbourhood term at weight 1 (weights/starter_aisfx.safetensors, the default model: the lever
    table in docs/starter-model.md); "aisfx+starter" the lever that reads the CNN's vector beside aiSFX's."""
    from indexer.starter.config import AISFX_CONFIG, AISFX_STARTER_CONFIG

    recipes: dict[str, dict[str, object]] = {
        "cnn": {},
        "aisfx": {"model": AISFX_CONFIG, "audio_neighbourhood_weight": 1.0},
        "aisfx+starter": {"model": AISFX_STARTER_CONFIG},
    }
    if audio_tower not in recipes:
        raise ValueError(f"unknown audio tower {audio_tower!r}: one of {', '.join(recipes)}")
    return recipes[audio_tower]


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


class SentenceTable:
    """The frozen text model's vectors of a fixed set of texts, looked up by text (float32, unit norm).

    Built once per run from `training_texts`; cached on disk per text model hash, so a second run embeds
    only texts it has not seen. A lookup of a text outside the table raises KeyError: every text the
    trainer feeds the model is one `training_texts` lists.
    """

    def __init__(self, texts: Sequence[str], vectors: torch.Tensor):
        self.index = {text: i for i, text in enumerate(texts)}
        self.vectors = vectors

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.vectors[torch.tensor([self.index[t] for t in texts], dtype=torch.long)]

    @classmethod
    def build(cls, texts: Sequence[str], encoder, cache_dir: Path, log: Callable[[str], None]) -> SentenceTable:
        """Embed `texts` with `encoder` (a MiniLMTextEncoder), reusing vectors cached in `cache_dir`."""
        cache = Path(cache_dir) / f"sentences-{encoder.sha256[:12]}.npz"
        known: dict[str, np.ndarray] = {}
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as stored:
                known = dict(zip(stored["texts"].tolist(), stored["vectors"]))
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            started = time.perf_counter()
            known.update(zip(missing, encoder.embed(missing).numpy()))
            log(f"embedded {len(missing)} new texts with {encoder.model_id} in {time.perf_counter() - started:.0f} s")
            cache.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
            ordered = sorted(known)
            np.savez(temporary, texts=np.array(ordered), vectors=np.stack([known[t] for t in ordered]))
            temporary.replace(cache)
        ordered = list(dict.fromkeys(texts))
        return cls(ordered, torch.from_numpy(np.stack([known[t] for t in ordered]).astype(np.float32)))


@dataclass
class TrainingBatch:
    """One step's clips: augmented log-mels, chosen captions, and ids of caption, label, scene."""

    mel: torch.Tensor
    captions: list[str]
    caption_ids: torch.Tensor
    label_ids: torch.Tensor  # index into the run's sorted labels
    scene_ids: torch.Tensor  # index into the run's sorted scenes; -1: a real recording (no demo scene)
    plain_captions: torch.Tensor  # bool: the caption names no scene (a bare label, or a recording's caption)
    labels: list[str]


def text_geometry_loss(projected: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of pairwise cosines (off the diagonal) between the projected unit vectors
    and the frozen encoder's."""
    projected, sentences = projected.float(), sentences.float()
    difference = projected @ projected.T - sentences @ sentences.T
    n = len(projected)
    return (difference.square().sum() - difference.diagonal().square().sum()) / max(1, n * (n - 1))


def audio_neighbourhood_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, teacher_temperature: float | None = None
) -> torch.Tensor:
    """KL(teacher || student) of each clip's distribution over the batch's other clips, mean over clips.

    Each row's distribution is the softmax of its cosines to the other rows (the diagonal left out)
    divided by a temperature: `temperature` for the student's vectors (the head's outputs),
    `teacher_temperature` (default: the same) for the teacher's (a frozen tower's embeddings); the widths
    may differ. At equal temperatures it is zero when the student's cosines equal the teacher's, or
    when one row's cosines differ from the teacher's by a constant.
    """
    n = len(student)
    if n < 2:
        return student.new_zeros((), dtype=torch.float32)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=student.device)

    def log_neighbours(x: torch.Tensor, t: float) -> torch.Tensor:
        unit = F.normalize(x.float(), dim=-1)
        return F.log_softmax((unit @ unit.T)[off_diagonal].view(n, n - 1) / t, dim=1)

    teacher_log = log_neighbours(teacher, temperature if teacher_temperature is None else teacher_temperature)
    return F.kl_div(log_neighbours(student, temperature), teacher_log, log_target=True, reduction="batchmean")


def training_loss(
    model: StarterModel,
    sentences: SentenceTable,
    batch: TrainingBatch,
    all_labels: Sequence[str],
    all_scenes: Sequence[str],
    config: TrainConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The step's loss: InfoNCE + class loss + scene loss + label-in-scene loss + text geometry (+ the frozen
    tower's audio neighbourhoods), weighted by `config`. Real recordings (scene -1) take no part in the
    scene terms.

    Forward passes run under bf16 autocast (when `config.bf16`); the losses are computed in float32.
    The prompts of the class and scene terms are drawn from `rng` in that order.
    """
    scened = torch.nonzero(batch.scene_ids >= 0).flatten()
    pairs = min(config.scene_pair_clips, len(scened)) if config.scene_pair_loss_weight > 0 else 0
    texts = list(batch.captions)
    if config.class_loss_weight > 0:
        texts += class_prompts(all_labels, rng)
    if config.scene_loss_weight > 0 and len(scened):
        texts += scene_prompts(all_scenes, rng)
    if pairs > 0:
        texts += label_in_scene_captions([batch.labels[i] for i in scened[:pairs].tolist()], all_scenes, rng)
    text_inputs = sentences(texts)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        audio = model.embed_mel(batch.mel)
        text_all = model.embed_sentences(text_inputs)
    n_captions = len(batch.captions)
    text, rest = text_all[:n_captions], text_all[n_captions:]
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
        label_text, rest = rest[: len(all_labels)], rest[len(all_labels) :]
        class_logits = scale * audio.float() @ label_text.float().T
        loss = loss + config.class_loss_weight * F.cross_entropy(class_logits, batch.label_ids)
    if config.scene_loss_weight > 0 and len(scened):
        scene_text, rest = rest[: len(all_scenes)], rest[len(all_scenes) :]
        scene_logits = scale * audio[scened].float() @ scene_text.float().T
        loss = loss + config.scene_loss_weight * F.cross_entropy(scene_logits, batch.scene_ids[scened])
    if pairs > 0:
        pair_text = rest[: pairs * len(all_scenes)].reshape(pairs, len(all_scenes), -1)
        chosen = scened[:pairs]
        pair_logits = scale * torch.einsum("pd,psd->ps", audio[chosen].float(), pair_text.float())
        loss = loss + config.scene_pair_loss_weight * F.cross_entropy(pair_logits, batch.scene_ids[chosen])
    if config.text_geometry_weight > 0:
        loss = loss + config.text_geometry_weight * text_geometry_loss(text_all, text_inputs)
    if config.audio_neighbourhood_weight > 0:
        if model.config.audio_tower == "cnn":
            raise ValueError("the audio neighbourhood term needs a frozen tower's embeddings (an \"aisfx\" head)")
        from indexer.starter.aisfx import EMBED_DIM

        # aiSFX's pooled embedding comes first in the head's input ("aisfx+starter" appends the companion's).
        teacher = batch.mel[:, :EMBED_DIM]
        loss = loss + config.audio_neighbourhood_weight * audio_neighbourhood_loss(
            audio, teacher, config.audio_neighbourhood_temperature, config.audio_neighbourhood_teacher_temperature
        )
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


def training_batch(clips: LabelledClips, indices: np.ndarray, captions: list[str], mel: torch.Tensor,
                   caption_index: dict[str, int], label_index: dict[str, int],
                   scene_index: dict[str, int]) -> TrainingBatch:
    """The batch of `clips[indices]` with their chosen `captions` and audio input `mel` (the trainer's and
    the levers' benches'): a caption is plain when it is the clip's first or the clip is a recording."""
    return TrainingBatch(
        mel=mel,
        captions=captions,
        caption_ids=torch.tensor([caption_index[c] for c in captions]),
        label_ids=torch.tensor([label_index[clips.labels[i]] for i in indices]),
        scene_ids=torch.tensor([scene_index[clips.scenes[i]] for i in indices]),
        plain_captions=torch.tensor(
            [c == clips.captions[i][0] or clips.scenes[i] == RECORDED_SCENE for c, i in zip(captions, indices)]
        ),
        labels=[clips.labels[i] for i in indices],
    )


def embed_clips(model: StarterModel, features: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Unit audio vectors of full-window log-mels, in eval mode and float32 (as the encoder runs)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            out.append(model.embed_mel(features[start : start + batch_size].float()).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.embed_dim), dtype=np.float32)


def text_embedder(model: StarterModel, sentences: Callable[[Sequence[str]], torch.Tensor]) -> Callable[[Sequence[str]], np.ndarray]:
    """A function texts -> unit vectors with `model` in eval mode; `sentences` gives the frozen encoder's vectors."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return model.embed_sentences(sentences(list(texts))).numpy()

    return embed


def evaluate_model(
    model: StarterModel, sentences: Callable[[Sequence[str]], torch.Tensor], clips: LabelledClips, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Zero-shot metrics of `model` on `clips` for every prompt style (and scenes, for demo clips)."""
    audio = embed_clips(model, clips.features)
    embed_text = text_embedder(model, sentences)
    metrics = evaluate_labelled_clips(audio, clips.labels, labels, embed_text)
    if RECORDED_SCENE not in clips.scenes:
        metrics["scenes"] = scene_metrics(audio, clips.labels, clips.scenes, embed_text)
    return metrics


@dataclass
class TrainingData:
    """Everything a run reads: clips, the held-out validation, the recordings kept aside, and timings."""

    train: LabelledClips
    validation: LabelledClips
    validation_labels: tuple[str, ...]
    recordings_validation: LabelledClips | None
    recording_labels: tuple[str, ...]
    seconds: dict[str, float]


def _recordings_split(config: TrainConfig) -> tuple[list, list]:
    """(training, validation) recordings from recordings.training_recordings, split by a hash of the path."""
    import hashlib
    import importlib.util

    if not config.use_recordings or importlib.util.find_spec("indexer.training.recordings") is None:
        return [], []
    from indexer.training.recordings import training_recordings

    train, validation = [], []
    for clip in training_recordings():
        bucket = int(hashlib.sha256(str(clip.path).encode()).hexdigest()[:8], 16) / 2**32
        (validation if bucket < config.recording_validation_share else train).append(clip)
    return train, validation


def balanced_selection(labels: Sequence[str], config: TrainConfig) -> list[int]:
    """Indices of `labels` (with repeats) balanced as TrainConfig's recording_label_* fields say."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    chosen = []
    for label in sorted(by_label):
        members = by_label[label]
        if len(members) > config.recording_label_cap:
            spread = np.linspace(0, len(members) - 1, config.recording_label_cap).round().astype(int)
            members = [members[j] for j in spread]
        repeats = min(config.recording_label_max_repeat, max(1, math.ceil(config.recording_label_target / len(members))))
        chosen.extend(members * repeats)
    return chosen


def _demo_specs(config: TrainConfig) -> tuple[list[CorpusSpec], CorpusSpec, tuple[str, ...]]:
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
    return specs, validation_spec, tuple(validation_labels)


def prepare_data(config: TrainConfig, log: Callable[[str], None]) -> TrainingData:
    """Render (or reuse) the corpora, cut the recordings, and compute every clip's log-mels."""
    specs, validation_spec, validation_labels = _demo_specs(config)
    started = time.perf_counter()
    directories = [ensure_corpus(config.cache_dir, spec, log) for spec in [*specs, validation_spec]]
    rendered = time.perf_counter()
    parts = [load_corpus(directory, config.model) for directory in directories]
    featurised = time.perf_counter()
    train_recordings, validation_recordings = _recordings_split(config)
    recordings = recordings_validation = None
    if train_recordings:
        from indexer.training.recordings import recording_captions

        recordings = load_recordings(
            train_recordings, recording_captions, config.model, config.cache_dir, config.recording_windows, log
        )
        recordings_validation = load_recordings(
            validation_recordings, recording_captions, config.model, config.cache_dir, config.recording_windows, log
        )
    recorded = time.perf_counter()
    log(
        f"data ready: render {rendered - started:.0f} s, log-mels {featurised - rendered:.0f} s, "
        f"recordings {recorded - featurised:.0f} s"
    )
    if recordings is not None:
        recordings = recordings.select(balanced_selection(recordings.labels, config))
    training_parts = parts[:-1] + ([recordings] * config.recording_repeats if recordings is not None else [])
    return TrainingData(
        train=LabelledClips.concatenate(training_parts),
        validation=parts[-1],
        validation_labels=validation_labels,
        recordings_validation=recordings_validation,
        recording_labels=tuple(sorted(set(recordings.labels))) if recordings is not None else (),
        seconds={"render": rendered - started, "features": featurised - rendered, "recordings": recorded - featurised},
    )


def _label_texts(labels: Sequence[str]) -> list[str]:
    return [p for label in labels for style in PROMPT_STYLES for p in label_prompts(label, style)]


def training_texts(config: TrainConfig) -> list[str]:
    """Every text the trainer can give the text tower with `config`, sorted: the training clips' captions
    (from indexer.demo's phrase tables; the corpora are rendered if the cache lacks them), every prompt of
    every label (prompts.py: bare, templated, descriptive), every scene phrase and label-in-scene caption
    (a subset of the descriptive prompts), and the captions of the real recordings' labels (recordings.py).
    Validation prompts are among them: the held-out labels' prompts are the training labels' prompts."""
    from indexer.demo import SCENES, read_demo_corpus, scene_phrases

    specs, _, validation_labels = _demo_specs(config)
    texts: set[str] = set()
    labels = set(validation_labels)
    for spec in specs:
        for clip in read_demo_corpus(ensure_corpus(config.cache_dir, spec, lambda line: None)):
            texts.update((clip.caption, *clip.captions))
            labels.add(clip.label)
    train_recordings, validation_recordings = _recordings_split(config)
    if train_recordings:
        from indexer.training.recordings import recording_captions

        for label in {c.label for c in [*train_recordings, *validation_recordings]}:
            labels.add(label)
            texts.update((label, *recording_captions(label)))
    texts.update(_label_texts(sorted(labels)))
    for scene in SCENES:
        texts.update(scene_phrases(scene))
    return sorted(texts)


def choose_text_anchors(sentences: SentenceTable, count: int, seed: int) -> torch.Tensor:
    """Sentence vectors of `count` texts of `sentences` drawn without replacement (all when fewer), in
    table order; the same table and seed give the same anchors."""
    n = len(sentences.vectors)
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
    return sentences.vectors[torch.from_numpy(chosen)].clone()


def load_audio_tower(model: StarterModel, path: Path) -> None:
    """Copy the `audio.*` tensors and `logit_scale` of a starter checkpoint at `path` into `model`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys() if key.startswith("audio.") or key == "logit_scale"}  # noqa: SIM118
    state = model.state_dict()
    wanted = {key for key in state if key.startswith("audio.")}
    if not wanted <= set(tensors) or any(tensors[k].shape != state[k].shape for k in wanted):
        raise ValueError(f"{path}: its audio tower does not fit this model's config")
    with torch.no_grad():
        for key, value in tensors.items():
            state[key].copy_(value.to(state[key].dtype))


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


def _storage_min_cosine(model: StarterModel, saved: StarterModel, clips: LabelledClips, texts: Sequence[str], sentences: SentenceTable) -> float:
    """Smallest cosine between the float32 model's and the saved weights' embeddings of the same inputs."""
    a = embed_clips(model, clips.features)
    b = embed_clips(saved, clips.features)
    ta = text_embedder(model, sentences)(texts)
    tb = text_embedder(saved, sentences)(texts)
    return float(min((a * b).sum(axis=1).min(), (ta * tb).sum(axis=1).min()))


def recordings_accuracy(
    model: StarterModel, sentences: Callable[[Sequence[str]], torch.Tensor], clips: LabelledClips, labels: Sequence[str]
) -> float:
    """Zero-shot accuracy (percent) of the kept-aside recordings' windows over `labels`, descriptive prompts."""
    audio = embed_clips(model, clips.features)
    vectors = label_embeddings(labels, "descriptive", text_embedder(model, sentences))
    return zero_shot_accuracy(audio, clips.labels, vectors, labels)


def _log_metrics(metrics: dict[str, Any]) -> str:
    line = ", ".join(f"{s} {metrics[s]['accuracy']:.1f}%" for s in PROMPT_STYLES)
    if "scenes" in metrics:
        line += f"; scene {metrics['scenes']['scene accuracy']:.1f}%, label+scene R@1 {metrics['scenes']['label+scene R@1']:.1f}%"
    if "recordings accuracy" in metrics:
        line += f"; kept-aside recordings {metrics['recordings accuracy']:.1f}%"
    return line


def train_starter(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Train, save the last (or the held-out-best) epoch's weights and metrics; see the module docstring."""
    from indexer.starter.minilm import MiniLMTextEncoder

    total_started = time.perf_counter()
    with deterministic_torch(config.threads):
        data = prepare_data(config, log)
        train, validation, validation_labels = data.train, data.validation, data.validation_labels
        all_labels = sorted(set(train.labels) | set(validation_labels))
        text_started = time.perf_counter()
        text_encoder = MiniLMTextEncoder(config.text_model_dir)
        sentences = SentenceTable.build(training_texts(config), text_encoder, config.cache_dir, log)
        text_s = time.perf_counter() - text_started
        text_model = {"id": text_encoder.model_id, "sha256": text_encoder.sha256}
        model_config = replace(config.model, text_model=text_encoder.model_id, text_input_dim=text_encoder.dim)

        order_seed = config.seed if config.order_seed is None else config.order_seed
        torch.manual_seed(order_seed)
        rng = np.random.default_rng(order_seed)
        generator = torch.Generator().manual_seed(order_seed)
        model = StarterModel(model_config)
        if config.init_audio_from is not None:
            load_audio_tower(model, config.init_audio_from)
            log(f"audio tower and temperature initialised from {config.init_audio_from}")
        optimizer = _optimizer(model, config)
        averaged = copy.deepcopy(model) if config.ema_decay > 0 else model
        caption_index = sentences.index
        label_index = {label: i for i, label in enumerate(all_labels)}
        all_scenes = sorted(set(train.scenes) - {RECORDED_SCENE})
        scene_index = {scene: i for i, scene in enumerate(all_scenes)}
        scene_index[RECORDED_SCENE] = -1

        def validate(net: StarterModel) -> dict[str, Any]:
            metrics = evaluate_model(net, sentences, validation, validation_labels)
            if data.recordings_validation is not None and len(data.recordings_validation):
                metrics["recordings accuracy"] = recordings_accuracy(
                    net, sentences, data.recordings_validation, data.recording_labels
                )
            return metrics

        steps_per_epoch = len(train) // config.batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"{len(train)} training clips do not fill one batch of {config.batch_size}")
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        n_recorded = sum(scene == RECORDED_SCENE for scene in train.scenes)
        log(
            f"training on {len(train)} clips ({', '.join(config.train_sample_sets)}; {n_recorded} windows of real "
            f"recordings, {len(data.recording_labels)} labels), {len(validation)} held-out "
            f"{config.validation_sample_set} clips of {len(validation_labels)} classes; {len(all_labels)} labels, "
            f"{parameter_count(model):,} parameters, {len(sentences.index)} texts, {total_steps} steps"
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
                features = train.features[torch.from_numpy(indices)]
                # A frozen tower's pooled embeddings are computed once per window: no crop to augment.
                mel = features.float() if model_config.audio_tower != "cnn" else augment_batch(features, config.augment, generator)
                batch = training_batch(train, indices, captions, mel, caption_index, label_index, scene_index)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(step, total_steps, config)
                loss = training_loss(model, sentences, batch, all_labels, all_scenes, config, rng)
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
            metrics = validate(averaged)
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
                f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]['loss']:.3f}, {_log_metrics(metrics)}"
                f" ({history[-1]['seconds']:.0f} s)"
            )
            if config.select_epoch == "last" or score > best_score:
                best_epoch, best_score, best_state = epoch + 1, score, copy.deepcopy(averaged.state_dict())
        train_s = time.perf_counter() - train_started

        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        if config.text_anchors > 0:
            model.set_text_anchors(choose_text_anchors(sentences, config.text_anchors, order_seed))
        dtype = getattr(torch, config.weights_dtype)
        save_starter(
            model,
            config.out_path,
            text_model=text_model,
            dtype=dtype,
            metadata={
                **_frozen_tower_metadata(model_config),
                # The words the model met: the encoder glosses query words outside it (lexicon.py).
                "caption_vocabulary": caption_vocabulary(sentences.index),
                "training": {
                    "seed": config.seed,
                    "order_seed": order_seed,
                    "train_sample_sets": list(config.train_sample_sets),
                    "clips_per_set": config.clips_per_set,
                    "recording_windows": n_recorded,
                    "recording_labels": len(data.recording_labels),
                    "epochs": config.epochs,
                    "best_epoch": best_epoch,
                    "validation_sample_set": config.validation_sample_set,
                    "init_audio_from": str(config.init_audio_from) if config.init_audio_from else None,
                }
            },
        )
        saved, _, _ = load_starter(config.out_path)
        validation_metrics = validate(saved)
        probe_texts = [p for label in validation_labels for p in label_prompts(label, "descriptive")[:3]]
        min_cosine = _storage_min_cosine(model, saved, validation, probe_texts, sentences)

    seconds = {
        "render": round(data.seconds["render"], 1),
        "features": round(data.seconds["features"], 1),
        "recordings": round(data.seconds["recordings"], 1),
        "text_embeddings": round(text_s, 1),
        "train": round(train_s, 1),
        "total": round(time.perf_counter() - total_started, 1),
    }
    parameters = {
        "audio": parameter_count(model.audio),
        "text_projection": parameter_count(model.text),
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
        _write_metrics(config, result, len(train), len(validation), validation_labels, text_model)
    log(f"best epoch {best_epoch}: held-out {_log_metrics(validation_metrics)}; {seconds['total']:.0f} s in all; weights -> {config.out_path}")
    return result


def _frozen_tower_metadata(config: StarterConfig) -> dict[str, str]:
    """{AUDIO_TOWER_KEY: sha256 of the frozen tower file} for an "aisfx" config (the encoder refuses another
    tower file), and the companion starter's sha256 for "aisfx+starter"; nothing for the CNN."""
    if config.audio_tower == "cnn":
        return {}
    from indexer.encoders.checkpoints import file_sha256
    from indexer.starter.aisfx import TOWER_PATH
    from indexer.starter.encoder import AUDIO_TOWER_KEY

    metadata = {AUDIO_TOWER_KEY: file_sha256(TOWER_PATH)}
    if config.audio_tower == "aisfx+starter":
        from indexer.starter.companion import COMPANION_KEY, COMPANION_PATH

        metadata[COMPANION_KEY] = file_sha256(COMPANION_PATH)
    return metadata


def _write_metrics(
    config: TrainConfig,
    result: TrainResult,
    n_train: int,
    n_validation: int,
    validation_labels: Sequence[str],
    text_model: dict[str, str],
) -> None:
    report = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "text_model": text_model,
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
