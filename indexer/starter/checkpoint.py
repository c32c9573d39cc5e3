"""Saving and loading starter weights as safetensors, with the config and the text model's identity inside.

Layout: the model's state dict (float tensors in float16 or float32) and string metadata: `format`,
`config` (StarterConfig JSON), `text_model` (JSON: the frozen sentence encoder's id and the sha256 of its
weights file, which the projection was trained on) and any extra provenance the trainer adds (seed, data,
metrics). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from indexer.errors import CheckpointError, CheckpointNotFoundError
from indexer.starter.config import StarterConfig
from indexer.starter.model import StarterModel

FORMAT = "resound-starter/2"
# Checkpoints of the first starter generation: a small transformer over CLIP BPE tokens as text tower.
RETIRED_FORMATS = {"resound-starter/1": "its text tower (CLIP BPE tokens, a 2-layer transformer) is retired"}
TEXT_MODEL_KEY = "text_model"


def save_starter(
    model: StarterModel,
    path: Path,
    text_model: Mapping[str, str],
    dtype: torch.dtype = torch.float16,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write `model` to `path` atomically; float tensors are stored as `dtype`.

    `text_model` is {"id": ..., "sha256": ...} of the frozen sentence encoder the projection expects.
    `metadata` values that are not strings are stored as JSON.
    """
    from safetensors.torch import save_file

    tensors = {
        name: (value.detach().to(dtype) if value.is_floating_point() else value.detach()).contiguous()
        for name, value in model.state_dict().items()
    }
    header = {
        "format": FORMAT,
        "config": model.config.to_json(),
        TEXT_MODEL_KEY: json.dumps({"id": text_model["id"], "sha256": text_model["sha256"]}, sort_keys=True),
    }
    for key, value in (metadata or {}).items():
        header[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata=header)
    os.replace(temporary, path)
    return path


def load_starter(path: Path, device: str = "cpu") -> tuple[StarterModel, dict[str, str], dict[str, str]]:
    """(model in eval mode with float32 weights, text model {"id", "sha256"}, metadata) from a starter file.

    Raises CheckpointNotFoundError for a missing file and CheckpointError for anything unreadable,
    inconsistent or of a retired format, each naming the file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: starter weights file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError, or OSError/ValueError
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from e
    found = metadata.get("format")
    if found in RETIRED_FORMATS:
        raise CheckpointError(
            f"{path}: a {found} starter checkpoint, which this resound no longer loads ({RETIRED_FORMATS[found]}); "
            "use the bundled starter weights or retrain with `indexer train`"
        )
    if found != FORMAT:
        raise CheckpointError(f"{path}: not a starter checkpoint (format {found!r})")
    try:
        config = StarterConfig.from_json(metadata["config"])
        text_model = json.loads(metadata[TEXT_MODEL_KEY])
        text_model = {"id": str(text_model["id"]), "sha256": str(text_model["sha256"])}
    except (KeyError, TypeError, ValueError, CheckpointError) as e:
        raise CheckpointError(f"{path}: starter checkpoint lacks a valid config or text model ({e})") from e
    model = StarterModel(config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit their config ({_first_line(e)})") from e
    return model.to(device).eval(), text_model, metadata


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
