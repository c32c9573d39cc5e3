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


def model_dir() -> Path:
    """A plain directory of model files (`<dir>/<repo id>/<file>`), searched before the HF cache:
    $RESOUND_MODEL_DIR, else ~/.cache/resound/models. Files copied there by hand are found offline."""
    value = os.environ.get("RESOUND_MODEL_DIR")
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("RESOUND_CACHE", Path.home() / ".cache" / "resound")).expanduser() / "models"


# Repositories whose files an environment variable points at directly (a directory holding the files).
DIRECTORY_OVERRIDES = {"roberta-base": "RESOUND_ROBERTA_TOKENIZER"}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, then HF_HOME/hub).

    huggingface_hub reads these once at import; reading them per call lets a process (or a test) point
    at another cache.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def model_dir_path(ref: HubFile, directory: Path) -> Path:
    """Where `ref` lives in a $RESOUND_MODEL_DIR-style directory."""
    return directory / ref.repo_id / ref.filename


def cached_hub_file(ref: HubFile) -> Path | None:
    """`ref` on this machine without touching the network: a directory override, the model directory,
    then the HF cache."""
    override = os.environ.get(DIRECTORY_OVERRIDES.get(ref.repo_id, ""), "")
    if override:
        path = Path(override).expanduser() / ref.filename
        return path if path.is_file() else None  # an override is the only place looked at
    if model_dir_path(ref, model_dir()).is_file():
        return model_dir_path(ref, model_dir())
    import huggingface_hub

    cached = huggingface_hub.try_to_load_from_cache(ref.repo_id, ref.filename, cache_dir=hub_cache_dir(),
                                                    revision=ref.revision)
    if isinstance(cached, str) and os.path.exists(cached):
        return Path(cached)
    return None


def resolve_hub_file(ref: HubFile) -> Path:
    """Local path of `ref`: $RESOUND_MODEL_DIR or the HF cache, else downloaded into the cache.

    Raises CheckpointNotFoundError."""
    import huggingface_hub

    cached = cached_hub_file(ref)
    if cached is not None:
        return cached
    where = hub_cache_dir() / f"models--{ref.repo_id.replace('/', '--')}"
    advice = (
        f"download it while online (huggingface-cli download {ref.repo_id} {ref.filename}), "
        f"or pass a local path instead of the model name"
    )
    if hub_offline():
        raise CheckpointNotFoundError(
            f"{ref.filename} is not in the Hugging Face cache ({where}) and HF_HUB_OFFLINE is set: {advice}"
        )
    try:
        return Path(huggingface_hub.hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision,
                                                    cache_dir=hub_cache_dir()))
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
    cache[key] = sha256_now(path)
    _write_hash_cache(cache)
    return cache[key]


def sha256_now(path: Path) -> str:
    """SHA-256 of a file's bytes, read now (no cache: verification must see what is on disk)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
