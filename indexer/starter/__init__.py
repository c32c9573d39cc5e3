"""The bundled starter model: a small CLAP-style audio-text model trained by resound on rendered sounds.

`StarterEncoder` loads it (the default weights ship in `weights/starter.safetensors`). This package holds
what a query loads (encoder, model, text tower, lexicon, checkpoint format, front ends, prompts);
`indexer.training.train.train_starter` trains a new model (see weights/MODEL_CARD.md) and is never
imported from here.
"""

from indexer.starter.config import TINY_CONFIG, StarterConfig
from indexer.starter.encoder import WEIGHTS_PATH, StarterEncoder

__all__ = ["TINY_CONFIG", "WEIGHTS_PATH", "StarterConfig", "StarterEncoder"]
