"""A trained GZSL model: network, class label embeddings, class split, calibration constant and how they
were chosen; saved as safetensors (tensors) + JSON (everything else), never pickle."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from indexer.errors import CheckpointError
from search.gzsl.calibration import GZSLReport, calibrated_predictions
from search.gzsl.config import GZSLConfig
from search.gzsl.data import ClassEmbeddings, GZSLSplit
from search.gzsl.errors import GZSLConfigError, GZSLDataError
from search.gzsl.network import ClipClapNetwork

FORMAT = "resound-gzsl-clipclap"
FORMAT_VERSION = 1
TENSORS_FILE = "gzsl.safetensors"
META_FILE = "gzsl.json"
CLASS_EMBEDDINGS_KEY = "class_embeddings"


@dataclass(frozen=True)
class TrainingRecord:
    """How epochs and gamma were chosen (stage 1) and how the final model was trained (stage 2)."""

    best_epoch: int  # 0-based stage-1 epoch with the best validation HM
    epochs_trained: int  # epochs of the returned model
    validation_hm: list[float]  # per stage-1 epoch, at that epoch's best gamma
    learning_rates: list[float]  # per stage-1 epoch (stage 2 replays them)
    validation: GZSLReport  # stage-1 model at best_epoch, tuned gamma
    validation_uncalibrated: GZSLReport  # the same at gamma = 0

    def to_json(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "epochs_trained": self.epochs_trained,
                "validation_hm": self.validation_hm, "learning_rates": self.learning_rates,
                "validation": self.validation.as_dict(),
                "validation_uncalibrated": self.validation_uncalibrated.as_dict()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainingRecord:
        return cls(values["best_epoch"], values["epochs_trained"], list(values["validation_hm"]),
                   list(values["learning_rates"]), GZSLReport(**values["validation"]),
                   GZSLReport(**values["validation_uncalibrated"]))


@dataclass
class GZSLModel:
    """ClipClap network with the test-time classes (split seen then unseen) and calibration constant."""

    network: ClipClapNetwork
    config: GZSLConfig
    classes: ClassEmbeddings  # in the order split.seen + split.unseen
    split: GZSLSplit
    gamma: float
    record: TrainingRecord | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    @property
    def seen_mask(self) -> np.ndarray:
        """(C,) True for the seen classes among `class_names`."""
        return np.arange(len(self.class_names)) < len(self.split.seen)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Scores (n, C) of audio-visual `features` (n, d) against `class_names`, uncalibrated."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.network.feature_dim:
            raise GZSLDataError(f"features of shape {features.shape}; the model takes (n, {self.network.feature_dim})")
        return self.network.scores(features, self.classes.embeddings)

    def predict(self, features: np.ndarray, gamma: float | None = None) -> list[str]:
        """Calibrated class names of `features`; `gamma` defaults to the one tuned on validation."""
        gamma = self.gamma if gamma is None else gamma
        indices = calibrated_predictions(self.scores(features), self.seen_mask, gamma)
        return [self.class_names[i] for i in indices]

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write `gzsl.safetensors` and `gzsl.json` into `directory` (created), each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"network.{k}": v.detach().contiguous().clone() for k, v in self.network.state_dict().items()}
        tensors[CLASS_EMBEDDINGS_KEY] = torch.from_numpy(self.classes.embeddings.copy())
        tmp_tensors = directory / (TENSORS_FILE + ".tmp")
        save_file(tensors, str(tmp_tensors))
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "tensors_sha256": hashlib.sha256(tmp_tensors.read_bytes()).hexdigest(),
            "feature_dim": self.network.feature_dim, "label_dim": self.network.label_dim,
            "config": self.config.to_json(), "classes": list(self.class_names), "split": self.split.to_json(),
            "gamma": self.gamma, "record": None if self.record is None else self.record.to_json(),
            "build": {"torch": torch.__version__, "numpy": np.__version__},
        }
        tmp_meta = directory / (META_FILE + ".tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_tensors, directory / TENSORS_FILE)
        os.replace(tmp_meta, directory / META_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> GZSLModel:
        """The model saved in `directory`; CheckpointError when files are missing, altered or inconsistent."""
        directory = Path(directory)
        meta_path, tensors_path = directory / META_FILE, directory / TENSORS_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            blob = tensors_path.read_bytes()
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{directory}: not a GZSL model ({e})") from e
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')}, "
                                  f"expected {FORMAT!r} v{FORMAT_VERSION}")
        # The two files are replaced one after the other; the fingerprint catches a half-written save.
        if hashlib.sha256(blob).hexdigest() != meta.get("tensors_sha256"):
            raise CheckpointError(f"{tensors_path}: does not match {meta_path} (fingerprint differs)")
        try:
            tensors = load_file(str(tensors_path))
            config = GZSLConfig.from_json(meta["config"])
            split = GZSLSplit(**{k: tuple(v) for k, v in meta["split"].items()})
            classes = ClassEmbeddings(tuple(meta["classes"]), tensors.pop(CLASS_EMBEDDINGS_KEY).numpy())
            network = ClipClapNetwork(int(meta["feature_dim"]), int(meta["label_dim"]), config)
            network.load_state_dict({k.removeprefix("network."): v for k, v in tensors.items()}, strict=True)
            record = None if meta["record"] is None else TrainingRecord.from_json(meta["record"])
        except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError, GZSLConfigError, GZSLDataError) as e:
            raise CheckpointError(f"{directory}: cannot load GZSL model ({type(e).__name__}: {e})") from e
        if classes.names != split.seen + split.unseen:
            raise CheckpointError(f"{meta_path}: class order differs from the split's seen + unseen classes")
        network.eval()
        return cls(network, config, classes, split, float(meta["gamma"]), record)
