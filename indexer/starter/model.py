"""The starter CLAP-style model: a compact CNN over log-mels, a small transformer over tokens, a
shared embedding space and a learnable temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from indexer.starter.config import StarterConfig
from indexer.starter.features import LogMelFrontEnd
from indexer.starter.tokenizer import PAD_ID


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
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
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


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP block with a key-padding mask."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :]  # attend only to real tokens
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, width)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class TextEncoder(nn.Module):
    """Token ids (batch, context) -> (batch, embed_dim), not normalised: mean of the real tokens' states."""

    def __init__(self, config: StarterConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.text_width)
        self.position_embedding = nn.Parameter(torch.zeros(config.text_context, config.text_width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.text_width, config.text_heads, config.text_dropout)
            for _ in range(config.text_layers)
        )
        self.norm = nn.LayerNorm(config.text_width)
        self.projection = nn.Linear(config.text_width, config.embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = tokens != PAD_ID
        # Texts fill a prefix of their row, so columns past the longest one are padding in every row:
        # masked out of attention and pooling, they change nothing but the cost (captions use about
        # 20 of the 48 positions, and the trainer embeds a hundred texts a step).
        longest = max(1, int(keep.sum(dim=1).max())) if len(tokens) else tokens.shape[1]
        tokens, keep = tokens[:, :longest], keep[:, :longest]
        x = self.token_embedding(tokens) + self.position_embedding[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm(x)
        weights = keep.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.projection(pooled)


class StarterModel(nn.Module):
    """Both towers, the front end and the learnable logit scale (log of the inverse temperature)."""

    def __init__(self, config: StarterConfig):
        super().__init__()
        if config.vocab_size < 3:
            raise ValueError("config.vocab_size must count the kept tokens (set it from the tokenizer)")
        self.config = config
        self.front_end = LogMelFrontEnd(config)
        self.audio = AudioEncoder(config)
        self.text = TextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def embed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Unit vectors for log-mel features (batch, frames, n_mels)."""
        return F.normalize(self.audio(mel), dim=-1)

    def embed_waveforms(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Unit vectors for padded windows (batch, window_samples)."""
        return self.embed_mel(self.front_end(waveforms))

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit vectors for token ids (batch, context)."""
        return F.normalize(self.text(tokens), dim=-1)

    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped as CLIP does so that logits stay finite."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def parameter_count(module: nn.Module) -> int:
    """Number of trainable and stored parameters of `module`."""
    return sum(p.numel() for p in module.parameters())
