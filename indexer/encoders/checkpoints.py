"""Finding model files on disk or on the Hugging Face hub, and fingerprinting them.

Downloads go through `huggingface_hub` into the standard HF cache, so a checkpoint fetched once (or placed
there by hand, or pre-seeded in a docker image) is found offline. When a file is neither cached nor
downloadable the error names the file and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import CheckpointNotFoundError

_HASH_CACHE = Path(os.environ.get("RESOUND_CACHE", Path.home() / ".cache" / "resound")) / "sha256.json"


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face hub repository."""

    repo_id: str
    filename: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.filename}"


def hub_offline() -> bool:
    """True when the user told huggingface_hub not to touch the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def resolve_hub_file(ref: HubFile) -> Path:
    """Local path of `ref`: from the HF cache, else downloaded into it. Raises CheckpointNotFoundError."""
    import huggingface_hub
    from huggingface_hub import constants

    cached = huggingface_hub.try_to_load_from_cache(ref.repo_id, ref.filename, revision=ref.revision)
    if isinstance(cached, str) and os.path.exists(cached):
        return Path(cached)
    where = Path(constants.HF_HUB_CACHE) / f"models--{ref.repo_id.replace('/', '--')}"
    advice = (
        f"download it while online (huggingface-cli download {ref.repo_id} {ref.filename}), "
        f"or pass a local path instead of the model name"
    )
    if hub_offline():
        raise CheckpointNotFoundError(
            f"{ref.filename} is not in the Hugging Face cache ({where}) and HF_HUB_OFFLINE is set: {advice}"
        )
    try:
        return Path(huggingface_hub.hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision))
    except Exception as e:  # network errors come in many types (requests, httpx, hub errors)
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointNotFoundError(
            f"cannot download {ref} into {where} ({reason}): {advice}"
        ) from e


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, cached by (path, size, mtime) since checkpoints are hundreds of MB."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = _read_hash_cache()
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    cache[key] = digest.hexdigest()
    _write_hash_cache(cache)
    return cache[key]


def _read_hash_cache() -> dict[str, str]:
    try:
        return json.loads(_HASH_CACHE.read_text())
    except (OSError, ValueError):
        return {}


def _write_hash_cache(cache: dict[str, str]) -> None:
    try:
        _HASH_CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = _HASH_CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, _HASH_CACHE)
    except OSError:
        pass  # the cache only saves time; a read-only home must not stop indexing
