"""Audio-visual generalised zero-shot learning: ClipClap-GZSL (Kurzendörfer et al., CVPR-W 2024) on
CLIP visual + CLAP audio features and CLIP text + CLAP text class embeddings, with calibrated stacking.

Data flow: data (features, class embeddings, split) -> train (two-stage protocol, network) -> model
(save/load) -> evaluate (calibration: S, U, HM, ZSL).
"""

from search.gzsl.calibration import GZSLReport, calibrated_predictions, gzsl_report, tune_gamma
from search.gzsl.config import GZSLConfig
from search.gzsl.data import (
    ClassEmbeddings,
    FeatureSet,
    GZSLSplit,
    load_class_embeddings,
    load_features,
    load_split,
)
from search.gzsl.errors import GZSLConfigError, GZSLDataError, GZSLSplitError
from search.gzsl.evaluate import evaluate_gzsl
from search.gzsl.model import GZSLModel, TrainingRecord
from search.gzsl.train import train_gzsl

__all__ = [
    "ClassEmbeddings", "FeatureSet", "GZSLConfig", "GZSLConfigError", "GZSLDataError", "GZSLModel", "GZSLReport",
    "GZSLSplit", "GZSLSplitError", "TrainingRecord", "calibrated_predictions", "evaluate_gzsl", "gzsl_report",
    "load_class_embeddings", "load_features", "load_split", "train_gzsl", "tune_gamma",
]
