"""The bundled starter model: a small CLAP-style audio-text model trained by resound on rendered sounds.

`StarterEncoder` loads it (the default weights ship in `weights/starter.safetensors`); `train_starter`
trains a new one from demo corpora (see train.py and weights/MODEL_CARD.md).
"""

from indexer.starter.config import TINY_CONFIG, StarterConfig
from indexer.starter.encoder import WEIGHTS_PATH, StarterEncoder
from indexer.starter.train import TrainConfig, TrainResult, train_starter

__all__ = ["TINY_CONFIG", "WEIGHTS_PATH", "StarterConfig", "StarterEncoder", "TrainConfig", "TrainResult", "train_starter"]
