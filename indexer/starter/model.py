"""The starter CLAP-style model: a compact CNN over log-mels, a learned projection of a frozen sentence
encoder's vectors (minilm.py), a shared embedding space and a learnable temperature."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from indexer.starter import aisfx
from indexer.starter.config import StarterConfig
from indexer.starter.features import LogMelFrontEnd


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch-norm + ReLU layers, then 2x2 average pooling (PANNs' CNN block)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2)


class AudioEncoder(nn.Module):
    """Log-mel (batch, frames, n_mels) -> (batch, embed_dim), not normalised.

    The frame count may vary (the trainer uses random crops); pooling over time is global.
    """

    def __init__(self, config: StarterConfig):
        super().__init__()
        # Per-mel-bin normalisation learned from the training data (PANNs' bn0).
        self.bn0 = nn.BatchNorm2d(config.n_mels)
        self.time_pool = config.time_pool
        widths = (1, *config.audio_channels)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in itertools.pairwise(widths))
        width = config.audio_channels[-1]
        # Mel bins left after the blocks' pooling: kept apart rather than averaged, since where in
        # frequency a pattern sits (register, formants, brightness) tells instruments apart.
        bins = config.n_mels >> len(config.audio_channels)
        if bins < 1:
            raise ValueError(f"{len(config.audio_channels)} blocks pool away all {config.n_mels} mel bins")
        self.dropout = nn.Dropout(config.audio_dropout)
        self.fc = nn.Linear(width * bins, width)
        self.projection = nn.Linear(width, config.embed_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)  # (batch, 1, frames, mels)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        if self.time_pool > 1:
            x = F.avg_pool2d(x, (self.time_pool, 1), ceil_mode=True)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 2, 1, 3).flatten(2)  # (batch, frames, channels x bins)
        # Mean + max over time: the max keeps short events (a single hit) that a mean would dilute.
        x = x.mean(dim=1) + x.amax(dim=1)
        x = F.relu(self.fc(self.dropout(x)))
        return self.projection(self.dropout(x))


class PretrainedAudioHead(nn.Module):
    """A frozen pretrained tower's pooled embeddings (batch, 512) -> (batch, embed_dim), not normalised.

    Layer norm first (aiSFX's vectors are ReLU maxima of varying scale, tens in norm), then, as for the
    text side, a linear path beside a one-hidden-layer GELU MLP.
    """

    def __init__(self, config: StarterConfig, input_dim: int = aisfx.EMBED_DIM):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.dropout = nn.Dropout(config.audio_dropout)
        self.linear = nn.Linear(input_dim, config.embed_dim, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(input_dim, config.audio_hidden),
            nn.GELU(),
            nn.Linear(config.audio_hidden, config.embed_dim),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.norm(pooled))
        return self.linear(x) + self.mlp(x)


class TextProjection(nn.Module):
    """A frozen sentence encoder's unit vectors (batch, text_input_dim) -> (batch, embed_dim), not normalised.

    A linear path keeps the pretrained geometry (paraphrases near each other stay near), and a one-hidden-
    layer MLP beside it bends the space where sounds demand it.
    """

    def __init__(self, config: StarterConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.text_dropout)
        self.linear = nn.Linear(config.text_input_dim, config.embed_dim, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(config.text_input_dim, config.text_hidden),
            nn.GELU(),
            nn.Linear(config.text_hidden, config.embed_dim),
        )

    def forward(self, sentence: torch.Tensor) -> torch.Tensor:
        x = self.dropout(sentence)
        return self.linear(x) + self.mlp(x)


class TextAnchors(nn.Module):
    """Sentence-encoder vectors of training texts, and the blend that pulls a query towards them.

    A learned projection is exact on the texts it was trained on and extrapolates elsewhere: a word no
    caption uses ("a fiddle") can land far from the captions it means. The blend replaces part of the
    query's projection by a softmax-weighted mean of the projections of its nearest anchors, found by
    cosine in the frozen sentence encoder's space, where the pretrained model already puts "a fiddle"
    near "violin". On texts the model trained on, the nearest anchors are those texts' neighbours, so
    known queries barely move.
    """

    def __init__(self, config: StarterConfig):
        super().__init__()
        self.weight = config.anchor_weight
        self.temperature = config.anchor_temperature
        self.neighbours = config.anchor_neighbours
        self.register_buffer("sentences", torch.zeros(config.text_anchors, config.text_input_dim))

    def blend(self, sentences: torch.Tensor, projected: torch.Tensor, anchor_projected: torch.Tensor) -> torch.Tensor:
        """Unit vectors: weight * projected + (1 - weight) * the neighbours' mean, each unit before mixing.

        `sentences` are the queries' sentence vectors (batch, text_input_dim), `projected` their unit
        projections, `anchor_projected` the anchors' unit projections (anchors, embed_dim).
        """
        similarity = sentences.float() @ self.sentences.float().T
        k = min(self.neighbours, len(self.sentences))
        top, index = similarity.topk(k, dim=1)
        weights = torch.softmax(top / self.temperature, dim=1)
        neighbours = F.normalize((weights.unsqueeze(-1) * anchor_projected[index]).sum(dim=1), dim=-1)
        return F.normalize(self.weight * projected.float() + (1 - self.weight) * neighbours, dim=-1)


class StarterModel(nn.Module):
    """The audio tower, the text projection, the front end and the learnable logit scale (log of the
    inverse temperature). The frozen sentence encoder is not part of it: texts arrive as its vectors; nor
    is a frozen pretrained audio tower (config.audio_tower "aisfx"): its pooled embeddings arrive as the
    audio head's input (aisfx.pooled_embeddings), and its weights ship in their own file."""

    def __init__(self, config: StarterConfig):
        super().__init__()
        self.config = config
        self.front_end: nn.Module
        self.audio: nn.Module
        if config.audio_tower in ("aisfx", "aisfx+starter"):
            from indexer.starter.config import COMPANION_DIM

            self.front_end = aisfx.AisfxFrontEnd()
            companion = COMPANION_DIM if config.audio_tower == "aisfx+starter" else 0
            self.audio = PretrainedAudioHead(config, aisfx.EMBED_DIM + companion)
        else:
            self.front_end = LogMelFrontEnd(config)
            self.audio = AudioEncoder(config)
        self.text = TextProjection(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self.anchors = TextAnchors(config) if config.text_anchors > 0 else None

    def embed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Unit vectors for the audio tower's input: log-mel features (batch, frames, n_mels) for the CNN,
        pooled aiSFX embeddings (batch, 512) for the "aisfx" head (batch, 768 with the companion's vectors
        after them for "aisfx+starter")."""
        return F.normalize(self.audio(mel), dim=-1)

    def embed_waveforms(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Unit vectors for padded windows (batch, window_samples); the CNN tower only (an "aisfx" model's
        windows go through the frozen tower first: StarterEncoder.embed_audio)."""
        if self.config.audio_tower != "cnn":
            raise ValueError(f"a {self.config.audio_tower!r} starter embeds waveforms through its frozen tower")
        return self.embed_mel(self.front_end(waveforms))

    def embed_sentences(self, sentences: torch.Tensor) -> torch.Tensor:
        """Unit vectors for the frozen sentence encoder's vectors (batch, text_input_dim)."""
        return F.normalize(self.text(sentences), dim=-1)

    def embed_queries(self, sentences: torch.Tensor, anchor_projected: torch.Tensor | None = None) -> torch.Tensor:
        """Unit vectors for search: the projection blended with the text anchors where the model has them
        (`anchor_projected`: `project_anchors()`, passed in so callers can compute it once)."""
        projected = self.embed_sentences(sentences)
        if self.anchors is None:
            return projected
        if anchor_projected is None:
            anchor_projected = self.project_anchors()
        return self.anchors.blend(sentences, projected, anchor_projected)

    def project_anchors(self) -> torch.Tensor | None:
        """The anchors' unit projections (anchors, embed_dim), or None without anchors."""
        return None if self.anchors is None else self.embed_sentences(self.anchors.sentences).float()

    def set_text_anchors(self, sentences: torch.Tensor) -> None:
        """Make `sentences` (anchors, text_input_dim; sentence-encoder unit vectors) the model's text
        anchors, with the config's blend settings; the config records their number."""
        self.config = replace(self.config, text_anchors=len(sentences))
        self.anchors = TextAnchors(self.config).to(sentences.device)
        self.anchors.sentences.copy_(sentences)

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped as CLIP does so that logits stay finite."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def parameter_count(module: nn.Module) -> int:
    """Number of trainable and stored parameters of `module`."""
    return sum(p.numel() for p in module.parameters())
