"""open_clip CLIP models as the vision side of audio-visual indexing (frames and texts -> unit vectors).

A model is named `ARCH/TAG` (open_clip's pretrained table, e.g. `ViT-B-32/laion2b_s34b_b79k`, weights from
the Hugging Face cache) or `ARCH:/path/to/checkpoint` (a local .safetensors/.bin/.pt file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.encoders.base import EncoderInfo
from indexer.encoders.checkpoints import HubFile, file_sha256, resolve_hub_file
from indexer.encoders.imports import import_open_clip
from indexer.errors import CheckpointNotFoundError, UnknownModelError

# open_clip's own file names on the hub, safetensors first (never unpickled).
_HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def resolve_vision_checkpoint(spec: str) -> tuple[str, Path]:
    """(architecture, local checkpoint path) of a vision model spec; downloads into the HF cache if needed."""
    open_clip = import_open_clip()
    if ":" in spec and not spec.startswith("hf-hub:"):
        arch, path = spec.split(":", 1)
        if not Path(path).is_file():
            raise CheckpointNotFoundError(f"{path}: CLIP checkpoint file not found")
        _check_arch(open_clip, arch)
        return arch, Path(path)
    if "/" not in spec:
        raise UnknownModelError(f"vision model {spec!r}: use ARCH/TAG (e.g. ViT-B-32/laion2b_s34b_b79k) or ARCH:/path")
    arch, tag = spec.split("/", 1)
    _check_arch(open_clip, arch)
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub", "") if cfg else ""
    if not hub:
        known = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
        raise UnknownModelError(f"vision model {spec!r}: no hub weights for tag {tag!r} (tags of {arch}: {known})")
    repo, filename = hub.rstrip("/").rsplit("/", 1) if not hub.endswith("/") else (hub.rstrip("/"), "")
    candidates = (filename,) if filename else _HUB_WEIGHT_FILES
    errors = []
    for name in candidates:
        try:
            return arch, resolve_hub_file(HubFile(repo, name))
        except CheckpointNotFoundError as e:
            errors.append(str(e))
    raise CheckpointNotFoundError(errors[0])


def vision_model_id(spec: str, arch: str, checkpoint: Path) -> str:
    """How an index names a CLIP model: its hub spec, or architecture and file name for a local file."""
    return f"open_clip:{spec}" if ":" not in spec else f"open_clip:{arch}:{Path(checkpoint).name}"


def _check_arch(open_clip, arch: str) -> None:  # type: ignore[no-untyped-def]
    if arch not in open_clip.list_models():
        raise UnknownModelError(f"unknown CLIP architecture {arch!r} (open_clip knows {len(open_clip.list_models())}, "
                                f"e.g. ViT-B-32, ViT-B-16, ViT-L-14)")


class OpenClipEncoder:
    """A CLIP image and text tower; `embed_images` takes RGB uint8 frames."""

    def __init__(self, spec: str, device: str = "cpu"):
        import torch

        open_clip = import_open_clip()
        arch, checkpoint = resolve_vision_checkpoint(spec)
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(checkpoint), device=device, weights_only=True
        )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.device = torch.device(device)
        dim = int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else None
        if dim is None:
            with torch.inference_mode():
                dim = int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[1])
        self.info = EncoderInfo(
            model_id=vision_model_id(spec, arch, checkpoint),
            family="open_clip",
            dim=dim,
            sample_rate=0,
            window_seconds=0.0,
            checkpoint_sha256=file_sha256(checkpoint),
            preprocessing={"architecture": arch, "image_size": list(getattr(self.model.visual, "image_size", ()))},
            modalities=("image", "text"),
        )

    def embed_images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) unit vectors for RGB uint8 frames of any size (resized and cropped as CLIP was trained)."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        if len(frames) == 0:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        batch = torch.stack([self.preprocess(Image.fromarray(np.asarray(f, dtype=np.uint8))) for f in frames])
        with torch.inference_mode():
            out = self.model.encode_image(batch.to(self.device))
        return F.normalize(out.float(), dim=-1).cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        if len(texts) == 0:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        with torch.inference_mode():
            out = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
        return F.normalize(out.float(), dim=-1).cpu().numpy()

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())
