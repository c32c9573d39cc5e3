"""Training and evaluation data for the starter model: rendered demo corpora and their log-mels.

Corpora are rendered with indexer.demo into a cache directory named after everything that decides their
content (sample set, size, seed, classes and a fingerprint of the generator's code), so a second run
reuses them. Log-mels of every clip are computed once per front end and cached beside the clips.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from indexer.media.decode import resample
from indexer.starter.config import StarterConfig
from indexer.starter.features import LogMelFrontEnd, pad_windows

# Sample sets a starter model must never train on: the independent set it is measured on.
HELD_OUT_SAMPLE_SETS = ("freepats",)
FEATURE_BATCH = 64


@dataclass(frozen=True)
class CorpusSpec:
    """What to render: `size` clips of `classes` (None: all the set renders) with `sample_set` and `seed`."""

    sample_set: str
    size: int
    seed: int
    classes: tuple[str, ...] | None = None


@dataclass
class LabelledClips:
    """Clips as full-window log-mels with their labels, scenes and captions (plain first, then descriptive)."""

    features: torch.Tensor  # (n, frames, n_mels) float16 log-mels; (n, 512) pooled aiSFX embeddings
    labels: list[str]
    captions: list[tuple[str, ...]]
    sample_sets: list[str]
    scenes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: Sequence[int]) -> LabelledClips:
        """The clips at `indices`, in that order (repeats allowed)."""
        return LabelledClips(
            self.features[torch.tensor(list(indices), dtype=torch.long)],
            [self.labels[i] for i in indices],
            [self.captions[i] for i in indices],
            [self.sample_sets[i] for i in indices],
            [self.scenes[i] for i in indices],
        )

    @staticmethod
    def concatenate(parts: Sequence[LabelledClips]) -> LabelledClips:
        """All clips of `parts`, in order."""
        return LabelledClips(
            torch.cat([p.features for p in parts]),
            [label for p in parts for label in p.labels],
            [c for p in parts for c in p.captions],
            [s for p in parts for s in p.sample_sets],
            [s for p in parts for s in p.scenes],
        )


def generator_fingerprint() -> str:
    """Short hash of indexer.demo's source and phrase tables: a changed generator renders anew."""
    import indexer.demo

    digest = hashlib.sha256()
    package = Path(indexer.demo.__file__).parent
    for path in sorted([*package.glob("*.py"), *package.glob("*.json")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def corpus_directory(cache_dir: Path, spec: CorpusSpec) -> Path:
    """Where `spec`'s corpus is rendered inside `cache_dir`."""
    classes = "all" if spec.classes is None else hashlib.sha256("\n".join(spec.classes).encode()).hexdigest()[:8]
    name = f"{spec.sample_set}-n{spec.size}-s{spec.seed}-{classes}-{generator_fingerprint()}"
    return Path(cache_dir) / name


def ensure_corpus(cache_dir: Path, spec: CorpusSpec, log: Callable[[str], None] = print) -> Path:
    """Render `spec` into the cache unless a complete render is already there; returns its directory."""
    from indexer.demo import generate_demo_corpus

    directory = corpus_directory(cache_dir, spec)
    done_marker = directory / "render-complete.json"
    if done_marker.is_file():
        return directory
    started = time.perf_counter()
    generate_demo_corpus(
        directory,
        size=spec.size,
        seed=spec.seed,
        sample_set=spec.sample_set,
        classes=list(spec.classes) if spec.classes is not None else None,
    )
    seconds = time.perf_counter() - started
    # Written last, so an interrupted render is never mistaken for a complete one.
    done_marker.write_text(json.dumps({"seconds": round(seconds, 1)}) + "\n")
    log(f"rendered {spec.size} {spec.sample_set} clips in {seconds:.0f} s -> {directory}")
    return directory


class WindowFeaturiser:
    """Windows -> what the audio tower is trained on, computed once per clip and cached: float16 log-mels
    (n, frames, n_mels) for the CNN; for an "aisfx" config the frozen tower's pooled embeddings (n, 512),
    run as an index build runs them (bf16 autocast, blocks without overlap; aisfx.pooled_embeddings)."""

    def __init__(self, config: StarterConfig):
        self.config = config
        self.tower = None
        self.companion = None
        if config.audio_tower == "aisfx+starter":
            # Only the companion's part: load_corpus and load_recordings put the "aisfx" part (cached
            # under its own key) before it, so adding the companion never recomputes aiSFX's embeddings.
            from indexer.starter.companion import StarterCompanion

            self.companion = StarterCompanion()
        elif config.audio_tower == "aisfx":
            from indexer.starter.aisfx import AisfxFrontEnd, load_aisfx_tower

            self.front_end: torch.nn.Module = AisfxFrontEnd()
            self.tower = load_aisfx_tower().to(memory_format=torch.channels_last)
        else:
            self.front_end = LogMelFrontEnd(config)

    def __call__(self, windows: Sequence[np.ndarray]) -> torch.Tensor:
        if self.companion is not None:
            return self.companion.embed(self.companion.windows(windows, self.config.sample_rate)).to(torch.float16)
        if self.tower is None:
            with torch.inference_mode():
                return self.front_end(pad_windows(windows, self.config)).to(torch.float16)
        from indexer.starter.aisfx import pooled_embeddings, window_features

        features = window_features(self.front_end, windows, self.config.window_samples)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return pooled_embeddings(self.tower, features).to(torch.float16)

    def empty(self) -> torch.Tensor:
        if self.companion is not None:
            from indexer.starter.config import COMPANION_DIM

            return torch.zeros((0, COMPANION_DIM), dtype=torch.float16)
        if self.tower is None:
            frames = self.config.window_samples // self.config.hop_length + 1
            return torch.zeros((0, frames, self.config.n_mels), dtype=torch.float16)
        return torch.zeros((0, 512), dtype=torch.float16)


def _front_end_key(config: StarterConfig) -> str:
    fields: tuple[object, ...] = (
        config.sample_rate,
        config.window_seconds,
        config.n_fft,
        config.win_length,
        config.hop_length,
        config.n_mels,
        config.f_min,
        config.f_max,
        config.top_db,
    )
    if config.audio_tower != "cnn":  # the tower's output is the cached feature: its weights key it too
        from indexer.encoders.checkpoints import file_sha256
        from indexer.starter.aisfx import TOWER_PATH

        fields = (*fields, config.audio_tower, file_sha256(TOWER_PATH))
    if config.audio_tower == "aisfx+starter":
        from indexer.starter.companion import COMPANION_PATH

        fields = (*fields, file_sha256(COMPANION_PATH))
    return hashlib.sha256(repr(fields).encode()).hexdigest()[:12]


def read_clip(path: Path, sample_rate: int) -> np.ndarray:
    """A clip's samples as mono float32 at `sample_rate`, resampled as resound's decoder does."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return resample(data.mean(axis=1), rate, sample_rate)


def load_corpus(directory: Path, config: StarterConfig) -> LabelledClips:
    """The clips of a rendered corpus as log-mels of the model's window (cut or repeat-padded to it)."""
    if config.audio_tower == "aisfx+starter":
        return _with_companion(load_corpus(directory, replace(config, audio_tower="aisfx")), _load_corpus(directory, config))
    return _load_corpus(directory, config)


def _with_companion(base: LabelledClips, companion: LabelledClips) -> LabelledClips:
    """`base` (aiSFX's pooled embeddings) with `companion`'s vectors of the same windows after them."""
    if len(base) != len(companion):
        raise ValueError(f"{len(base)} aiSFX embeddings but {len(companion)} companion vectors")
    return LabelledClips(torch.cat([base.features, companion.features], dim=1), base.labels, base.captions, base.sample_sets, base.scenes)


def _load_corpus(directory: Path, config: StarterConfig) -> LabelledClips:
    from indexer.demo import read_demo_corpus

    clips = read_demo_corpus(directory)
    cache = directory / f"features-{_front_end_key(config)}.npy"
    if cache.is_file():
        features = torch.from_numpy(np.load(cache))
    else:
        featurise = WindowFeaturiser(config)
        chunks = []
        for start in range(0, len(clips), FEATURE_BATCH):
            windows = [
                read_clip(directory / clip.path, config.sample_rate)[: config.window_samples]
                for clip in clips[start : start + FEATURE_BATCH]
            ]
            chunks.append(featurise(windows))
        features = torch.cat(chunks) if chunks else featurise.empty()
        temporary = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")  # concurrent runs never clash
        np.save(temporary, features.numpy())
        temporary.replace(cache)
    return LabelledClips(
        features=features,
        labels=[clip.label for clip in clips],
        captions=[(clip.caption, *clip.captions) for clip in clips],
        sample_sets=[clip.sample_set for clip in clips],
        scenes=[clip.scene for clip in clips],
    )


# Real recordings: the scene name their clips carry. They name no demo scene, so the scene terms skip them
# and their captions (which name no place) count same-label clips as positives.
RECORDED_SCENE = "recorded"


def recording_windows(samples: np.ndarray, config: StarterConfig, max_windows: int, min_rms: float = 1e-3) -> list[np.ndarray]:
    """Up to `max_windows` windows of the model's length spread evenly over `samples` (a short recording is
    one window, repeat-padded later); windows quieter than `min_rms` (silence between events) are dropped."""
    size = config.window_samples
    if len(samples) <= size:
        starts = [0]
    else:
        count = min(max_windows, int(np.ceil(len(samples) / size)))
        starts = np.linspace(0, len(samples) - size, count).round().astype(int).tolist()
    windows = [samples[s : s + size] for s in starts]
    return [w for w in windows if len(w) and float(np.sqrt(np.mean(np.square(w)))) >= min_rms]


def load_recordings(
    recordings: Sequence,  # indexer.training.recordings.RecordedClip
    captions_of: Callable[[str], Sequence[str]],
    config: StarterConfig,
    cache_dir: Path,
    max_windows: int = 3,
    log: Callable[[str], None] = print,
) -> LabelledClips:
    """Real recordings as log-mel windows (decoded and resampled to the model's rate as an index build does),
    each with its label, the label as plain caption and the label's caption texts; cached in `cache_dir`
    under a key of the recordings' paths, sizes and the front end. A file that cannot be decoded is
    skipped with a one-line message."""
    if config.audio_tower == "aisfx+starter":
        base = load_recordings(recordings, captions_of, replace(config, audio_tower="aisfx"), cache_dir, max_windows, log)
        return _with_companion(base, _load_recordings(recordings, captions_of, config, cache_dir, max_windows, log))
    return _load_recordings(recordings, captions_of, config, cache_dir, max_windows, log)


def _load_recordings(
    recordings: Sequence,
    captions_of: Callable[[str], Sequence[str]],
    config: StarterConfig,
    cache_dir: Path,
    max_windows: int,
    log: Callable[[str], None],
) -> LabelledClips:
    from indexer.errors import AudioDecodeError
    from indexer.media import decode_audio

    digest = hashlib.sha256(_front_end_key(config).encode())
    digest.update(str(max_windows).encode())
    for clip in recordings:
        path = Path(clip.path)
        size = path.stat().st_size if path.is_file() else -1
        digest.update(f"{path}\t{size}\t{clip.label}\n".encode())
    cache = Path(cache_dir) / f"recordings-{digest.hexdigest()[:16]}"
    features_path, index_path = cache / "features.npy", cache / "clips.json"
    if features_path.is_file() and index_path.is_file():
        features = torch.from_numpy(np.load(features_path))
        owners = json.loads(index_path.read_text())
    else:
        started = time.perf_counter()
        featurise = WindowFeaturiser(config)
        windows, owners = [], []
        for i, clip in enumerate(recordings):
            try:
                samples = decode_audio(clip.path, config.sample_rate).samples
            except (AudioDecodeError, OSError) as e:
                log(f"{clip.path}: skipped ({str(e).splitlines()[0][:200]})")
                continue
            for window in recording_windows(samples, config, max_windows):
                windows.append(window)
                owners.append(i)
        chunks = [featurise(windows[start : start + FEATURE_BATCH]) for start in range(0, len(windows), FEATURE_BATCH)]
        features = torch.cat(chunks) if chunks else featurise.empty()
        cache.mkdir(parents=True, exist_ok=True)
        temporary = features_path.with_name(f"features.{os.getpid()}.tmp.npy")
        np.save(temporary, features.numpy())
        temporary.replace(features_path)
        index_path.write_text(json.dumps(owners))
        log(f"{len(windows)} windows of {len(recordings)} recordings in {time.perf_counter() - started:.0f} s -> {cache}")
    labels = [recordings[i].label for i in owners]
    table = {label: (label, *captions_of(label)) for label in set(labels)}
    return LabelledClips(
        features=features,
        labels=labels,
        captions=[table[label] for label in labels],
        sample_sets=[f"recordings:{recordings[i].source}" for i in owners],
        scenes=[RECORDED_SCENE] * len(labels),
    )
