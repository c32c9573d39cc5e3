"""The ClipClap-GZSL network (Kurzendörfer et al., CVPR-W 2024): two feed-forward branches into a 64-d
joint space, decoders for the reconstruction loss, and the three training losses.

Layout, as in `src/clipclap_model.py` of dkurzend/ClipClap-GZSL (every block is
Linear -> BatchNorm -> ReLU -> Dropout, including the last one, so joint embeddings are non-negative):
- audio-visual branch: O_enc (d_in -> 512), O_proj (512 -> 512 -> 64);
- text branch: W_enc (e_in -> 512), W_proj (512 -> 64);
- decoders: D_o (64 -> 512 -> 512) and D_w (64 -> 512).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from search.gzsl.config import GZSLConfig

SCORE_BATCH = 4096


def feed_forward(sizes: list[int], dropout: float, batch_norm: bool) -> nn.Sequential:
    """Blocks Linear -> BatchNorm -> ReLU -> Dropout between consecutive `sizes`."""
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers.append(nn.Linear(n_in, n_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


@dataclass
class JointOutputs:
    """One forward pass: joint embeddings, the encoded label embedding, and both reconstructions."""

    theta_o: torch.Tensor  # audio-visual sample in the joint space (B, joint_dim)
    theta_w: torch.Tensor  # its class's label embedding in the joint space (B, joint_dim)
    w: torch.Tensor  # encoded label embedding W_enc(t) (B, encoder_hidden)
    rho_o: torch.Tensor  # reconstruction from theta_o
    rho_w: torch.Tensor  # reconstruction from theta_w


class ClipClapNetwork(nn.Module):
    """Audio-visual and text branches into a shared space, with decoders for the reconstruction loss."""

    def __init__(self, feature_dim: int, label_dim: int, config: GZSLConfig):
        super().__init__()
        c = config
        self.feature_dim, self.label_dim, self.config = feature_dim, label_dim, config
        self.o_enc = feed_forward([feature_dim, c.encoder_hidden], c.encoder_dropout, c.batch_norm)
        self.w_enc = feed_forward([label_dim, c.encoder_hidden], c.encoder_dropout, c.batch_norm)
        self.o_proj = feed_forward([c.encoder_hidden, c.projection_hidden, c.joint_dim], c.projection_dropout,
                                   c.batch_norm)
        self.w_proj = feed_forward([c.encoder_hidden, c.joint_dim], c.text_dropout, c.batch_norm)
        # The published decoders rebuild W_enc(t); the "inputs" variant rebuilds the raw inputs instead.
        inputs = c.reconstruction_target == "inputs"
        self.d_o = feed_forward([c.joint_dim, c.projection_hidden, feature_dim if inputs else c.encoder_hidden],
                                c.projection_dropout, c.batch_norm)
        self.d_w = feed_forward([c.joint_dim, label_dim if inputs else c.encoder_hidden], c.text_dropout,
                                c.batch_norm)

    def embed_samples(self, features: torch.Tensor) -> torch.Tensor:
        """Audio-visual features (B, d_in) -> joint space (B, joint_dim)."""
        return self.o_proj(self.o_enc(features))

    def embed_classes(self, label_embeddings: torch.Tensor) -> torch.Tensor:
        """Label embeddings (C, e_in) -> joint space (C, joint_dim)."""
        return self.w_proj(self.w_enc(label_embeddings))

    def scores(self, features: np.ndarray, label_embeddings: np.ndarray) -> np.ndarray:
        """Eval-mode scores (n, C) of features (n, d_in) against classes with label embeddings (C, e_in)."""
        self.eval()
        with torch.no_grad():
            classes = self.embed_classes(torch.from_numpy(np.asarray(label_embeddings, dtype=np.float32)))
            features = np.asarray(features, dtype=np.float32)
            out = [joint_scores(self.embed_samples(torch.from_numpy(features[i:i + SCORE_BATCH])), classes,
                                self.config.similarity)
                   for i in range(0, len(features), SCORE_BATCH)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(classes)), dtype=np.float32)

    def forward(self, features: torch.Tensor, label_embeddings: torch.Tensor) -> JointOutputs:
        theta_o = self.embed_samples(features)
        w = self.w_enc(label_embeddings)
        theta_w = self.w_proj(w)
        return JointOutputs(theta_o, theta_w, w, self.d_o(theta_o), self.d_w(theta_w))

    def losses(self, features: torch.Tensor, targets: torch.Tensor,
               class_label_embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """The enabled loss terms of one batch and their sum under "total".

        `targets` index the rows of `class_label_embeddings` (the training classes). Cross-entropy is over
        dot products of each sample with every training class in the joint space; regression is the MSE
        between a sample and its class in the joint space; reconstruction is the MSE of both decoders
        against their target (see `GZSLConfig.reconstruction_target`). Terms are summed unweighted, as
        published.
        """
        c = self.config
        label_embeddings = class_label_embeddings[targets]
        out = self(features, label_embeddings)
        zero = features.new_zeros(())
        terms = {"cross_entropy": zero, "reconstruction": zero, "regression": zero}
        if c.cross_entropy:
            logits = out.theta_o @ self.embed_classes(class_label_embeddings).T
            terms["cross_entropy"] = F.cross_entropy(logits, targets)
        if c.regression:
            terms["regression"] = F.mse_loss(out.theta_o, out.theta_w)
        if c.reconstruction:
            if c.reconstruction_target == "inputs":
                terms["reconstruction"] = F.mse_loss(out.rho_o, features) + F.mse_loss(out.rho_w, label_embeddings)
            else:
                # The target W_enc(t) is not detached, as in the published code.
                terms["reconstruction"] = F.mse_loss(out.rho_o, out.w) + F.mse_loss(out.rho_w, out.w)
        terms["total"] = terms["cross_entropy"] + terms["reconstruction"] + terms["regression"]
        return terms


def joint_scores(samples: torch.Tensor, classes: torch.Tensor, similarity: str) -> torch.Tensor:
    """Scores (B, C) of joint-space samples against joint-space classes; higher is better."""
    if similarity == "l2":
        return -torch.cdist(samples, classes)
    if similarity == "cosine":
        return F.normalize(samples, dim=1) @ F.normalize(classes, dim=1).T
    return samples @ classes.T
