"""Saving and loading starter weights as safetensors, with the config and vocabulary inside the file.

Layout: the model's state dict (float tensors in float16 or float32), the tokenizer's kept BPE ids as
the int64 tensor `tokenizer.kept_bpe_ids`, and string metadata: `format`, `config` (StarterConfig JSON)
and any extra provenance the trainer adds (seed, data, metrics). Nothing is ever unpickled.
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
from indexer.starter.tokenizer import CaptionTokenizer

FORMAT = "resound-starter/1"
VOCAB_KEY = "tokenizer.kept_bpe_ids"


def save_starter(
    model: StarterModel,
    tokenizer: CaptionTokenizer,
    path: Path,
    dtype: torch.dtype = torch.float16,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write `model` and `tokenizer` to `path` atomically; float tensors are stored as `dtype`.

    `metadata` values that are not strings are stored as JSON.
    """
    from safetensors.torch import save_file

    tensors = {
        name: (value.detach().to(dtype) if value.is_floating_point() else value.detach()).contiguous()
        for name, value in model.state_dict().items()
    }
    tensors[VOCAB_KEY] = torch.tensor(tokenizer.kept_bpe_ids, dtype=torch.int64)
    header = {"format": FORMAT, "config": model.config.to_json()}
    for key, value in (metadata or {}).items():
        header[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary), metadata=header)
    os.replace(temporary, path)
    return path


def load_starter(path: Path, device: str = "cpu") -> tuple[StarterModel, CaptionTokenizer, dict[str, str]]:
    """(model in eval mode with float32 weights, tokenizer, metadata) from a starter safetensors file.

    Raises CheckpointNotFoundError for a missing file and CheckpointError for anything unreadable or
    inconsistent, each naming the file.
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
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a starter checkpoint (format {metadata.get('format')!r})")
    try:
        config = StarterConfig.from_json(metadata["config"])
        kept = tensors.pop(VOCAB_KEY)
    except (KeyError, CheckpointError) as e:
        raise CheckpointError(f"{path}: starter checkpoint lacks a valid config or vocabulary ({e})") from e
    tokenizer = CaptionTokenizer(kept.tolist(), config.text_context)
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{path}: vocabulary of {tokenizer.vocab_size} tokens does not match config.vocab_size {config.vocab_size}"
        )
    model = StarterModel(config)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit their config ({_first_line(e)})") from e
    return model.to(device).eval(), tokenizer, metadata


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
