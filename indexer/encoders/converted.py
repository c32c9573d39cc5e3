"""A LAION-CLAP checkpoint's weights on disk: the torch pickle, and a safetensors copy kept beside it for
memory-mapped loading.

LAION-CLAP checkpoints are torch pickles (zip archives): loading one reads and unpickles every tensor.
The copy `<checkpoint>.safetensors` holds the cleaned state dict (`read_pickled_state`) and, in its
metadata, the sha256 of the checkpoint it was made from; it is used only while that still matches, so a
replaced checkpoint is never shadowed by a stale copy. The encoder (laion_clap.py) and the model store
(model_store.py) both build on this module; it imports neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from indexer.encoders.checkpoints import file_sha256, sha256_now
from indexer.errors import CheckpointError

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


def read_pickled_state(path: Path) -> dict[str, Any]:
    """The cleaned state dict of a pickled LAION-CLAP checkpoint, unpickled with torch's weights-only loader
    (no arbitrary objects). Raises CheckpointError when it is not such a checkpoint."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for unsafe globals, RuntimeError/EOFError for corrupt zips
        raise CheckpointError(f"{path}: not a loadable LAION-CLAP checkpoint ({_first_line(e)})") from e
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: holds no state_dict")
    # Same clean-up as clap_module.factory.load_state_dict: DDP prefixes, and the position_ids buffer
    # that transformers >= 4.31 no longer keeps in the state dict.
    if next(iter(state)).startswith("module."):
        state = {k[len("module."):]: v for k, v in state.items()}
    state.pop("text_branch.embeddings.position_ids", None)
    return state


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
    return write_converted(checkpoint, read_pickled_state(checkpoint))


def converted_problem(checkpoint: Path) -> str | None:
    """What is wrong with the copy beside `checkpoint`, if there is one."""
    copy = converted_path(checkpoint)
    if not copy.is_file():
        return None
    source = _source_sha256(copy)
    if source is None:
        return f"{copy}: unreadable safetensors copy (delete it; it is made again on the next load)"
    if source != sha256_now(checkpoint):
        return f"{copy}: made from other bytes than {checkpoint.name} (delete it; it is made again on the next load)"
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
