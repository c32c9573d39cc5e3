"""Test-time GZSL evaluation of a trained model: S, U, HM and ZSL with its calibration constant."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.gzsl.calibration import GZSLReport, gzsl_report
from search.gzsl.data import FeatureSet, check_labels
from search.gzsl.model import GZSLModel


def evaluate_gzsl(model: GZSLModel, features: np.ndarray, labels: Sequence[str] | np.ndarray,
                  gamma: float | None = None) -> GZSLReport:
    """S, U, HM and ZSL of `model` on test samples of its seen and unseen classes.

    `labels` are class names; `gamma` defaults to the one tuned on validation (0 gives the uncalibrated
    figures). Raises GZSLSplitError naming a label that is not one of the model's classes.
    """
    samples = FeatureSet(features, labels)
    check_labels(samples, model.class_names, "the test data")
    position = {n: i for i, n in enumerate(model.class_names)}
    true = np.fromiter((position[label] for label in samples.labels.tolist()), dtype=np.int64, count=len(samples))
    return gzsl_report(model.scores(samples.features), true, model.seen_mask, model.class_names,
                       model.gamma if gamma is None else gamma)
