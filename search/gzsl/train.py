"""Training protocol of the audio-visual GZSL benchmarks (AVCA, TCAF, ClipClap):

1. stage 1: train on the seen classes minus the validation-unseen ones; after every epoch score the
   validation samples among validation-seen + validation-unseen classes, tune gamma for the best HM,
   and step the learning-rate scheduler on that HM; keep the epoch (and its gamma) with the best HM;
2. stage 2: retrain from the same seed on all seen classes for best_epoch + 1 epochs, replaying stage 1's
   learning rates (the published code steps the scheduler on a validation set it then trains on; replaying
   the stage-1 schedule keeps stage 2 free of that leak and deterministic);
3. the returned model classifies among seen + unseen classes with stage 1's gamma.

Batches are class-balanced (a class drawn uniformly, then one of its samples), as the published sampler
with alpha = 1 draws them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from search.gzsl.calibration import GZSLReport, gzsl_report, tune_gamma
from search.gzsl.config import GZSLConfig
from search.gzsl.data import ClassEmbeddings, FeatureSet, GZSLSplit, check_labels
from search.gzsl.errors import GZSLDataError
from search.gzsl.model import GZSLModel, TrainingRecord
from search.gzsl.network import ClipClapNetwork

# progress(stage, epoch, validation report or None): called after every epoch.
Progress = Callable[[int, int, "GZSLReport | None"], None]


@dataclass(frozen=True)
class _Validation:
    """Validation samples and classes of stage 1 (seen first, then validation-unseen)."""

    samples: FeatureSet
    classes: ClassEmbeddings
    seen: np.ndarray

    def report(self, network: ClipClapNetwork) -> tuple[GZSLReport, GZSLReport]:
        """(tuned-gamma report, gamma = 0 report) of `network` on the validation samples."""
        scores = network.scores(self.samples.features, self.classes.embeddings)
        true = _indices(self.samples.labels, self.classes.names)
        gamma = tune_gamma(scores, true, self.seen)
        return (gzsl_report(scores, true, self.seen, self.classes.names, gamma),
                gzsl_report(scores, true, self.seen, self.classes.names, 0.0))


def _indices(labels: np.ndarray, names: Sequence[str]) -> np.ndarray:
    position = {n: i for i, n in enumerate(names)}
    return np.fromiter((position[str(label)] for label in labels), dtype=np.int64, count=len(labels))


class _BalancedBatches:
    """Seeded class-balanced batches of sample indices."""

    def __init__(self, targets: np.ndarray, n_classes: int, batch_size: int, seed: int):
        self.order = np.argsort(targets, kind="stable")
        counts = np.bincount(targets, minlength=n_classes)
        self.present = np.flatnonzero(counts)
        self.counts, self.starts = counts, np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.batch_size, self.rng = batch_size, np.random.default_rng(seed)

    def draw(self) -> np.ndarray:
        classes = self.present[self.rng.integers(len(self.present), size=self.batch_size)]
        within = (self.rng.random(self.batch_size) * self.counts[classes]).astype(np.int64)
        return self.order[self.starts[classes] + within]


def fit_network(samples: FeatureSet, classes: ClassEmbeddings, config: GZSLConfig, epochs: int,
                validation: _Validation | None = None, learning_rates: Sequence[float] | None = None,
                progress: Callable[[int, GZSLReport | None], None] | None = None,
                ) -> tuple[ClipClapNetwork, list[float], list[tuple[GZSLReport, GZSLReport]]]:
    """Train a fresh network (seeded by config.seed) on `samples` of `classes` for `epochs` epochs.

    With `validation`, the plateau scheduler steps on each epoch's validation HM; with `learning_rates`,
    epoch e uses learning_rates[e] instead. Returns the network, the learning rate of each epoch and, with
    `validation`, each epoch's (tuned, gamma = 0) validation reports.
    """
    targets = _indices(samples.labels, classes.names)
    features = torch.from_numpy(samples.features)
    label_embeddings = torch.from_numpy(classes.embeddings)
    batches = _BalancedBatches(targets, len(classes.names), config.batch_size, config.seed)
    targets_t = torch.from_numpy(targets)
    used_rates: list[float] = []
    reports: list[tuple[GZSLReport, GZSLReport]] = []
    # A forked RNG: seeding must not disturb (or depend on) the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = ClipClapNetwork(samples.features.shape[1], classes.dim, config)
        optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", factor=config.lr_factor,
                                                               patience=config.lr_patience)
        for epoch in range(epochs):
            if learning_rates is not None:
                for group in optimizer.param_groups:
                    group["lr"] = learning_rates[epoch]
            used_rates.append(float(optimizer.param_groups[0]["lr"]))
            network.train()
            for _ in range(config.batches_per_epoch):
                batch = torch.from_numpy(batches.draw())
                loss = network.losses(features[batch], targets_t[batch], label_embeddings)["total"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            report = None
            if validation is not None:
                reports.append(validation.report(network))
                report = reports[-1][0]
                if learning_rates is None:
                    scheduler.step(report.hm)
            if progress is not None:
                progress(epoch, report)
    network.eval()
    return network, used_rates, reports


def _stage_one_sets(samples: FeatureSet, split: GZSLSplit, validation: FeatureSet | None,
                    config: GZSLConfig) -> tuple[FeatureSet, FeatureSet]:
    """(stage-1 training samples, validation samples)."""
    if validation is not None:
        check_labels(validation, split.val_seen + split.val_unseen, "the validation data")
        return samples.of_classes(split.val_seen), validation
    # No validation set: hold out a seeded fraction of every validation-seen class to measure S.
    rng = np.random.default_rng(config.seed)
    held_out = np.isin(samples.labels, np.asarray(split.val_unseen, dtype=str))
    for name in split.val_seen:
        rows = np.flatnonzero(samples.labels == name)
        n_out = round(config.val_fraction * len(rows))
        if len(rows) >= 2:
            held_out[rng.choice(rows, size=min(max(n_out, 1), len(rows) - 1), replace=False)] = True
    return samples.subset(~held_out), samples.subset(held_out)


def train_gzsl(features: np.ndarray, labels: Sequence[str] | np.ndarray, class_embeddings: ClassEmbeddings,
               split: GZSLSplit, config: GZSLConfig | None = None, validation: FeatureSet | None = None,
               progress: Progress | None = None) -> GZSLModel:
    """Train ClipClap-GZSL on seen-class samples and return the calibrated model (see the module docstring).

    `features` (n, d): CLIP visual + CLAP audio embeddings; `labels` (n,): class names, all seen.
    `class_embeddings`: label embeddings of at least every class of `split`. `validation`: optional
    samples of validation-seen and validation-unseen classes (the benchmark's val set); without it a
    fraction of the seen samples is held out and the validation-unseen samples in `features` are used.
    Raises GZSLSplitError / GZSLDataError / GZSLConfigError naming what is wrong.
    """
    config = config or GZSLConfig()
    samples = FeatureSet(features, labels)
    split.validate(class_embeddings.names)
    check_labels(samples, split.seen, "the training data")
    train1, val = _stage_one_sets(samples, split, validation, config)
    stage2 = samples if validation is None else FeatureSet(
        np.concatenate([samples.features, validation.features]), np.concatenate([samples.labels, validation.labels]))
    # Every class trained on needs samples; validation needs samples of both roles, not of every class.
    for what, data, needed in (("stage-1 training data", train1, split.val_seen),
                               ("training data", stage2, split.seen)):
        missing = [n for n in needed if n not in set(data.labels.tolist())]
        if missing:
            raise GZSLDataError(f"the {what} holds no sample of seen class {missing[0]!r}")
    for role in ("val_seen", "val_unseen"):
        if not np.isin(val.labels, np.asarray(getattr(split, role), dtype=str)).any():
            raise GZSLDataError(f"the validation data holds no sample of a {role} class")
    if validation is not None and validation.features.shape[1] != samples.features.shape[1]:
        raise GZSLDataError(f"validation features have {validation.features.shape[1]} dimensions, "
                            f"training features {samples.features.shape[1]}")

    validation_set = _Validation(val, class_embeddings.select(split.val_seen + split.val_unseen),
                                 np.arange(len(split.val_seen) + len(split.val_unseen)) < len(split.val_seen))
    _, rates, reports = fit_network(
        train1, class_embeddings.select(split.val_seen), config, config.epochs, validation=validation_set,
        progress=None if progress is None else (lambda epoch, report: progress(1, epoch, report)))
    hms = [tuned.hm for tuned, _ in reports]
    best = int(np.argmax(hms))  # the first epoch among equal HMs
    network, _, _ = fit_network(
        stage2, class_embeddings.select(split.seen), config, best + 1, learning_rates=rates[:best + 1],
        progress=None if progress is None else (lambda epoch, report: progress(2, epoch, report)))
    record = TrainingRecord(best_epoch=best, epochs_trained=best + 1, validation_hm=hms, learning_rates=rates,
                            validation=reports[best][0], validation_uncalibrated=reports[best][1])
    return GZSLModel(network, config, class_embeddings.select(split.all_classes), split, reports[best][0].gamma,
                     record)
