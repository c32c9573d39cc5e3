"""Calibrated stacking (Chao et al., ECCV 2016) and the GZSL metrics S, U, HM and ZSL.

A model trained on seen classes scores them too high; calibrated stacking subtracts a constant gamma
from every seen-class score before the argmax. gamma is chosen on validation classes to maximise HM.
The search is exact (one candidate per interval where predictions stay the same) and may return a
negative gamma; the published ClipClap code searched [0, 5] in steps of 1/15 on distances.

Metrics, as the audio-visual GZSL benchmarks (AVCA, TCAF, ClipClap) compute them:
- S: mean per-class accuracy over samples of seen classes, predicting among all classes (calibrated);
- U: the same over samples of unseen classes;
- HM: 2SU/(S+U);
- ZSL: mean per-class accuracy over samples of unseen classes, predicting among unseen classes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.metrics import classification, harmonic_mean

# Above this many distinct candidate gammas, tune on quantiles of them (bounded time and memory).
MAX_GAMMA_CANDIDATES = 2048


@dataclass(frozen=True)
class GZSLReport:
    """GZSL accuracies (fractions in [0, 1]) and the calibration constant they were measured with."""

    seen: float
    unseen: float
    hm: float
    zsl: float
    gamma: float
    seen_samples: int
    unseen_samples: int

    def as_dict(self) -> dict[str, float]:
        return {"seen": self.seen, "unseen": self.unseen, "hm": self.hm, "zsl": self.zsl, "gamma": self.gamma,
                "seen_samples": self.seen_samples, "unseen_samples": self.unseen_samples}


def calibrated_predictions(scores: np.ndarray, seen: np.ndarray, gamma: float) -> np.ndarray:
    """Class indices argmax(scores - gamma * seen) of `scores` (n, C); `seen` (C,) marks seen classes."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argmax(scores - gamma * np.asarray(seen, dtype=np.float64), axis=1)


def gzsl_report(scores: np.ndarray, true: Sequence[int], seen: np.ndarray, class_names: Sequence[str],
                gamma: float = 0.0) -> GZSLReport:
    """S, U, HM and ZSL of `scores` (n, C) for samples of true class indices `true`.

    `seen` (C,) is True for seen classes and False for unseen ones; classes without samples are left out of
    the per-class means (search.metrics.classification).
    """
    scores = np.asarray(scores, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    seen = np.asarray(seen, dtype=bool)
    names = list(class_names)
    predicted = calibrated_predictions(scores, seen, gamma)
    of_seen = seen[true]
    s = classification(true[of_seen], predicted[of_seen], names).mean_per_class
    u = classification(true[~of_seen], predicted[~of_seen], names).mean_per_class
    unseen_columns = np.flatnonzero(~seen)
    zsl_predicted = unseen_columns[np.argmax(scores[~of_seen][:, unseen_columns], axis=1)] if len(unseen_columns) \
        else np.zeros(0, dtype=np.int64)
    zsl = classification(true[~of_seen], zsl_predicted, names).mean_per_class
    return GZSLReport(seen=s, unseen=u, hm=harmonic_mean(s, u), zsl=zsl, gamma=float(gamma),
                      seen_samples=int(of_seen.sum()), unseen_samples=int((~of_seen).sum()))


def _candidate_gammas(margins: np.ndarray) -> np.ndarray:
    """One gamma inside each interval where predictions are constant: the seen-best class wins exactly
    when its margin over the unseen-best exceeds gamma, so predictions change only at the margins."""
    points = np.unique(margins)
    if len(points) > MAX_GAMMA_CANDIDATES:
        points = np.unique(np.quantile(points, np.linspace(0.0, 1.0, MAX_GAMMA_CANDIDATES)))
    # Midpoints never tie with a margin, so argmax order cannot decide a prediction.
    inner = (points[:-1] + points[1:]) / 2
    spread = max(float(points[-1] - points[0]), 1.0)
    return np.concatenate([[points[0] - spread], inner, [points[-1] + spread]])


def tune_gamma(scores: np.ndarray, true: Sequence[int], seen: np.ndarray) -> float:
    """The gamma that maximises HM on (validation) `scores` (n, C) with true class indices `true`.

    Every distinct outcome is tried (up to MAX_GAMMA_CANDIDATES); among equal HMs the gamma nearest 0
    wins (the least correction). Needs samples of both seen and unseen classes; otherwise returns 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    seen = np.asarray(seen, dtype=bool)
    of_seen = seen[true]
    if not of_seen.any() or of_seen.all() or seen.all() or not seen.any():
        return 0.0
    seen_columns, unseen_columns = np.flatnonzero(seen), np.flatnonzero(~seen)
    seen_best = seen_columns[np.argmax(scores[:, seen_columns], axis=1)]
    unseen_best = unseen_columns[np.argmax(scores[:, unseen_columns], axis=1)]
    rows = np.arange(len(scores))
    margins = scores[rows, seen_best] - scores[rows, unseen_best]
    candidates = _candidate_gammas(margins)

    # Per-class accuracy for every candidate at once: correct (m, n) @ class indicator / support.
    present = np.unique(true)
    indicator = (true[:, None] == present[None, :]).astype(np.float64)
    indicator /= indicator.sum(axis=0, keepdims=True)
    present_seen = seen[present]
    seen_right, unseen_right = seen_best == true, unseen_best == true
    hms = np.empty(len(candidates))
    for start in range(0, len(candidates), 256):
        chunk = candidates[start:start + 256]
        correct = np.where(margins[None, :] > chunk[:, None], seen_right[None, :], unseen_right[None, :])
        per_class = correct.astype(np.float64) @ indicator
        s = per_class[:, present_seen].mean(axis=1)
        u = per_class[:, ~present_seen].mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            hms[start:start + 256] = np.where(s + u > 0, 2 * s * u / (s + u), 0.0)
    best = np.flatnonzero(hms >= hms.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])
