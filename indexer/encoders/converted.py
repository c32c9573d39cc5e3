"""A safetensors copy of a pickled checkpoint, kept beside it for memory-mapped loading.

LAION-CLAP checkpoints are torch pickles (zip archives): loading one reads and unpickles every tensor.
The copy `<checkpoint>.safetensors` holds the cleaned state dict (what `load_clap_state_dict` returns) and,
in its metadata, the sha256 of the checkpoint it was made from; it is used only while that still matches,
so a replaced checkpoint is never shadowed by a stale copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from indexer.encoders.checkpoints import file_sha256

SUFFIX = ".safetensors"
SOURCE_KEY = "resound_source_sha256"


def converted_path(checkpoint: Path) -> Path:
    """Where the safetensors copy of `checkpoint` lives."""
    return checkpoint.with_name(checkpoint.name + SUFFIX)


def _unreadable() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    return (OSError, ValueError, RuntimeError, SafetensorError)


def _source_sha256(copy: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(copy), framework="pt") as f:
            return (f.metadata() or {}).get(SOURCE_KEY)
    except _unreadable():  # a truncated or foreign file is simply not a usable copy
        return None


def load_converted(checkpoint: Path) -> dict[str, Any] | None:
    """The state dict from the copy beside `checkpoint` when it exists and was made from these bytes."""
    copy = converted_path(checkpoint)
    if not copy.is_file() or _source_sha256(copy) != file_sha256(checkpoint):
        return None
    from safetensors.torch import load_file

    try:
        return load_file(str(copy))
    except _unreadable():
        return None


def write_converted(checkpoint: Path, state: dict[str, Any]) -> Path | None:
    """Write the copy of an already loaded state dict; None where the directory is not writable."""
    import torch
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.contiguous()
        pointer = value.untyped_storage().data_ptr()
        # safetensors refuses tensors that share memory (tied weights); each gets its own copy.
        tensors[key] = value.clone() if pointer in seen else value
        seen.add(pointer)
    copy = converted_path(checkpoint)
    tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={SOURCE_KEY: file_sha256(checkpoint), "format": "pt"})
        os.replace(tmp, copy)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return copy


def ensure_converted(checkpoint: Path) -> Path | None:
    """Make the copy unless a matching one exists (loads the pickle once)."""
    copy = converted_path(checkpoint)
    if copy.is_file() and _source_sha256(copy) == file_sha256(checkpoint):
        return copy
    from indexer.encoders.laion_clap import load_clap_state_dict

    return write_converted(checkpoint, load_clap_state_dict(checkpoint, use_converted=False))


def converted_problem(checkpoint: Path) -> str | None:
    """What is wrong with the copy beside `checkpoint`, if there is one."""
    copy = converted_path(checkpoint)
    if not copy.is_file():
        return None
    source = _source_sha256(copy)
    if source is None:
        return f"{copy}: unreadable safetensors copy (delete it; it is made again on the next load)"
    from indexer.encoders.model_store import sha256_now

    if source != sha256_now(checkpoint):
        return f"{copy}: made from other bytes than {checkpoint.name} (delete it; it is made again on the next load)"
    return None
