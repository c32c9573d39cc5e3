"""Synthetic audio-visual GZSL data with a known class structure, for tests and the ablation bench.

Each class c has a latent prototype z_c ~ N(0, I_k). Its label embedding is two L2-normalised "text"
embeddings (standing in for CLIP text and CLAP text), t_m = normalise(A_m z_c + label noise). A sample of
class c draws h = z_c + sample noise and has two L2-normalised "audio-visual" embeddings (CLIP visual,
CLAP audio), x_m = normalise(tanh(B_m h) + feature noise). A_m, B_m are random linear maps, so features
and label embeddings share the latent space through different maps: a model that learns the map from
features to label space on seen classes generalises to unseen ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.gzsl.data import (
    ClassEmbeddings,
    FeatureSet,
    GZSLSplit,
    save_class_embeddings,
    save_features,
    save_split,
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and noise levels of a synthetic GZSL data set."""

    n_seen: int = 40  # includes the validation-unseen classes
    n_val_unseen: int = 10
    n_unseen: int = 20
    latent_dim: int = 16
    text_dims: tuple[int, int] = (64, 64)  # "CLIP text", "CLAP text"
    feature_dims: tuple[int, int] = (64, 64)  # "CLIP visual", "CLAP audio"
    train_per_class: int = 40  # samples of each seen class for training
    test_per_class: int = 20  # held-out samples of each seen class, and samples of each unseen class
    sample_noise: float = 0.7  # std of h around z_c (z_c has unit variance per dimension)
    feature_noise: float = 0.3  # std added per feature dimension before normalisation
    label_noise: float = 0.1  # std added per text dimension before normalisation
    seed: int = 0


@dataclass(frozen=True)
class SyntheticGZSL:
    """Training samples (seen classes), test samples (seen and unseen classes), label embeddings, split."""

    train: FeatureSet
    test: FeatureSet
    classes: ClassEmbeddings
    split: GZSLSplit

    @property
    def chance(self) -> dict[str, float]:
        """Accuracy of a uniform random guess: S and U among all classes, ZSL among unseen ones."""
        total = len(self.split.all_classes)
        return {"seen": 1 / total, "unseen": 1 / total, "hm": 1 / total, "zsl": 1 / len(self.split.unseen)}


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_synthetic_gzsl(config: SyntheticConfig | None = None) -> SyntheticGZSL:
    """A seeded synthetic data set (see the module docstring); the same config gives identical arrays."""
    c = config or SyntheticConfig()
    if not 0 < c.n_val_unseen < c.n_seen or c.n_unseen < 1:
        raise ValueError("need 0 < n_val_unseen < n_seen and n_unseen >= 1")
    rng = np.random.default_rng(c.seed)
    n_classes = c.n_seen + c.n_unseen
    names = [f"class_{i:03d}" for i in range(n_classes)]
    prototypes = rng.standard_normal((n_classes, c.latent_dim))
    text_maps = [rng.standard_normal((d, c.latent_dim)) / np.sqrt(c.latent_dim) for d in c.text_dims]
    feature_maps = [rng.standard_normal((d, c.latent_dim)) / np.sqrt(c.latent_dim) for d in c.feature_dims]
    labels = np.concatenate([
        _normalise(prototypes @ a.T + c.label_noise * rng.standard_normal((n_classes, a.shape[0])))
        for a in text_maps], axis=1)

    def samples(class_indices: np.ndarray, per_class: int) -> FeatureSet:
        owner = np.repeat(class_indices, per_class)
        h = prototypes[owner] + c.sample_noise * rng.standard_normal((len(owner), c.latent_dim))
        x = np.concatenate([
            _normalise(np.tanh(h @ b.T) + c.feature_noise * rng.standard_normal((len(owner), b.shape[0])))
            for b in feature_maps], axis=1)
        return FeatureSet(x.astype(np.float32), np.asarray(names)[owner])

    order = rng.permutation(n_classes)
    seen, unseen = np.sort(order[:c.n_seen]), np.sort(order[c.n_seen:])
    val_unseen = np.sort(rng.choice(seen, size=c.n_val_unseen, replace=False))
    train = samples(seen, c.train_per_class)
    test_seen, test_unseen = samples(seen, c.test_per_class), samples(unseen, c.test_per_class)
    test = FeatureSet(np.concatenate([test_seen.features, test_unseen.features]),
                      np.concatenate([test_seen.labels, test_unseen.labels]))
    split = GZSLSplit(tuple(names[i] for i in seen), tuple(names[i] for i in unseen),
                      tuple(names[i] for i in val_unseen))
    return SyntheticGZSL(train, test, ClassEmbeddings(tuple(names), labels.astype(np.float32)), split)


def write_synthetic(data: SyntheticGZSL, directory: str | Path) -> dict[str, Path]:
    """Write train.npz, test.npz, classes.npz and split.json into `directory`; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"train": directory / "train.npz", "test": directory / "test.npz",
             "classes": directory / "classes.npz", "split": directory / "split.json"}
    save_features(paths["train"], data.train)
    save_features(paths["test"], data.test)
    save_class_embeddings(paths["classes"], data.classes)
    save_split(paths["split"], data.split)
    return paths
