"""The bundled starter model as a resound encoder (family "starter").

Audio: mono 16 kHz windows of at most 4 s, repeat-padded to 4 s as LAION-CLAP pads, log-mel front end
(indexer.starter.features), CNN. Text: the frozen all-MiniLM-L6-v2 sentence encoder (minilm.py), then the
learned projection. Both give 256-d unit vectors. The sentence encoder is loaded on the first text, so an
audio-only build never reads it; its weights must hash to what the checkpoint was trained with.

A checkpoint whose config names the "aisfx" audio tower instead reads 44.1 kHz windows of 4.62 s through
aiSFX's front end and its frozen pretrained tower (aisfx.py; weights in weights/aisfx_tower.safetensors,
whose sha256 the checkpoint records), averages the window's 100-frame blocks and projects the mean with
the learned head; an "aisfx+starter" checkpoint puts the shipped CNN starter's audio vector of the window
(companion.py) beside that mean.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from indexer.encoders.base import EncoderInfo
from indexer.encoders.checkpoints import file_sha256
from indexer.errors import CheckpointError
from indexer.starter.checkpoint import load_starter
from indexer.starter.config import StarterConfig
from indexer.starter.features import pad_windows
from indexer.text import normalize_text

WEIGHTS_PATH = Path(__file__).with_name("weights") / "starter.safetensors"
# Metadata key of an "aisfx" checkpoint: the sha256 of the frozen tower file its head was trained on.
AUDIO_TOWER_KEY = "audio_tower_sha256"
# Windows embedded per forward pass: bounds memory for long files without slowing small batches.
AUDIO_BATCH = 32
TEXT_BATCH = 256


def _anchoring(config: StarterConfig) -> dict[str, dict[str, float]]:
    """The text anchors' settings as provenance: how queries are placed is part of what an index answers
    with. Empty without anchors, so the provenance of indexes built with such checkpoints is unchanged."""
    if not config.text_anchors:
        return {}
    return {
        "text_anchors": {
            "count": config.text_anchors,
            "weight": config.anchor_weight,
            "temperature": config.anchor_temperature,
            "neighbours": config.anchor_neighbours,
        }
    }


def _load_frozen_tower(checkpoint: Path, metadata: dict[str, str], device: str):  # -> aisfx.AisfxTower
    """The frozen aiSFX tower an "aisfx" checkpoint was trained on; CheckpointError if the shipped file's
    sha256 is not the one the checkpoint records (a head trained on one tower reads no other)."""
    from indexer.starter.aisfx import TOWER_PATH, load_aisfx_tower

    expected = metadata.get(AUDIO_TOWER_KEY)
    actual = file_sha256(TOWER_PATH)
    if expected != actual:
        raise CheckpointError(
            f"{checkpoint}: trained on the aiSFX tower with sha256 {str(expected)[:12]}, but {TOWER_PATH} has {actual[:12]}"
        )
    tower = load_aisfx_tower(TOWER_PATH).to(device)
    # Channels-last convolutions, as for the CNN tower (bench/aisfx_throughput.py measures both layouts).
    return tower.to(memory_format=torch.channels_last)


def _load_companion(checkpoint: Path, metadata: dict[str, str], device: str):  # -> companion.StarterCompanion
    """The frozen CNN starter an "aisfx+starter" checkpoint read beside aiSFX; CheckpointError if the shipped
    starter's sha256 is not the one the checkpoint records."""
    from indexer.starter.companion import COMPANION_KEY, COMPANION_PATH, StarterCompanion

    expected = metadata.get(COMPANION_KEY)
    actual = file_sha256(COMPANION_PATH)
    if expected != actual:
        raise CheckpointError(
            f"{checkpoint}: trained beside the starter with sha256 {str(expected)[:12]}, but {COMPANION_PATH} has {actual[:12]}"
        )
    return StarterCompanion(COMPANION_PATH, device)


def _log_mel_preprocessing(config: StarterConfig) -> dict[str, object]:
    """Provenance of the CNN tower's audio path (features.LogMelFrontEnd)."""
    return {
        "resample": "soxr_hq",
        "mono": "mean",
        "fill": "repeatpad",
        "features": "log-mel",
        "stft": {
            "n_fft": config.n_fft,
            "win_length": config.win_length,
            "hop_length": config.hop_length,
            "window": "hann",
            "center": True,
            "pad_mode": "reflect",
        },
        "mel": {"n_mels": config.n_mels, "f_min": config.f_min, "f_max": config.f_max, "scale": "htk"},
        "log": "10*log10(max(power, 1e-10))",
    }


def _aisfx_preprocessing(metadata: dict[str, str]) -> dict[str, object]:
    """Provenance of an "aisfx" model's audio path: aiSFX's Essentia-equivalent front end (aisfx.py)."""
    return {
        "resample": "soxr_hq",
        "mono": "mean",
        "fill": "zeros",
        "features": "aisfx-log-mel",
        "stft": {"n_fft": 2048, "hop_length": 1024, "window": "hann-symmetric", "frames": "essentia-framecutter"},
        "mel": {"n_mels": 96, "f_min": 0.0, "f_max": 22050.0, "scale": "htk", "norm": "unit_sum"},
        "log": "log10(1e4*power+1)/9.457799",
        "audio_tower": {"name": "aisfx-0.1.2", "sha256": metadata.get(AUDIO_TOWER_KEY), "blocks": "100 frames, no overlap, mean"},
        **_companion_preprocessing(metadata),
    }


def _companion_preprocessing(metadata: dict[str, str]) -> dict[str, object]:
    """Provenance of an "aisfx+starter" model's second input (nothing for "aisfx"): the CNN starter's vector."""
    from indexer.starter.companion import COMPANION_KEY

    if COMPANION_KEY not in metadata:
        return {}
    return {"companion": {"name": "starter", "sha256": metadata[COMPANION_KEY], "input": "16 kHz soxr_hq, first 4 s"}}


class StarterEncoder:
    """The starter CLAP-style model loaded from a safetensors checkpoint."""

    def __init__(
        self,
        checkpoint: Path = WEIGHTS_PATH,
        model_id: str = "starter",
        device: str = "cpu",
        text_model_dir: Path | None = None,
    ):
        checkpoint = Path(checkpoint)
        self.checkpoint = checkpoint
        self.model, self.text_model, self.metadata = load_starter(checkpoint, device)
        self.text_model_dir = text_model_dir  # None: found as minilm.find_minilm finds it
        self._sentence_encoder = None
        # Query words outside the checkpoint's caption vocabulary get WordNet glosses (lexicon.py) where
        # the checkpoint records that vocabulary and WordNet is installed; otherwise texts pass unchanged.
        self.glosser = None
        vocabulary = self.metadata.get("caption_vocabulary")
        if vocabulary:
            from indexer.starter.lexicon import QueryGlosser, WordNet, find_wordnet

            wordnet = find_wordnet()
            if wordnet is not None:
                self.glosser = QueryGlosser(json.loads(vocabulary), WordNet(wordnet))
        self._anchor_projected: torch.Tensor | None = None  # the text anchors' projections, on first query
        config = self.model.config
        # The frozen aiSFX tower of an "aisfx" model (and the CNN starter beside it for "aisfx+starter") load
        # on the first audio: a text query never reads their 19 MB nor hashes them.
        self._frozen = config.audio_tower in ("aisfx", "aisfx+starter")
        self._with_companion = config.audio_tower == "aisfx+starter"
        self._tower = None
        self._companion = None
        # Channels-last convolutions (oneDNN's native layout): 1.36x fp32 and 1.28x bf16 on CPU, same top 10,
        # cosine 1.000000 to the default layout (bench/model_speedups.py; torch.compile, faster still, costs
        # ~30 s of compiling per process and is not used).
        self.model.audio.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.info = EncoderInfo(
            model_id=model_id,
            family="starter",
            dim=config.embed_dim,
            sample_rate=config.sample_rate,
            window_seconds=config.window_seconds,
            checkpoint_sha256=file_sha256(checkpoint),
            preprocessing={
                **(_aisfx_preprocessing(self.metadata) if self._frozen else _log_mel_preprocessing(config)),
                # The frozen text model the projection was trained on: an index built with one refuses
                # another (check_encoder compares preprocessing).
                "text_model": self.text_model["id"],
                "text_model_sha256": self.text_model["sha256"],
                **_anchoring(config),
            },
        )

    @property
    def tower(self):  # -> aisfx.AisfxTower | None
        """The frozen aiSFX tower of an "aisfx" model, loaded and checked on first use; None for the CNN."""
        if self._frozen and self._tower is None:
            self._tower = _load_frozen_tower(self.checkpoint, self.metadata, str(self.device))
        return self._tower

    @property
    def companion(self):  # -> companion.StarterCompanion | None
        """The frozen CNN starter an "aisfx+starter" model reads beside aiSFX, loaded on first use."""
        if self._with_companion and self._companion is None:
            self._companion = _load_companion(self.checkpoint, self.metadata, str(self.device))
        return self._companion

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) unit vectors for mono windows at `info.sample_rate` of at most `info.window_seconds`."""
        if self._frozen:
            return self.embed_prepared(self.prepare_audio(windows))
        padded = pad_windows(windows, self.model.config)
        out = np.zeros((len(padded), self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(padded), AUDIO_BATCH):
                batch = padded[start : start + AUDIO_BATCH].to(self.device)
                out[start : start + len(batch)] = self.model.embed_waveforms(batch).float().cpu().numpy()
        return out

    # embed_audio in two steps, so that a build can run the front end where the windows are decoded (the
    # decoding thread, see indexer/prefetch.py) and only the CNN where the model runs: equal to embed_audio
    # up to float rounding (the front end treats each window on its own).
    def prepare_audio(self, windows: Sequence[np.ndarray]) -> list:
        """The front end's log-mel features (frames, n_mels) of each window (on CPU), in the order given; for
        an "aisfx+starter" model, (frames, the companion's padded 16 kHz samples) pairs."""
        if self._frozen:
            from indexer.starter.aisfx import window_features

            features: list = []
            for start in range(0, len(windows), AUDIO_BATCH):
                part = windows[start : start + AUDIO_BATCH]
                chunk = [f.cpu() for f in window_features(self.model.front_end, part, self.model.config.window_samples)]
                if self.companion is not None:
                    # Each window's aiSFX frames with the companion's 16 kHz samples: (frames, padded).
                    padded = self.companion.windows(part, self.model.config.sample_rate)
                    chunk = list(zip(chunk, padded.unbind(0)))
                features.extend(chunk)
            return features
        padded = pad_windows(windows, self.model.config)
        features: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(padded), AUDIO_BATCH):
                batch = padded[start : start + AUDIO_BATCH].to(self.device)
                features.extend(self.model.front_end(batch).cpu().unbind(0))
        return features

    def embed_prepared(self, features: Sequence) -> np.ndarray:
        """(n, dim) unit vectors of windows from their `prepare_audio` features."""
        if self._frozen:
            from indexer.starter.aisfx import pooled_embeddings

            with torch.inference_mode():
                frames = [f[0] for f in features] if self.companion is not None else features
                pooled = pooled_embeddings(self.tower, frames, batch_size=AUDIO_BATCH).to(self.device)
                if self.companion is not None:
                    companion = self.companion.embed(torch.stack([f[1] for f in features]))
                    pooled = torch.cat([pooled.float(), companion.to(pooled.device)], dim=1)
                return self.model.embed_mel(pooled).float().cpu().numpy()
        out = np.zeros((len(features), self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(features), AUDIO_BATCH):
                batch = torch.stack(list(features[start : start + AUDIO_BATCH])).to(self.device)
                out[start : start + len(batch)] = self.model.embed_mel(batch).float().cpu().numpy()
        return out

    def sentence_encoder(self):  # -> MiniLMTextEncoder
        """The frozen sentence encoder, loaded once; CheckpointError if its weights are not the trained-with ones."""
        if self._sentence_encoder is None:
            from indexer.starter.minilm import MiniLMTextEncoder

            encoder = MiniLMTextEncoder(self.text_model_dir, device=str(self.device))
            if encoder.sha256 != self.text_model["sha256"]:
                raise CheckpointError(
                    f"{encoder.directory / 'model.safetensors'}: text model sha256 {encoder.sha256[:12]} is not the "
                    f"{self.text_model['id']} (sha256 {self.text_model['sha256'][:12]}) that {self.checkpoint} was trained with"
                )
            self._sentence_encoder = encoder
        return self._sentence_encoder

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit vectors for texts (MiniLM's lower-cased WordPiece, at most 256 tokens), blended
        with the checkpoint's text anchors where it has them (model.TextAnchors)."""
        texts = [normalize_text(text) for text in texts]  # any script, marks or controls: see indexer/text.py
        if self.glosser is not None:
            texts = [self.glosser.expand(text) for text in texts]
        sentences = self.sentence_encoder().embed(list(texts), batch_size=TEXT_BATCH)
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            if self.model.anchors is not None and self._anchor_projected is None:
                # In float32 whatever precision the first caller runs under: the cache outlives the call,
                # and a server and a CLI process must place the same query alike.
                with torch.autocast(self.device.type, enabled=False):
                    self._anchor_projected = self.model.project_anchors()
            for start in range(0, len(texts), TEXT_BATCH):
                batch = sentences[start : start + TEXT_BATCH].to(self.device)
                vectors = self.model.embed_queries(batch, self._anchor_projected)
                out[start : start + len(batch)] = vectors.float().cpu().numpy()
        return out

    def logit_scale(self) -> float:
        """The learned temperature exp(logit_scale) that turns cosines into logits."""
        return float(self.model.temperature_scale().item())
