"""A benchmark stub encoder (a resound plugin: RESOUND_PLUGINS=bench.rss_stub_encoder): `*.rssstub`
checkpoints hold {"dim": D}; 50 ms windows of 1 kHz audio become random unit vectors of D dimensions.

It lets bench/ray_driver_rss.py push millions of windows through the real Ray build (decoding tasks, encoder
actors, shards, the driver's merge) without a model's compute: the vectors' values do not matter there, only
their number and size. It has no text tower (the build then notes that it made no hubness correction).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from indexer.encoders.base import EncoderInfo
from indexer.encoders.checkpoints import file_sha256
from indexer.encoders.resolver import register_family

SAMPLE_RATE = 1000
WINDOW_SECONDS = 0.05


class StubEncoder:
    def __init__(self, model_id: str, checkpoint: Path):
        dim = int(json.loads(Path(checkpoint).read_text())["dim"])
        self.info = EncoderInfo(model_id=model_id, family="bench_stub", dim=dim, sample_rate=SAMPLE_RATE,
                                window_seconds=WINDOW_SECONDS, checkpoint_sha256=file_sha256(checkpoint))
        self.rng = np.random.default_rng(os.getpid())

    def embed_audio(self, windows) -> np.ndarray:  # type: ignore[no-untyped-def]
        vectors = self.rng.standard_normal((len(windows), self.info.dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_text(self, texts) -> np.ndarray:  # type: ignore[no-untyped-def]
        raise NotImplementedError("a benchmark stub: no text tower")

    def logit_scale(self) -> float:
        return 1.0


register_family("bench_stub", lambda checkpoint, model_id, *_: StubEncoder(model_id, checkpoint), (".rssstub",))
